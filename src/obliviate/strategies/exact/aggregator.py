"""The learned aggregators of SISPA: models from concatenated shard embeddings to classes.

An aggregator takes the ``(n, shards * embedding_dim)`` concatenation of every shard's
embedding of a sample and returns class logits. It is a family behind a registry, so a
user can add one with ``@AGGREGATORS.register("name")``; every builder takes the same
keywords and builds from torch's global RNG (SISPA seeds it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from obliviate.errors import ConfigError
from obliviate.registry import Registry

__all__ = ["AGGREGATORS", "AggregatorBuilder", "build_aggregator"]

AggregatorBuilder = Callable[..., nn.Module]
AGGREGATORS: Registry[AggregatorBuilder] = Registry("aggregator")


def _unknown(name: str, options: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(options) - allowed)
    if extra:
        raise ConfigError(
            f"aggregator {name!r} has no options {extra}; valid options: {sorted(allowed)}."
        )


@AGGREGATORS.register("mlp")
def mlp_aggregator(
    *, shards: int, embedding_dim: int, num_classes: int, **options: Any
) -> nn.Module:
    """LayerNorm, one hidden ReLU layer, then logits (SISPA's default).

    The LayerNorm is per sample (no batch statistics), so it keeps samples independent and
    puts shard embeddings of different scales on one footing.

    Options:
        hidden: hidden width (default 128).
        dropout: dropout after the hidden layer (default 0).
    """
    _unknown("mlp", options, {"hidden", "dropout"})
    hidden = options.get("hidden", 128)
    dropout = options.get("dropout", 0.0)
    if not isinstance(hidden, int) or hidden < 1:
        raise ConfigError(f"aggregator 'mlp' option hidden must be an int >= 1; got {hidden!r}.")
    if not isinstance(dropout, int | float) or not 0 <= dropout < 1:
        raise ConfigError(f"aggregator 'mlp' option dropout must lie in [0, 1); got {dropout!r}.")
    width = shards * embedding_dim
    layers: list[nn.Module] = [nn.LayerNorm(width), nn.Linear(width, hidden), nn.ReLU()]
    if dropout > 0:
        layers.append(nn.Dropout(float(dropout)))
    layers.append(nn.Linear(hidden, num_classes))
    return nn.Sequential(*layers)


@AGGREGATORS.register("linear")
def linear_aggregator(
    *, shards: int, embedding_dim: int, num_classes: int, **options: Any
) -> nn.Module:
    """LayerNorm then one Linear layer: a learned, shard-aware weighting of the embeddings."""
    _unknown("linear", options, set())
    width = shards * embedding_dim
    return nn.Sequential(nn.LayerNorm(width), nn.Linear(width, num_classes))


def build_aggregator(
    name: str, *, shards: int, embedding_dim: int, num_classes: int, options: dict[str, Any]
) -> nn.Module:
    """Builds the aggregator registered as ``name`` (seed torch's RNG first)."""
    return AGGREGATORS.get(name)(
        shards=shards, embedding_dim=embedding_dim, num_classes=num_classes, **options
    )
