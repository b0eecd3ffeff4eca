"""Stable hashes that define data placement and order.

Placement (shard, slice) and per-epoch order are functions of ``(seed, sample id)`` only,
never of a row position or of which other samples exist. That is what keeps the order of
surviving samples unchanged when others are deleted, and so what makes forgetting exact.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

__all__ = ["derive_seed", "id_hash64", "mix64", "sha256_hex", "sha256_of_ids"]

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def sha256_hex(*parts: bytes | str) -> str:
    """SHA-256 over length-prefixed parts, so that part boundaries are unambiguous."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


def sha256_of_ids(ids: Iterable[str]) -> str:
    """SHA-256 of an ordered list of ids (newline-joined, count-prefixed)."""
    items = list(ids)
    digest = hashlib.sha256(f"{len(items)}\n".encode())
    for item in items:
        digest.update(item.encode())
        digest.update(b"\n")
    return digest.hexdigest()


def derive_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed derived from a root seed and a path of labels (shard, slice, ...)."""
    text = ":".join([str(seed), *(str(p) for p in parts)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def id_hash64(ids: npt.NDArray[np.str_], salt: str) -> npt.NDArray[np.uint64]:
    """A 64-bit keyed hash of each id (BLAKE2b), independent of every other id."""
    key = hashlib.sha256(salt.encode()).digest()[:32]
    digests = b"".join(
        hashlib.blake2b(str(sample_id).encode(), digest_size=8, key=key).digest()
        for sample_id in ids.tolist()
    )
    return np.frombuffer(digests, dtype=">u8").astype(np.uint64)


def mix64(values: npt.NDArray[np.uint64], salt: int) -> npt.NDArray[np.uint64]:
    """SplitMix64 finaliser of ``values ^ salt``: a cheap per-epoch re-shuffle key."""
    with np.errstate(over="ignore"):
        z = (values ^ np.uint64(salt & 0xFFFFFFFFFFFFFFFF)) & _MASK
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return z
