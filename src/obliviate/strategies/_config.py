"""Shared deserialisation of strategy configs: one place checks kind, version and fields."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from obliviate.errors import ConfigError
from obliviate.training import TrainConfig

__all__ = ["config_fields"]


def config_fields(
    cls: type[Any], data: Mapping[str, Any], *, kind: str, format_version: int
) -> dict[str, Any]:
    """The constructor keywords of ``cls`` from a ``to_dict`` payload.

    A missing ``kind``/``format_version`` is taken as current; a different one, or a field
    ``cls`` does not have, is a ConfigError. A nested ``train`` mapping becomes a TrainConfig.
    """
    payload = dict(data)
    got_kind = payload.pop("kind", kind)
    got_version = payload.pop("format_version", format_version)
    if got_kind != kind or got_version != format_version:
        raise ConfigError(
            f"expected a {kind} of format_version {format_version}; "
            f"got kind={got_kind!r}, format_version={got_version!r}."
        )
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(payload) - known)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} fields {unknown}; valid: {sorted(known)}.")
    if isinstance(payload.get("train"), Mapping):
        payload["train"] = TrainConfig.from_dict(dict(payload["train"]))
    return payload
