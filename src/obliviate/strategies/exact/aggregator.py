"""The learned aggregators of SISPA: models from concatenated shard embeddings to classes.

An aggregator takes the ``(n, shards * embedding_dim)`` concatenation of every shard's
embedding of a sample and returns class logits. It is a family behind a registry, so a
user can add one with ``@AGGREGATORS.register("name")``; every builder takes the same
keywords and builds from torch's global RNG (SISPA seeds it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from obliviate.errors import ConfigError
from obliviate.registry import Registry

__all__ = [
    "AGGREGATORS",
    "AggregatorBuilder",
    "ClosedFormAggregator",
    "RidgeAggregator",
    "build_aggregator",
]

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


@runtime_checkable
class ClosedFormAggregator(Protocol):
    """An aggregator fitted by a closed-form solve instead of gradient steps.

    SISPA calls :meth:`fit_closed_form` in place of its training loop. The solve must be a
    deterministic function of the rows in the order given (SISPA orders them by a hash of
    the sample ids), so that a refit after a deletion is bitwise a fit from scratch.
    """

    def fit_closed_form(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Sets the parameters from ``(n, width)`` features and ``(n,)`` class labels."""


class RidgeAggregator(nn.Module):
    """Least squares onto one-hot labels with an L2 penalty, solved in float64.

    Why: after a deletion SISPA must refit its aggregator from scratch on every remaining
    sample, and gradient training dominates the forget time. A ridge solve over the shards'
    logits costs one ``(width + 1)``-square Gram matrix and a Cholesky solve: milliseconds,
    and no learning-rate or epoch settings to get wrong.
    """

    def __init__(self, width: int, num_classes: int, *, l2: float) -> None:
        super().__init__()
        self.linear = nn.Linear(width, num_classes)
        self.num_classes = num_classes
        self.l2 = l2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores (the least-squares fit of the one-hot labels)."""
        scores: torch.Tensor = self.linear(x)
        return scores

    def fit_closed_form(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Solves ``(A^T A + l2 * n * I) W = A^T Y`` with ``A = [features, 1]``."""
        n = int(features.shape[0])
        a = torch.cat([features.double(), torch.ones((n, 1), dtype=torch.float64)], dim=1)
        y = torch.zeros((n, self.num_classes), dtype=torch.float64)
        y[torch.arange(n), labels.long()] = 1.0
        gram = a.T @ a
        gram += torch.eye(gram.shape[0], dtype=torch.float64) * (self.l2 * max(n, 1))
        solution = torch.linalg.solve(gram, a.T @ y)
        with torch.no_grad():
            self.linear.weight.copy_(solution[:-1].T.float())
            self.linear.bias.copy_(solution[-1].float())


@AGGREGATORS.register("ridge")
def ridge_aggregator(
    *, shards: int, embedding_dim: int, num_classes: int, **options: Any
) -> nn.Module:
    """A closed-form ridge regression over the concatenated inputs (see RidgeAggregator).

    Options:
        l2: penalty per sample (default 1e-3); larger values shrink towards equal weights.
    """
    _unknown("ridge", options, {"l2"})
    l2 = options.get("l2", 1e-3)
    if not isinstance(l2, int | float) or not l2 > 0:
        raise ConfigError(f"aggregator 'ridge' option l2 must be a number > 0; got {l2!r}.")
    return RidgeAggregator(shards * embedding_dim, num_classes, l2=float(l2))
