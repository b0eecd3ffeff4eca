"""Retrain: one model, retrained from scratch on every forget — the gold standard.

It is what every other strategy is measured against: exact by definition, and as slow as
training. It shares SISA's machinery (a single shard with a single slice), so its data
order, checkpoints and lineage are recorded the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from obliviate.errors import ConfigError
from obliviate.strategies._config import config_fields
from obliviate.strategies.base import STRATEGIES, Guarantee, ModelContext, ModelFactory
from obliviate.strategies.exact.sisa import SISA
from obliviate.strategies.exact.sisa_config import SISAConfig
from obliviate.training import TrainConfig

__all__ = ["Retrain", "RetrainConfig"]

FORMAT_VERSION = 1


@dataclass(frozen=True)
class RetrainConfig:
    """Configuration of :class:`Retrain`: a model, its training, and a seed."""

    model: str = "mlp"
    model_options: Mapping[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0

    def as_sisa(self) -> SISAConfig:
        """The equivalent one-shard, one-slice SISA configuration.

        Its one model's softmax is served as is (``mean_prob``), so probabilities are
        calibrated scores rather than a one-hot "vote" (confidence-based membership attacks
        and reports need them).
        """
        return SISAConfig(
            shards=1,
            slices=1,
            aggregation="mean_prob",
            model=self.model,
            model_options=self.model_options,
            train=self.train,
            seed=self.seed,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form tagged with its kind and format version."""
        return {
            "kind": "retrain_config",
            "format_version": FORMAT_VERSION,
            "model": self.model,
            "model_options": dict(self.model_options),
            "train": self.train.to_dict(),
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RetrainConfig:
        """Inverse of :meth:`to_dict`."""
        return cls(**config_fields(cls, data, kind="retrain_config", format_version=FORMAT_VERSION))


@STRATEGIES.register("retrain")
class Retrain(SISA):
    """Exact unlearning by full retraining without the forgotten samples."""

    name: ClassVar[str] = "retrain"
    guarantee: ClassVar[Guarantee] = Guarantee.EXACT
    config_class: ClassVar[type[Any]] = RetrainConfig

    def __init__(
        self,
        config: RetrainConfig,
        *,
        context: ModelContext,
        model_factory: ModelFactory | None = None,
    ) -> None:
        if not isinstance(config, RetrainConfig):
            raise ConfigError(f"Retrain needs a RetrainConfig; got {type(config).__name__}.")
        super().__init__(config.as_sisa(), context=context, model_factory=model_factory)
        self.retrain_config = config
