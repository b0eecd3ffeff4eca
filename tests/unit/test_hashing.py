"""Keyed id hashes decide shard placement and visiting order: their values must never drift."""

from __future__ import annotations

import hashlib

import numpy as np

from obliviate._hashing import id_hash64


def _reference(sample_id: str, salt: str) -> int:
    key = hashlib.sha256(salt.encode()).digest()[:32]
    digest = hashlib.blake2b(sample_id.encode(), digest_size=8, key=key).digest()
    return int.from_bytes(digest, "big")


def test_each_id_hashes_to_the_big_endian_keyed_blake2b_digest() -> None:
    ids = np.array(["s0", "s1", "subject/ü", ""])
    got = id_hash64(ids, "7:order")
    assert got.dtype == np.uint64
    assert got.tolist() == [_reference(str(i), "7:order") for i in ids.tolist()]
    # A pinned value: placement of existing workspaces depends on it.
    assert int(id_hash64(np.array(["s0"]), "x")[0]) == 325193916533698573


def test_an_id_hash_does_not_depend_on_the_other_ids() -> None:
    ids = np.array([f"s{i}" for i in range(50)])
    assert id_hash64(ids, "salt")[17] == id_hash64(ids[17:18], "salt")[0]
    assert id_hash64(np.array([], dtype=str), "salt").shape == (0,)
