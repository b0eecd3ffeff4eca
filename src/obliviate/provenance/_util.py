"""Small helpers shared by the provenance modules: time, chunking, hashing, validation.

They live apart so every writer stamps times, previews ids and hashes JSON the same way.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timezone
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa

from obliviate.errors import ConfigError, ProvenanceError

__all__ = [
    "IN_CHUNK",
    "ROW_CHUNK",
    "as_id_list",
    "as_pk_array",
    "canonical_json",
    "chunks",
    "inserted_pk",
    "preview",
    "require_hex64",
    "require_name",
    "sha256_hex",
    "utcnow",
]

T = TypeVar("T")

# Bound parameters per ``IN (...)`` list. SQLite builds before 3.32 allow only 999 variables
# per statement and PostgreSQL 65535, so 900 is safe everywhere.
IN_CHUNK = 900
# Rows per executemany call; bounds memory for the parameter dictionaries.
ROW_CHUNK = 10_000

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_PREVIEW = 5


def utcnow() -> datetime:
    """The current time as a timezone-aware UTC datetime (the only kind the schema stores)."""
    return datetime.now(timezone.utc)


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of ``items`` of at most ``size`` elements."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def inserted_pk(result: sa.CursorResult[Any]) -> int:
    """The integer primary key a single-row ``INSERT`` generated.

    Uses the DBAPI's last-row id rather than ``RETURNING`` so older SQLite builds work too.
    """
    key = result.inserted_primary_key
    if key is None or key[0] is None:  # pragma: no cover - only for multi-row inserts
        raise ProvenanceError("the database did not report the new row's primary key.")
    return int(key[0])


def preview(values: Iterable[Any], limit: int = _PREVIEW) -> str:
    """The first ``limit`` values, plus the total when there are more, for error messages."""
    items = list(values)
    shown = ", ".join(repr(v) for v in items[:limit])
    more = f", ... ({len(items)} in all)" if len(items) > limit else ""
    return shown + more


def canonical_json(value: Any, *, what: str) -> str:
    """Sorted-key, compact JSON: equal values always give equal text, hence equal hashes.

    Raises:
        ConfigError: ``value`` holds something JSON cannot represent (objects, NaN).
    """
    try:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"{what} must be JSON-serialisable (str, int, float, bool, None, lists, dicts with "
            f"str keys; no NaN); got an error: {exc}."
        ) from None


def sha256_hex(text: str) -> str:
    """SHA-256 of the UTF-8 bytes of ``text``, as lowercase hex."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def require_hex64(value: Any, *, what: str) -> str:
    """Returns ``value`` if it is a 64-character lowercase hex digest.

    Raises:
        ConfigError: it is not; content addresses must be exact to be comparable.
    """
    if not isinstance(value, str) or not _HEX64.match(value):
        raise ConfigError(f"{what} must be a 64-character lowercase hex SHA-256; got {value!r}.")
    return value


def require_name(value: Any, *, what: str) -> str:
    """Returns ``value`` if it is a non-empty string without surrounding whitespace.

    Raises:
        ConfigError: it is not.
    """
    if not isinstance(value, str) or not value or value != value.strip():
        raise ConfigError(
            f"{what} must be a non-empty string without surrounding spaces; got {value!r}."
        )
    return value


def as_id_list(values: Sequence[str] | npt.NDArray[Any], *, what: str) -> list[str]:
    """Distinct ids in first-seen order, as Python strings.

    Raises:
        ConfigError: a bare string was passed (it would be read as one id per character).
    """
    if isinstance(values, str):
        raise ConfigError(f"{what} must be a sequence of ids, not one string; got {values!r}.")
    seen: dict[str, None] = {}
    for value in np.asarray(values, dtype=str).tolist() if len(values) else []:
        seen.setdefault(str(value), None)
    return list(seen)


def as_pk_array(values: Sequence[int] | npt.NDArray[Any], *, what: str) -> npt.NDArray[np.int64]:
    """Sorted distinct integer primary keys.

    Raises:
        ConfigError: the values are not a one-dimensional collection of integers.
    """
    array = np.asarray(values)
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if array.ndim != 1 or array.dtype.kind not in "iu":
        raise ConfigError(
            f"{what} must be a one-dimensional collection of integer sample pks; got "
            f"shape {array.shape} and dtype {array.dtype}."
        )
    return np.unique(array.astype(np.int64))
