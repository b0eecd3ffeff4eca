"""SISPAConfig: the validated, serialisable configuration of a SISPA model."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from obliviate._hashing import sha256_hex
from obliviate.errors import ConfigError
from obliviate.strategies._config import config_fields
from obliviate.strategies.exact.aggregation import AGGREGATIONS
from obliviate.strategies.exact.aggregator import AGGREGATORS
from obliviate.strategies.exact.sisa_config import SISAConfig
from obliviate.training import TrainConfig

__all__ = ["SISPAConfig"]

FORMAT_VERSION = 1
_AGGREGATOR_DATA = ("train", "heldout")
_AGGREGATOR_INPUTS = ("embedding", "logits")


def _default_aggregator_train() -> TrainConfig:
    return TrainConfig(epochs=20, batch_size=64, optimizer="adam", lr=1e-3)


@dataclass(frozen=True)
class SISPAConfig:
    """Configuration of :class:`~obliviate.strategies.exact.sispa.SISPA`.

    The shard fields mean what they mean in :class:`SISAConfig`; the aggregator fields are
    SISPA's own.

    Args:
        shards: number of isolated shard models (S).
        slices: slices per shard (R).
        sharding: ``"uniform"``, ``"by_subject"`` or ``"class_balanced"``.
        model: the shard architecture (a zoo name or ``"package.module:function"``); its
            embedding is the input to its final ``nn.Linear``.
        model_options: keyword options for the zoo builder.
        train: shard optimisation settings.
        schedule: SISA's slice epoch schedule, ``"equal_work"`` or ``"constant"``.
        added_slice_epochs: epochs for slices added later with ``add``.
        aggregator: a name in :data:`~obliviate.strategies.exact.aggregator.AGGREGATORS`.
        aggregator_options: keyword options for that aggregator.
        aggregator_train: how the aggregator is trained (always from scratch).
        aggregator_input: what each shard contributes to the aggregator's input:
            ``"embedding"`` (the input to its final ``nn.Linear``, SISPA's design) or
            ``"logits"`` (its class logits: ``classes`` numbers per shard instead of the
            embedding width, so the cache, the purge and the from-scratch refit after a
            deletion are several times cheaper, see docs/methods/sispa.md).
        aggregator_data: ``"train"`` fits the aggregator on the shards' training samples;
            ``"heldout"`` on every active sample of ``heldout_dataset``, which must be
            registered with ``deletable=False``.
        heldout_dataset: the held-out dataset (only with ``aggregator_data="heldout"``).
        fallback_aggregation: how a rolled-back version, whose aggregator is excluded while
            shards retrain, combines the shards' own heads (``"vote"``, ``"mean_prob"``, ...).
        seed: root seed for placement, initialisation, order and dropout.
    """

    shards: int = 5
    slices: int = 1
    sharding: str = "uniform"
    model: str = "mlp"
    model_options: Mapping[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    schedule: str = "equal_work"
    added_slice_epochs: int | None = None
    aggregator: str = "mlp"
    aggregator_options: Mapping[str, Any] = field(default_factory=dict)
    aggregator_train: TrainConfig = field(default_factory=_default_aggregator_train)
    aggregator_data: str = "train"
    aggregator_input: str = "embedding"
    heldout_dataset: str | None = None
    fallback_aggregation: str = "vote"
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.aggregator not in AGGREGATORS:
            problems.append(
                f"aggregator must be one of {AGGREGATORS.names()}; got {self.aggregator!r}"
            )
        if not isinstance(self.aggregator_options, Mapping):
            problems.append(
                f"aggregator_options must be a mapping; got {type(self.aggregator_options)}"
            )
        if not isinstance(self.aggregator_train, TrainConfig):
            problems.append("aggregator_train must be a TrainConfig")
        if self.aggregator_data not in _AGGREGATOR_DATA:
            problems.append(
                f"aggregator_data must be one of {_AGGREGATOR_DATA}; got {self.aggregator_data!r}"
            )
        elif self.aggregator_data == "heldout" and not self.heldout_dataset:
            problems.append("aggregator_data='heldout' needs heldout_dataset (a dataset name)")
        elif self.aggregator_data == "train" and self.heldout_dataset is not None:
            problems.append(
                f"heldout_dataset={self.heldout_dataset!r} is only used with "
                "aggregator_data='heldout'"
            )
        if self.aggregator_input not in _AGGREGATOR_INPUTS:
            problems.append(
                f"aggregator_input must be one of {_AGGREGATOR_INPUTS}; "
                f"got {self.aggregator_input!r}"
            )
        if self.fallback_aggregation not in AGGREGATIONS:
            problems.append(
                f"fallback_aggregation must be one of {AGGREGATIONS.names()}; "
                f"got {self.fallback_aggregation!r}"
            )
        if problems:
            raise ConfigError("invalid SISPAConfig: " + "; ".join(problems) + ".")
        self.as_sisa()  # validates the shard fields

    def as_sisa(self) -> SISAConfig:
        """The shard part: the SISA configuration the shard models are trained with."""
        return SISAConfig(
            shards=self.shards,
            slices=self.slices,
            sharding=self.sharding,
            aggregation=self.fallback_aggregation,
            model=self.model,
            model_options=self.model_options,
            train=self.train,
            schedule=self.schedule,
            added_slice_epochs=self.added_slice_epochs,
            seed=self.seed,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form tagged with its kind and format version."""
        return {
            "kind": "sispa_config",
            "format_version": FORMAT_VERSION,
            "shards": self.shards,
            "slices": self.slices,
            "sharding": self.sharding,
            "model": self.model,
            "model_options": dict(self.model_options),
            "train": self.train.to_dict(),
            "schedule": self.schedule,
            "added_slice_epochs": self.added_slice_epochs,
            "aggregator": self.aggregator,
            "aggregator_options": dict(self.aggregator_options),
            "aggregator_train": self.aggregator_train.to_dict(),
            "aggregator_data": self.aggregator_data,
            "aggregator_input": self.aggregator_input,
            "heldout_dataset": self.heldout_dataset,
            "fallback_aggregation": self.fallback_aggregation,
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SISPAConfig:
        """Inverse of :meth:`to_dict`; a wrong kind or version is a ConfigError."""
        fields = config_fields(cls, data, kind="sispa_config", format_version=FORMAT_VERSION)
        if isinstance(fields.get("aggregator_train"), Mapping):
            fields["aggregator_train"] = TrainConfig.from_dict(dict(fields["aggregator_train"]))
        return cls(**fields)

    def config_hash(self) -> str:
        """SHA-256 of the canonical JSON form: the aggregator's checkpoints are bound to it."""
        return sha256_hex(json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")))
