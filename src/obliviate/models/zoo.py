"""The model family: a registry of builders keyed by name.

Strategies, the CLI and the service name models in configs ("cnn", "resnet18"), so models
are built through one registry instead of ``if/elif`` on names; adding a model is one
decorated function. Every builder takes the data's shape and class count and returns a
freshly initialised module, so the same seed always gives the same initial weights.
"""

from __future__ import annotations

from typing import Any, Protocol

from torch import nn

from obliviate.registry import Registry

__all__ = ["MODELS", "ModelBuilder"]


class ModelBuilder(Protocol):
    """Builds a freshly initialised classifier for inputs of one shape.

    Builders draw initial weights from torch's global RNG, so callers seed it first; they
    raise :class:`~obliviate.errors.ConfigError` naming any bad option and the valid ones.
    """

    def __call__(
        self, *, input_shape: tuple[int, ...], num_classes: int, **options: Any
    ) -> nn.Module:
        """Returns a module mapping ``(batch, *input_shape)`` to ``(batch, num_classes)`` logits."""
        ...


MODELS: Registry[ModelBuilder] = Registry("model")
