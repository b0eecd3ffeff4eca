"""S3TConfig: the validated, serialisable configuration of an S3T model."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from obliviate._hashing import sha256_hex
from obliviate.errors import ConfigError
from obliviate.strategies._config import config_fields
from obliviate.strategies.exact.aggregation import AGGREGATIONS
from obliviate.strategies.exact.s3t.sequences import SELECTIONS, max_sequences
from obliviate.strategies.exact.sharding import SHARDINGS
from obliviate.training import TrainConfig

__all__ = ["RETRAIN_POLICIES", "S3TConfig"]

RETRAIN_POLICIES = ("exhausted", "below_floor", "never")
FORMAT_VERSION = 1
_HEX64 = frozenset("0123456789abcdef")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class S3TConfig:
    """Configuration of :class:`~obliviate.strategies.exact.s3t.S3T`.

    Args:
        shards: isolated shards (m).
        slices: slices per shard (L); also the number of training stages.
        sequences: orderings trained per shard (the budget B).
        selection: ``"cyclic"`` (rotations; B up to L!) or ``"matching"`` (bipartite
            matching under ``deletion_priors``; B up to L).
        deletion_priors: relative deletion probability of each slice index (length L), used
            by ``"matching"``; ``None`` means uniform.
        sharding: sample placement, as for SISA (``"uniform"``, ``"by_subject"``, ...).
        aggregation: how shard outputs combine (``"mean_prob"`` averages, as S3T does).
        model: the backbone: a zoo name or ``"package.module:function"``; ignored when a
            ``model_factory`` is passed. Its last ``nn.Linear`` (or ``head``) is the task head.
        model_options: keyword options for the zoo builder.
        backbone_checkpoint: id of pretrained backbone weights in the checkpoint store (see
            :func:`obliviate.models.backbone.pretrain_backbone`); ``None`` keeps the
            factory's weights.
        pretraining_dataset: the registered, non-deletable dataset the backbone was
            pretrained on; required with ``backbone_checkpoint``. Its samples enter the
            lineage of every stage and can never be forgotten.
        reset_head: re-initialise the task head (seeded) instead of keeping pretrained values.
        layers: dotted path of the backbone's layer list (an ``nn.ModuleList`` or
            ``nn.Sequential``); ``None`` picks the longest ``nn.ModuleList``, or else treats
            every ``nn.Linear`` but the head as a layer.
        target_modules: names (last dotted part) of the linear modules to adapt inside each
            layer, e.g. ``("query", "value")``; ``None`` adapts every ``nn.Linear``.
        head: dotted path of the task head; ``None`` means the last ``nn.Linear``.
        layers_per_stage: layers adapted per stage, counted down from the top; ``None``
            means ``floor(#layers / L)``.
        rank: LoRA rank r.
        lora_alpha: LoRA alpha (scaling alpha / r, or alpha / sqrt(r) with ``use_rslora``).
        lora_dropout: dropout on the LoRA input path (seeded per stage).
        use_rslora: rank-stabilised scaling.
        train: optimisation of each stage; ``train.epochs`` epochs over its cumulative data.
        retrain_when: ``"exhausted"`` retrains a shard (in the background) once no sequence
            has a usable prefix; ``"below_floor"`` also retrains a shard whose served prefix
            scores below ``accuracy_floor`` on ``validation_dataset``; ``"never"`` leaves
            exhausted shards out of the vote.
        accuracy_floor: accuracy in [0, 1] for ``"below_floor"``.
        validation_dataset: a registered non-deletable dataset to measure it on (deletable
            data would make the retrain decision depend on deleted samples).
        seed: root seed for placement, LoRA initialisation, order and dropout.
    """

    shards: int = 5
    slices: int = 4
    sequences: int = 2
    selection: str = "cyclic"
    deletion_priors: tuple[float, ...] | None = None
    sharding: str = "uniform"
    aggregation: str = "mean_prob"
    model: str = "backbone_mlp"
    model_options: Mapping[str, Any] = field(default_factory=dict)
    backbone_checkpoint: str | None = None
    pretraining_dataset: str | None = None
    reset_head: bool = False
    layers: str | None = None
    target_modules: tuple[str, ...] | None = None
    head: str | None = None
    layers_per_stage: int | None = None
    rank: int = 4
    lora_alpha: float = 8.0
    lora_dropout: float = 0.0
    use_rslora: bool = False
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=5, lr=0.01))
    retrain_when: str = "exhausted"
    accuracy_floor: float | None = None
    validation_dataset: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.deletion_priors, list):
            object.__setattr__(self, "deletion_priors", tuple(self.deletion_priors))
        if isinstance(self.target_modules, list):
            object.__setattr__(self, "target_modules", tuple(self.target_modules))
        problems = self._count_problems() + self._choice_problems() + self._lora_problems()
        problems += self._policy_problems()
        if problems:
            raise ConfigError("invalid S3TConfig: " + "; ".join(problems) + ".")

    def _count_problems(self) -> list[str]:
        problems = []
        for name in ("shards", "slices", "sequences"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                problems.append(f"{name} must be an integer >= 1; got {value!r}")
        if (
            _is_int(self.slices)
            and _is_int(self.sequences)
            and self.slices >= 1
            and self.selection in SELECTIONS
        ):
            limit = max_sequences(min(self.slices, 12), self.selection)
            if self.sequences > limit:
                problems.append(
                    f"sequences must be at most {limit} for selection {self.selection!r} with "
                    f"{self.slices} slices; got {self.sequences}"
                )
        if self.layers_per_stage is not None and (
            not _is_int(self.layers_per_stage) or self.layers_per_stage < 1
        ):
            problems.append(
                f"layers_per_stage must be an integer >= 1 or None; got {self.layers_per_stage!r}"
            )
        if not _is_int(self.seed):
            problems.append(f"seed must be an integer; got {self.seed!r}")
        return problems

    def _choice_problems(self) -> list[str]:
        problems = []
        for name, registry in (
            ("selection", SELECTIONS),
            ("sharding", SHARDINGS),
            ("aggregation", AGGREGATIONS),
        ):
            value = getattr(self, name)
            if value not in registry:
                problems.append(f"{name} must be one of {registry.names()}; got {value!r}")
        priors = self.deletion_priors
        if priors is not None:
            ok = (
                isinstance(priors, tuple)
                and len(priors) == self.slices
                and all(isinstance(p, int | float) and math.isfinite(p) and p >= 0 for p in priors)
                and sum(priors) > 0
            )
            if not ok:
                problems.append(
                    f"deletion_priors must be {self.slices} non-negative numbers (one per slice) "
                    f"with a positive sum, or None; got {priors!r}"
                )
        ckpt = self.backbone_checkpoint
        if ckpt is not None and not (
            isinstance(ckpt, str) and len(ckpt) == 64 and set(ckpt) <= _HEX64
        ):
            problems.append(
                f"backbone_checkpoint must be a checkpoint id (64 hex characters); got {ckpt!r}"
            )
        if ckpt is not None and self.pretraining_dataset is None:
            problems.append(
                "backbone_checkpoint needs pretraining_dataset: the non-deletable dataset its "
                "weights were trained on, so every stage's lineage records it"
            )
        if not isinstance(self.train, TrainConfig):
            problems.append("train must be a TrainConfig")
        return problems

    def _lora_problems(self) -> list[str]:
        problems = []
        if not _is_int(self.rank) or self.rank < 1:
            problems.append(f"rank must be an integer >= 1; got {self.rank!r}")
        if not (isinstance(self.lora_alpha, int | float) and self.lora_alpha > 0):
            problems.append(f"lora_alpha must be a positive number; got {self.lora_alpha!r}")
        if not (isinstance(self.lora_dropout, int | float) and 0 <= self.lora_dropout < 1):
            problems.append(f"lora_dropout must lie in [0, 1); got {self.lora_dropout!r}")
        if self.target_modules is not None and (
            not self.target_modules
            or not all(isinstance(t, str) and t for t in self.target_modules)
        ):
            problems.append(
                f"target_modules must be a non-empty tuple of names or None; "
                f"got {self.target_modules!r}"
            )
        return problems

    def _policy_problems(self) -> list[str]:
        problems = []
        if self.retrain_when not in RETRAIN_POLICIES:
            problems.append(
                f"retrain_when must be one of {RETRAIN_POLICIES}; got {self.retrain_when!r}"
            )
        floor = self.accuracy_floor
        if floor is not None and not (isinstance(floor, int | float) and 0 <= floor <= 1):
            problems.append(f"accuracy_floor must lie in [0, 1] or be None; got {floor!r}")
        if self.retrain_when == "below_floor" and (
            floor is None or self.validation_dataset is None
        ):
            problems.append(
                "retrain_when='below_floor' needs accuracy_floor and validation_dataset (a "
                "non-deletable dataset to measure accuracy on)"
            )
        return problems

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form tagged with its kind and format version."""
        return {
            "kind": "s3t_config",
            "format_version": FORMAT_VERSION,
            "shards": self.shards,
            "slices": self.slices,
            "sequences": self.sequences,
            "selection": self.selection,
            "deletion_priors": None if self.deletion_priors is None else list(self.deletion_priors),
            "sharding": self.sharding,
            "aggregation": self.aggregation,
            "model": self.model,
            "model_options": dict(self.model_options),
            "backbone_checkpoint": self.backbone_checkpoint,
            "pretraining_dataset": self.pretraining_dataset,
            "reset_head": self.reset_head,
            "layers": self.layers,
            "target_modules": None if self.target_modules is None else list(self.target_modules),
            "head": self.head,
            "layers_per_stage": self.layers_per_stage,
            "rank": self.rank,
            "lora_alpha": self.lora_alpha,
            "lora_dropout": self.lora_dropout,
            "use_rslora": self.use_rslora,
            "train": self.train.to_dict(),
            "retrain_when": self.retrain_when,
            "accuracy_floor": self.accuracy_floor,
            "validation_dataset": self.validation_dataset,
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> S3TConfig:
        """Inverse of :meth:`to_dict`; a wrong kind or version is a ConfigError."""
        return cls(**config_fields(cls, data, kind="s3t_config", format_version=FORMAT_VERSION))

    def config_hash(self) -> str:
        """SHA-256 of the canonical JSON form: every stage checkpoint is bound to it."""
        return sha256_hex(json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")))
