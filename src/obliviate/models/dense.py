"""Fully connected models: a linear head and a multi-layer perceptron.

The linear head also serves as the trainable part on top of fixed features (e.g. a frozen
backbone's embeddings), where exact unlearning is cheapest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from torch import nn

from obliviate.models.options import (
    ModelOptions,
    check_fraction,
    check_positive_ints,
    parse_options,
    validate_io,
)
from obliviate.models.zoo import MODELS

__all__ = ["MLPOptions", "build_linear", "build_mlp"]


@dataclass(frozen=True)
class _LinearOptions(ModelOptions):
    """The linear head has no options; this type makes that explicit in errors."""


@dataclass(frozen=True)
class MLPOptions(ModelOptions):
    """Options of the ``mlp`` model.

    Attributes:
        hidden: Width of each hidden layer, in order; empty gives a linear model.
        dropout: Dropout probability after each hidden activation; 0 adds no Dropout layer.
    """

    hidden: tuple[int, ...] = (128,)
    dropout: float = 0.0

    def problems(self) -> list[str]:
        """Describes every invalid field."""
        return check_positive_ints("hidden", self.hidden, allow_empty=True) + check_fraction(
            "dropout", self.dropout
        )


@MODELS.register("linear")
def build_linear(*, input_shape: tuple[int, ...], num_classes: int, **options: Any) -> nn.Module:
    """Flatten + one Linear layer: multinomial logistic regression on the raw inputs.

    Raises:
        ConfigError: any option is given, or the shape or class count is invalid.
    """
    shape = validate_io("linear", input_shape, num_classes, image=False)
    parse_options("linear", _LinearOptions, options)
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(shape), num_classes))


@MODELS.register("mlp")
def build_mlp(*, input_shape: tuple[int, ...], num_classes: int, **options: Any) -> nn.Module:
    """Flatten, then Linear + ReLU (+ Dropout) per hidden layer, then a Linear head.

    Options are those of :class:`MLPOptions`.

    Raises:
        ConfigError: an option is unknown or invalid, or the shape or class count is.
    """
    shape = validate_io("mlp", input_shape, num_classes, image=False)
    config = parse_options("mlp", MLPOptions, options)
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(shape)
    for size in config.hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        if config.dropout > 0:
            layers.append(nn.Dropout(config.dropout))
        width = size
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)
