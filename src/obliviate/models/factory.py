"""Front doors for getting a model: by zoo name, or by a user's factory function.

Configs and the CLI refer to models by string. Zoo models are looked up in
:data:`~obliviate.models.MODELS`; custom architectures are named as
``"package.module:function"`` so users never have to register anything or fork obliviate.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

# Imported for their side effect: each registers its builders in MODELS.
import obliviate.models.cnn
import obliviate.models.dense
import obliviate.models.resnet  # noqa: F401
from obliviate.errors import ConfigError
from obliviate.models.checks import check_model
from obliviate.models.zoo import MODELS

__all__ = ["build_model", "resolve_factory"]


def build_model(
    name: str, *, input_shape: Sequence[int], num_classes: int, **options: Any
) -> nn.Module:
    """Builds a freshly initialised zoo model and checks it is safe to unlearn.

    Seed torch's global RNG first (``torch.manual_seed``): the same seed gives bitwise equal
    initial weights, which exact unlearning relies on when it retrains from scratch.

    Args:
        name: A registered model name, e.g. ``"mlp"``, ``"cnn"``, ``"resnet18"``.
        input_shape: One sample's shape, without the batch dimension, e.g. ``(1, 28, 28)``.
        num_classes: Number of output logits.
        **options: The model's options (e.g. ``hidden=(256, 128)`` for ``"mlp"``).

    Returns:
        The module; it maps ``(batch, *input_shape)`` to ``(batch, num_classes)``.

    Raises:
        UnknownNameError: ``name`` is not registered; the message lists the models that are.
        ConfigError: an option, the shape or the class count is invalid, or a registered
            builder returned a model with BatchNorm.

    Example:
        >>> import torch
        >>> model = build_model("mlp", input_shape=(1, 8, 8), num_classes=10, hidden=(32,))
        >>> model(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """
    builder = MODELS.get(name)
    model = builder(input_shape=tuple(input_shape), num_classes=num_classes, **options)
    check_model(model)
    return model


def _valid_dotted(text: str) -> bool:
    return bool(text) and all(part.isidentifier() for part in text.split("."))


def resolve_factory(spec: str) -> Callable[[], nn.Module]:
    """Resolves ``"package.module:function"`` to a zero-argument model factory.

    The module is imported and the attribute (which may be dotted, e.g. ``"mod:Cls.create"``)
    looked up now, so a typo in a config fails at load time, not hours into a run. The
    returned callable checks that the factory really returns an ``nn.Module``.

    Args:
        spec: ``"<importable module>:<attribute>"``.

    Returns:
        A callable returning a new model on each call.

    Raises:
        ConfigError: the spec is malformed, the module cannot be imported, the attribute
            does not exist or is not callable.
    """
    if not isinstance(spec, str) or spec.count(":") != 1:
        raise ConfigError(
            f"a model factory must be written 'package.module:function'; got {spec!r}."
        )
    module_name, attribute = (part.strip() for part in spec.split(":"))
    if not _valid_dotted(module_name) or not _valid_dotted(attribute):
        raise ConfigError(
            f"a model factory must be written 'package.module:function' with Python "
            f"identifiers on both sides; got {spec!r}."
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"cannot import module {module_name!r} for model factory {spec!r}: {exc}. Check "
            "the spelling and that the module is installed or on PYTHONPATH."
        ) from exc
    except Exception as exc:
        raise ConfigError(
            f"importing module {module_name!r} for model factory {spec!r} raised "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ConfigError(
                f"module {module_name!r} has no attribute {attribute!r} (missing {part!r}); "
                f"cannot resolve model factory {spec!r}."
            )
        target = getattr(target, part)
    if not callable(target):
        raise ConfigError(
            f"model factory {spec!r} resolves to a {type(target).__name__}, which is not "
            "callable; point it at a function or class that returns an nn.Module."
        )
    function: Callable[[], object] = target

    def factory() -> nn.Module:
        model = function()
        if not isinstance(model, nn.Module):
            raise ConfigError(
                f"model factory {spec!r} returned a {type(model).__name__}, not a torch.nn.Module."
            )
        return model

    factory.__name__ = f"factory[{spec}]"
    factory.__doc__ = f"Builds a model by calling {spec}."
    return factory
