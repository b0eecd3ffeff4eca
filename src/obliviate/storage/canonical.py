"""Canonical JSON: one byte string per value, so hashes of metadata are stable.

Checkpoint ids hash their metadata. If two processes serialised the same metadata to
different bytes (key order, whitespace, float formatting), the same checkpoint would get two
ids and content addressing would silently stop deduplicating. This module fixes one encoding
and refuses values that cannot survive a round trip unchanged.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from obliviate.errors import StorageError

__all__ = ["canonical_json"]


def _check(value: Any, path: str) -> None:
    # Walk before encoding so the error names where the bad value sits, which json.dumps
    # does not do, and so that values json would coerce (int keys, NaN) are refused instead
    # of coming back different from what was stored.
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise StorageError(
                f"metadata at {path} is {value!r}; JSON has no NaN or infinity, so it could "
                "not be stored and read back unchanged. Store it as a string or drop it."
            )
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise StorageError(
                    f"metadata at {path} has the key {key!r} of type {type(key).__name__}; "
                    "JSON object keys are strings, so convert it with str() first."
                )
            _check(item, f"{path}.{key}")
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]")
        return
    raise StorageError(
        f"metadata at {path} is a {type(value).__name__}, which JSON cannot hold; use "
        "None, bool, int, float, str, lists and dicts with string keys."
    )


def canonical_json(obj: Any) -> bytes:
    """Encodes ``obj`` as canonical JSON bytes.

    The encoding sorts keys, drops all insignificant whitespace, writes UTF-8 (not ``\\u``
    escapes) and formats floats with ``repr``, which round-trips every finite float exactly.
    Tuples are written as lists.

    Args:
        obj: ``None``, ``bool``, ``int``, finite ``float``, ``str``, and lists, tuples and
            dicts (with string keys) of those.

    Returns:
        The UTF-8 bytes; equal values give equal bytes.

    Raises:
        StorageError: ``obj`` holds NaN or infinity, a non-string key, or a type JSON cannot
            represent; the message names where.

    Example:
        >>> canonical_json({"b": 1, "a": [0.1, "é"]}).decode()
        '{"a":[0.1,"é"],"b":1}'
    """
    _check(obj, "$")
    try:
        text = json.dumps(
            obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
        return text.encode("utf-8")
    except (ValueError, TypeError) as exc:  # e.g. lone surrogates that UTF-8 cannot encode
        raise StorageError(f"metadata cannot be encoded as canonical JSON: {exc}") from exc
