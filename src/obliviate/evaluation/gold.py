"""The gold standard: a model retrained without the forgotten data, trained once and cached.

Every unlearning metric is relative to a reference that never saw the forget set. In a
workspace that reference is, by default, the served model's own strategy with its own
config (same shards, architecture, training settings and seed) fitted from scratch on the
dataset's currently active samples: for an exact strategy the served model must then match
it bit for bit, and for an approximately forgotten model it is exactly what the approximate
update aimed at. ``strategy="retrain"`` asks instead for one model retrained with the served
model's architecture, training and seed (the usual reference in the literature). The name
is derived from a hash of (dataset, sorted deleted sample pks, strategy, config), so asking
again for the same state reuses the model already trained.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from obliviate._hashing import sha256_hex
from obliviate.errors import ConfigError, UnknownNameError
from obliviate.strategies.base import STRATEGIES, ModelFactory, Strategy
from obliviate.strategies.exact.retrain import RetrainConfig
from obliviate.training import TrainConfig

__all__ = ["GOLD_PREFIX", "GoldReference", "ensure_reference", "gold_key", "reference_config"]

#: Gold-standard model names start with this (workspace names must start alphanumeric).
GOLD_PREFIX = "gold-"


def reference_config(model_config: Mapping[str, Any]) -> RetrainConfig:
    """The :class:`RetrainConfig` carrying over a served model's model, training and seed.

    Raises:
        ConfigError: the served model's config has no ``model``/``train``/``seed`` fields
            (its strategy does not train a single architecture from scratch).
    """
    missing = [k for k in ("model", "train", "seed") if k not in model_config]
    if missing:
        raise ConfigError(
            f"cannot derive a gold-standard reference: the model's config lacks {missing}; "
            "only strategies that train a model zoo architecture (sisa, retrain) have one."
        )
    train = model_config["train"]
    return RetrainConfig(
        model=str(model_config["model"]),
        model_options=dict(model_config.get("model_options", {})),
        train=train if isinstance(train, TrainConfig) else TrainConfig.from_dict(dict(train)),
        seed=int(model_config["seed"]),
    )


def gold_key(*, dataset: str, deleted_pks: Any, strategy: str, config: Any) -> str:
    """SHA-256 of (dataset, sorted deleted pks, strategy, the strategy's config)."""
    pks = sorted(int(pk) for pk in deleted_pks)
    body = json.dumps(config.to_dict(), sort_keys=True)
    return sha256_hex(dataset, json.dumps(pks), strategy, body)


@dataclass(frozen=True)
class GoldReference:
    """A gold-standard reference in a workspace.

    Attributes:
        name: the reference model's name (``gold-<key prefix>``).
        key: the full cache key.
        created: whether this call trained it (``False``: reused from the cache).
        strategy: the fitted ``retrain`` strategy.
        seconds: training time when it was created here, else ``None``.
        sample_passes: training sample-passes when created here, else ``None``.
    """

    name: str
    key: str
    created: bool
    strategy: Strategy
    seconds: float | None = None
    sample_passes: int | None = None


def ensure_reference(
    *,
    workspace: Any,
    model: str,
    model_factory: ModelFactory | None = None,
    strategy: str | None = None,
) -> GoldReference:
    """Returns the gold-standard reference for ``model``'s dataset as it is now.

    Trains it when no model with its key exists (or the existing one never finished
    fitting); otherwise reuses it.

    Args:
        workspace: the workspace holding ``model``.
        model: the served model to find a reference for.
        model_factory: the served model's Python factory, if it was trained with one.
        strategy: ``None`` (default) for the served model's own strategy and config;
            ``"retrain"`` for one model with its architecture, training and seed.

    Raises:
        ConfigError: ``strategy`` is neither ``None`` nor ``"retrain"``, or the served
            model's config has no architecture to carry over.
        UnknownNameError: ``model`` is not registered.
    """
    record = workspace.provenance.model(model)
    kind = record.strategy if strategy is None else strategy
    config: Any
    if kind == record.strategy:
        config = STRATEGIES.get(kind).config_class.from_dict(record.config)
    elif kind == "retrain":
        config = reference_config(record.config)
    else:
        raise ConfigError(
            f"a gold-standard reference uses the model's own strategy ({record.strategy!r}) "
            f"or 'retrain'; got {strategy!r}."
        )
    deleted = workspace.provenance.samples(dataset=record.dataset, status="deleted").pk
    key = gold_key(dataset=record.dataset, deleted_pks=deleted, strategy=kind, config=config)
    name = f"{GOLD_PREFIX}{key[:16]}"
    try:
        workspace.provenance.model(name)
    except UnknownNameError:
        reference = workspace.create(
            name=name,
            dataset=record.dataset,
            strategy=kind,
            config=config,
            model_factory=model_factory,
        )
        fit = reference.fit()
        return GoldReference(
            name=name,
            key=key,
            created=True,
            strategy=reference,
            seconds=fit.seconds,
            sample_passes=fit.sample_passes,
        )
    reference = workspace.model(name, model_factory=model_factory)
    if workspace.provenance.active_version(name) is None:
        fit = reference.fit()
        return GoldReference(
            name=name,
            key=key,
            created=True,
            strategy=reference,
            seconds=fit.seconds,
            sample_passes=fit.sample_passes,
        )
    return GoldReference(name=name, key=key, created=False, strategy=reference)
