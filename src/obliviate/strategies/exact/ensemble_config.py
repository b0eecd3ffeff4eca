"""EnsembleConfig: the validated, serialisable configuration of an online ensemble."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from obliviate._hashing import sha256_hex
from obliviate.errors import ConfigError
from obliviate.strategies._config import config_fields
from obliviate.training import TrainConfig

__all__ = ["EnsembleConfig"]

FORMAT_VERSION = 1
_RETRAIN = ("foreground", "background")


@dataclass(frozen=True)
class EnsembleConfig:
    """Configuration of :class:`~obliviate.strategies.exact.ensemble.OnlineEnsemble`.

    Args:
        members: number of models in the ensemble (K).
        subset_fraction: the share of each chunk every member trains on; sample ``s`` is in
            member ``k``'s subset iff a keyed hash of ``(seed, k, s)`` falls below it, so
            membership never depends on which other samples exist.
        replay: ``False`` trains each chunk's stage on that chunk's subset only (streaming);
            ``True`` on the member's subsets of every chunk so far.
        model: a model-zoo name or ``"package.module:function"``.
        model_options: keyword options for the zoo builder.
        train: optimisation settings; ``train.epochs`` is the number of epochs **per
            chunk**, and a cosine schedule restarts at every chunk.
        min_valid: predictions need at least this many valid members; fewer is an error.
        retrain: ``"foreground"`` retrains invalidated members inside ``forget``;
            ``"background"`` returns once they are excluded and retrains in a thread.
        seed: root seed for membership, initialisation, order and dropout.
    """

    members: int = 5
    subset_fraction: float = 0.5
    replay: bool = False
    model: str = "mlp"
    model_options: Mapping[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    min_valid: int = 1
    retrain: str = "foreground"
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.members, int) or isinstance(self.members, bool) or self.members < 1:
            problems.append(f"members must be an integer >= 1; got {self.members!r}")
        fraction = self.subset_fraction
        if not (
            isinstance(fraction, int | float)
            and not isinstance(fraction, bool)
            and math.isfinite(fraction)
            and 0 < fraction <= 1
        ):
            problems.append(f"subset_fraction must lie in (0, 1]; got {fraction!r}")
        if not isinstance(self.replay, bool):
            problems.append(f"replay must be True or False; got {self.replay!r}")
        if not isinstance(self.min_valid, int) or isinstance(self.min_valid, bool):
            problems.append(f"min_valid must be an integer; got {self.min_valid!r}")
        elif isinstance(self.members, int) and not 1 <= self.min_valid <= self.members:
            problems.append(
                f"min_valid must lie in [1, members={self.members}]; got {self.min_valid}"
            )
        if self.retrain not in _RETRAIN:
            problems.append(f"retrain must be one of {_RETRAIN}; got {self.retrain!r}")
        if not isinstance(self.train, TrainConfig):
            problems.append("train must be a TrainConfig")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            problems.append(f"seed must be an integer; got {self.seed!r}")
        if problems:
            raise ConfigError("invalid EnsembleConfig: " + "; ".join(problems) + ".")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form tagged with its kind and format version."""
        return {
            "kind": "ensemble_config",
            "format_version": FORMAT_VERSION,
            "members": self.members,
            "subset_fraction": self.subset_fraction,
            "replay": self.replay,
            "model": self.model,
            "model_options": dict(self.model_options),
            "train": self.train.to_dict(),
            "min_valid": self.min_valid,
            "retrain": self.retrain,
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EnsembleConfig:
        """Inverse of :meth:`to_dict`; a wrong kind or version is a ConfigError."""
        return cls(
            **config_fields(cls, data, kind="ensemble_config", format_version=FORMAT_VERSION)
        )

    def config_hash(self) -> str:
        """SHA-256 of the canonical JSON form: checkpoints are bound to it."""
        return sha256_hex(json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")))
