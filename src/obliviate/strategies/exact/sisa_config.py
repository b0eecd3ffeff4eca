"""SISAConfig: the validated, serialisable configuration of a SISA model."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from obliviate._hashing import sha256_hex
from obliviate.errors import ConfigError
from obliviate.strategies._config import config_fields
from obliviate.strategies.exact.aggregation import AGGREGATIONS
from obliviate.strategies.exact.sharding import SHARDINGS
from obliviate.training import TrainConfig, slice_epochs

__all__ = ["SISAConfig"]

_SCHEDULES = ("equal_work", "constant")
_TRAINERS = ("sequential", "batched")
FORMAT_VERSION = 1


@dataclass(frozen=True)
class SISAConfig:
    """Configuration of :class:`~obliviate.strategies.exact.sisa.SISA`.

    Args:
        shards: number of isolated shard models (S).
        slices: slices per shard (R); each slice end is a checkpoint to resume from.
        sharding: ``"uniform"``, ``"by_subject"`` or ``"class_balanced"``.
        aggregation: ``"vote"``, ``"weighted_vote"`` or ``"mean_prob"``.
        model: a model-zoo name (``"mlp"``, ``"cnn"``, ...) or ``"package.module:function"``;
            ignored when a ``model_factory`` is passed to the strategy.
        model_options: keyword options for the zoo builder.
        train: optimisation settings; ``train.epochs`` is the per-shard epoch budget.
        schedule: ``"equal_work"`` spreads ``train.epochs`` over slices at no extra cost;
            ``"constant"`` trains every slice stage for ``train.epochs`` epochs.
        added_slice_epochs: epochs for each slice added later with ``add``; defaults to the
            average equal-work slice budget.
        seed: root seed for placement, initialisation, order and dropout.
        trainer: ``"sequential"`` trains one shard at a time; ``"batched"`` trains shards of
            one architecture together with ``torch.func`` (faster for small models; needs
            dropout 0 and no BatchNorm). The two give close but not bitwise-equal weights,
            so the choice is part of the configuration and its hash.
        batch_slots: models per batched group: shard ``s`` always trains in slot
            ``s % batch_slots`` of group ``s // batch_slots`` (fit and forget alike, which
            keeps forget exact); ``None`` puts all shards in one group. A forget retrains
            whole groups' worth of compute, so smaller groups make single deletions cheaper.
    """

    shards: int = 5
    slices: int = 1
    sharding: str = "uniform"
    aggregation: str = "vote"
    model: str = "mlp"
    model_options: Mapping[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    schedule: str = "equal_work"
    added_slice_epochs: int | None = None
    seed: int = 0
    trainer: str = "sequential"
    batch_slots: int | None = None

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.shards, int) or self.shards < 1:
            problems.append(f"shards must be an integer >= 1; got {self.shards!r}")
        if not isinstance(self.slices, int) or self.slices < 1:
            problems.append(f"slices must be an integer >= 1; got {self.slices!r}")
        if self.sharding not in SHARDINGS:
            problems.append(f"sharding must be one of {SHARDINGS.names()}; got {self.sharding!r}")
        if self.aggregation not in AGGREGATIONS:
            problems.append(
                f"aggregation must be one of {AGGREGATIONS.names()}; got {self.aggregation!r}"
            )
        if self.schedule not in _SCHEDULES:
            problems.append(f"schedule must be one of {_SCHEDULES}; got {self.schedule!r}")
        if self.added_slice_epochs is not None and (
            not isinstance(self.added_slice_epochs, int) or self.added_slice_epochs < 0
        ):
            problems.append(
                "added_slice_epochs must be a non-negative integer; "
                f"got {self.added_slice_epochs!r}"
            )
        if not isinstance(self.seed, int):
            problems.append(f"seed must be an integer; got {self.seed!r}")
        if self.trainer not in _TRAINERS:
            problems.append(f"trainer must be one of {_TRAINERS}; got {self.trainer!r}")
        if self.batch_slots is not None and (
            not isinstance(self.batch_slots, int) or self.batch_slots < 1
        ):
            problems.append(
                f"batch_slots must be an integer >= 1 or None; got {self.batch_slots!r}"
            )
        if not isinstance(self.train, TrainConfig):
            problems.append("train must be a TrainConfig")
        if problems:
            raise ConfigError("invalid SISAConfig: " + "; ".join(problems) + ".")

    def stage_epochs(self, last_slice: int) -> list[int]:
        """Epochs per slice stage for slices ``0..last_slice`` (added slices included)."""
        base = slice_epochs(epochs=self.train.epochs, slices=self.slices, schedule=self.schedule)
        added = self.added_slice_epochs
        if added is None:
            added = max(1, round(2 * self.train.epochs / (self.slices + 1)))
        extra = max(last_slice + 1 - self.slices, 0)
        return base + [added] * extra

    @property
    def horizon_epochs(self) -> int:
        """The learning-rate schedule's horizon: the epochs of the initial slices."""
        return sum(self.stage_epochs(self.slices - 1))

    @property
    def slots(self) -> int:
        """Models per batched group (the fixed slot layout)."""
        return self.batch_slots if self.batch_slots is not None else self.shards

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form tagged with its kind and format version.

        The trainer fields appear only when not at their defaults, so the hash of every
        sequential configuration (and the checkpoints bound to it) is what it was before
        they existed.
        """
        data: dict[str, Any] = {
            "kind": "sisa_config",
            "format_version": FORMAT_VERSION,
            "shards": self.shards,
            "slices": self.slices,
            "sharding": self.sharding,
            "aggregation": self.aggregation,
            "model": self.model,
            "model_options": dict(self.model_options),
            "train": self.train.to_dict(),
            "schedule": self.schedule,
            "added_slice_epochs": self.added_slice_epochs,
            "seed": self.seed,
        }
        if self.trainer != "sequential" or self.batch_slots is not None:
            data["trainer"] = self.trainer
            data["batch_slots"] = self.batch_slots
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SISAConfig:
        """Inverse of :meth:`to_dict`; a wrong kind or version is a ConfigError."""
        return cls(**config_fields(cls, data, kind="sisa_config", format_version=FORMAT_VERSION))

    def config_hash(self) -> str:
        """SHA-256 of the canonical JSON form: checkpoints are bound to it."""
        return sha256_hex(json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")))
