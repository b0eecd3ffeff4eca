"""Validation shared by the model builders, so every bad option fails the same way.

Model options usually arrive from YAML/JSON configs or the CLI, far from the code that reads
them; failing at build time with every problem listed, together with the valid options,
saves a round trip per typo.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from obliviate.errors import ConfigError

__all__ = [
    "ModelOptions",
    "check_fraction",
    "check_positive_int",
    "check_positive_ints",
    "parse_options",
    "validate_io",
]


@dataclasses.dataclass(frozen=True)
class ModelOptions:
    """Base of each builder's options; subclasses list their fields with defaults."""

    def problems(self) -> list[str]:
        """Describes every invalid field; empty when all are valid."""
        return []


OptionsT = TypeVar("OptionsT", bound=ModelOptions)


def _is_positive_int(value: object) -> bool:
    # bools are ints in Python, but True is not a size.
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_positive_int(name: str, value: object) -> list[str]:
    """A problem unless ``value`` is an int >= 1 (bools are refused)."""
    if _is_positive_int(value):
        return []
    return [f"{name} must be a positive integer; got {value!r}"]


def check_positive_ints(name: str, value: object, *, allow_empty: bool) -> list[str]:
    """A problem unless ``value`` is a tuple of positive ints (lists are converted earlier)."""
    if isinstance(value, tuple) and all(_is_positive_int(v) for v in value):
        if value or allow_empty:
            return []
    kind = "a tuple" if allow_empty else "a non-empty tuple"
    return [f"{name} must be {kind} of positive integers; got {value!r}"]


def check_fraction(name: str, value: object) -> list[str]:
    """A problem unless ``value`` is a number in ``[0, 1)``, as dropout probabilities are."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1:
        return []
    return [f"{name} must be a number in [0, 1); got {value!r}"]


def _describe_valid(options_type: type[ModelOptions]) -> str:
    fields = dataclasses.fields(options_type)
    if not fields:
        return "(none)"
    return ", ".join(f"{field.name}={field.default!r}" for field in fields)


def parse_options(model: str, options_type: type[OptionsT], options: Mapping[str, Any]) -> OptionsT:
    """Builds ``options_type`` from user options, refusing unknown names and bad values.

    Lists become tuples first, because configs written as JSON or YAML cannot spell tuples.

    Raises:
        ConfigError: an option is unknown or invalid; the message lists all of them and the
            valid options with their defaults.
    """
    names = {field.name for field in dataclasses.fields(options_type)}
    unknown = sorted(set(options) - names)
    valid = _describe_valid(options_type)
    if unknown:
        listed = ", ".join(repr(name) for name in unknown)
        raise ConfigError(
            f"unknown option(s) {listed} for model {model!r}; valid options: {valid}."
        )
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
    parsed = options_type(**values)
    problems = parsed.problems()
    if problems:
        raise ConfigError(
            f"invalid options for model {model!r}: {'; '.join(problems)}. "
            f"Valid options (with defaults): {valid}."
        )
    return parsed


def validate_io(
    model: str, input_shape: Sequence[int], num_classes: int, *, image: bool
) -> tuple[int, ...]:
    """Checks the data's shape and class count; returns the shape as a tuple.

    Args:
        model: The model name, for messages.
        input_shape: One sample's shape, without the batch dimension.
        num_classes: Number of output logits.
        image: Whether the model needs ``(channels, height, width)``.

    Raises:
        ConfigError: listing every problem found.
    """
    problems: list[str] = []
    shape: tuple[int, ...] = ()
    if isinstance(input_shape, (list, tuple)) and all(_is_positive_int(v) for v in input_shape):
        shape = tuple(int(v) for v in input_shape)
    if not shape:
        problems.append(
            f"input_shape must be a non-empty tuple of positive integers; got {input_shape!r}"
        )
    elif image and len(shape) != 3:
        problems.append(
            f"input_shape must be (channels, height, width) for an image model; got {shape!r}"
        )
    problems += check_positive_int("num_classes", num_classes)
    if problems:
        raise ConfigError(f"cannot build model {model!r}: {'; '.join(problems)}.")
    return shape
