"""Shared plumbing for method configs: validation helpers and the to_dict/from_dict pair.

Every ``<Name>Config`` is a frozen dataclass deriving from :class:`MethodConfig`; it lists
its own problems in ``_problems`` and the base raises one ConfigError naming all of them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, TypeVar

from obliviate.errors import ConfigError
from obliviate.strategies._config import config_fields

__all__ = [
    "MethodConfig",
    "check_choice",
    "check_fraction",
    "check_non_negative",
    "check_positive",
    "check_positive_int",
    "check_unit_interval",
    "check_weight",
    "sgd_problems",
]

FORMAT_VERSION = 1

C = TypeVar("C", bound="MethodConfig")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_positive(problems: list[str], name: str, value: object) -> None:
    """Appends a problem unless ``value`` is a finite number > 0."""
    if not (_is_number(value) and float(value) > 0):  # type: ignore[arg-type]
        problems.append(f"{name} must be a positive finite number; got {value!r}")


def check_non_negative(problems: list[str], name: str, value: object) -> None:
    """Appends a problem unless ``value`` is a finite number >= 0."""
    if not (_is_number(value) and float(value) >= 0):  # type: ignore[arg-type]
        problems.append(f"{name} must be a finite number >= 0; got {value!r}")


def check_positive_int(problems: list[str], name: str, value: object) -> None:
    """Appends a problem unless ``value`` is an integer >= 1."""
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        problems.append(f"{name} must be an integer >= 1; got {value!r}")


def check_unit_interval(problems: list[str], name: str, value: object) -> None:
    """Appends a problem unless ``value`` lies in [0, 1) (momentum-like values)."""
    if not (_is_number(value) and 0 <= float(value) < 1):  # type: ignore[arg-type]
        problems.append(f"{name} must lie in [0, 1); got {value!r}")


def check_fraction(problems: list[str], name: str, value: object) -> None:
    """Appends a problem unless ``value`` lies in (0, 1] (a kept fraction such as rho)."""
    if not (_is_number(value) and 0 < float(value) <= 1):  # type: ignore[arg-type]
        problems.append(f"{name} must lie in (0, 1]; got {value!r}")


def check_weight(problems: list[str], name: str, value: object) -> None:
    """Appends a problem unless ``value`` lies in [0, 1] (a mixing weight, ends included)."""
    if not (_is_number(value) and 0 <= float(value) <= 1):  # type: ignore[arg-type]
        problems.append(f"{name} must lie in [0, 1]; got {value!r}")


def check_choice(problems: list[str], name: str, value: object, choices: tuple[str, ...]) -> None:
    """Appends a problem unless ``value`` is one of ``choices``."""
    if value not in choices:
        problems.append(f"{name} must be one of {list(choices)}; got {value!r}")


def sgd_problems(config: object) -> list[str]:
    """Problems of the SGD fields every iterative method has (lr, epochs, batch size, ...)."""
    problems: list[str] = []
    check_positive(problems, "lr", getattr(config, "lr", None))
    check_positive_int(problems, "epochs", getattr(config, "epochs", None))
    check_positive_int(problems, "batch_size", getattr(config, "batch_size", None))
    check_unit_interval(problems, "momentum", getattr(config, "momentum", None))
    check_non_negative(problems, "weight_decay", getattr(config, "weight_decay", None))
    return problems


@dataclass(frozen=True)
class MethodConfig:
    """Base of every approximate method's config: validation and a JSON round trip.

    Subclasses set ``kind`` (the serialised tag) and implement :meth:`_problems`.
    """

    kind: ClassVar[str] = "method_config"

    def __post_init__(self) -> None:
        problems = self._problems()
        if problems:
            raise ConfigError(f"invalid {type(self).__name__}: " + "; ".join(problems) + ".")

    def _problems(self) -> list[str]:
        """Every invalid field, as ``"<field> must ...; got <value>"`` sentences."""
        return []

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form tagged with its kind and format version."""
        out: dict[str, Any] = {"kind": self.kind, "format_version": FORMAT_VERSION}
        for item in fields(self):
            value = getattr(self, item.name)
            out[item.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
        """Inverse of :meth:`to_dict`; a wrong kind, version or field is a ConfigError."""
        payload = config_fields(cls, data, kind=cls.kind, format_version=FORMAT_VERSION)
        for item in fields(cls):
            if isinstance(payload.get(item.name), list):
                payload[item.name] = tuple(payload[item.name])
        return cls(**payload)
