"""Whole-log verification: recompute every leaf and subtree, check every signed checkpoint.

This is what ``obliviate audit verify`` runs. It needs the database and the public keys,
nothing else. It finds

* a changed event (its leaf hash no longer matches): ``leaf 17 does not match its stored
  hash``;
* reordered or replaced leaves and hashes (a stored subtree no longer matches its leaves,
  or a signed checkpoint no longer matches the recomputed root);
* a truncated log (missing leaves, or a checkpoint larger than the log);
* a forked log (a checkpoint, stored or saved elsewhere, whose root differs from the log's
  history at that size, or two checkpoints without a valid consistency proof);
* a checkpoint signed by a key that is not trusted, or with a bad signature.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from obliviate.ledger import store
from obliviate.ledger.errors import ForkError, ProofError, TamperError
from obliviate.ledger.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    consistency_proof,
    fold_pieces,
    range_pieces,
    verify_consistency,
)
from obliviate.ledger.note import Checkpoint, VerifierKey, open_checkpoint

__all__ = ["LedgerReport", "check_consistent", "verify_log"]

_sha256 = hashlib.sha256


@dataclass(frozen=True)
class LedgerReport:
    """The outcome of a successful whole-log verification.

    Attributes:
        origin: the log's origin line.
        size: leaves verified.
        root: the recomputed root hash.
        checkpoints: stored checkpoints whose signature and root were checked.
        latest_checkpoint_size: the size of the newest stored checkpoint (or ``None``).
        against_size: the size of the saved checkpoint checked for consistency, if any.
        seconds: how long verification took.
    """

    origin: str
    size: int
    root: bytes
    checkpoints: int
    latest_checkpoint_size: int | None
    against_size: int | None
    seconds: float


class _Levels:
    """Every complete subtree of a log, level by level, as packed 32-byte hashes."""

    def __init__(self, leaves: bytes) -> None:
        self.levels = [leaves]
        while len(self.levels[-1]) >= 2 * HASH_SIZE:
            prev = self.levels[-1]
            pairs = len(prev) // (2 * HASH_SIZE)
            self.levels.append(
                b"".join(
                    _sha256(b"\x01" + prev[j * 64 : j * 64 + 64]).digest() for j in range(pairs)
                )
            )

    def size(self) -> int:
        return len(self.levels[0]) // HASH_SIZE

    def subtree(self, level: int, index: int) -> bytes | None:
        if level >= len(self.levels):
            return None
        data = self.levels[level][index * HASH_SIZE : (index + 1) * HASH_SIZE]
        return data if len(data) == HASH_SIZE else None

    def hash_range(self, start: int, end: int) -> bytes:
        hashes = []
        for level, i in range_pieces(start, end):
            h = self.subtree(level, i)
            if h is None:  # pragma: no cover - ranges are within the log by construction
                raise TamperError(f"subtree (level {level}, index {i}) is outside the log.")
            hashes.append(h)
        return fold_pieces(hashes)

    def root(self, size: int) -> bytes:
        return EMPTY_ROOT if size == 0 else self.hash_range(0, size)


def _check_leaves(conn: sa.Connection, size: int) -> _Levels:
    packed = bytearray()
    expected = 0
    for index, stored, event in store.iter_leaves(conn):
        if index != expected:
            raise TamperError(
                f"leaf {expected} is missing (the next stored leaf is {index}): leaves were "
                "deleted from the log."
            )
        digest = _sha256(b"\x00" + event.encode("utf-8")).digest()
        if digest != stored:
            raise TamperError(
                f"leaf {index} does not match its stored hash: its event was changed after "
                "it was logged."
            )
        packed += digest
        expected += 1
    if expected != size:
        raise TamperError(
            f"the log's head says {size} leaves but {expected} are stored: the log was "
            f"{'truncated' if expected < size else 'extended behind the head'}."
        )
    return _Levels(bytes(packed))


def _check_nodes(conn: sa.Connection, levels: _Levels) -> None:
    count = 0
    for level, index, stored in store.iter_nodes(conn):
        computed = levels.subtree(level, index) if level > 0 else None
        first, last = index << level, ((index + 1) << level) - 1
        if computed is None:
            raise TamperError(
                f"the stored subtree (level {level}, index {index}) covers leaves "
                f"{first}..{last}, beyond the {levels.size()} leaves of the log: the log "
                "was truncated."
            )
        if computed != stored:
            raise TamperError(
                f"the stored subtree (level {level}, index {index}) does not match leaves "
                f"{first}..{last}: leaves were reordered or replaced."
            )
        count += 1
    expected = sum(len(lv) // HASH_SIZE for lv in levels.levels[1:])
    if count != expected:
        raise TamperError(
            f"{expected - count} stored subtree hash(es) are missing: the tables were edited."
        )


def _check_checkpoint(checkpoint: Checkpoint, levels: _Levels, *, label: str, size: int) -> None:
    if checkpoint.size > size:
        raise TamperError(
            f"{label} covers {checkpoint.size} leaves but the log has only {size}: the log "
            "was truncated."
        )
    root = levels.root(checkpoint.size)
    proof = consistency_proof(checkpoint.size, size, levels.hash_range)
    try:
        verify_consistency(
            old_size=checkpoint.size,
            new_size=size,
            old_root=checkpoint.root,
            new_root=levels.root(size),
            proof=proof,
        )
    except ProofError:
        raise ForkError(
            f"{label} (size {checkpoint.size}, root {checkpoint.root.hex()[:16]}...) is not "
            f"consistent with the log (root {root.hex()[:16]}... at that size): the history "
            "it signed was rewritten (a fork)."
        ) from None


def verify_log(
    conn: sa.Connection,
    *,
    origin: str,
    keys: Sequence[VerifierKey],
    against: str | None = None,
) -> LedgerReport:
    """Verifies the whole log in ``conn``'s database (see the module docstring).

    Raises:
        TamperError, ForkError, SignatureError: naming what failed and where.
    """
    start = time.perf_counter()
    head = store.read_head(conn)
    size = 0 if head is None else head[1]
    levels = _check_leaves(conn, size)
    _check_nodes(conn, levels)
    rows = store.checkpoint_rows(conn)
    for row in rows:
        label = f"stored checkpoint #{row['id']}"
        checkpoint, _ = open_checkpoint(str(row["note"]), keys, origin=origin)
        if checkpoint.size != row["size"] or checkpoint.root != bytes(row["root_hash"]):
            raise TamperError(f"{label}: its columns disagree with its signed note.")
        _check_checkpoint(checkpoint, levels, label=label, size=size)
    against_size = None
    if against is not None:
        saved, _ = open_checkpoint(against, keys, origin=origin)
        _check_checkpoint(saved, levels, label="the saved checkpoint", size=size)
        against_size = saved.size
    return LedgerReport(
        origin=origin,
        size=size,
        root=levels.root(size),
        checkpoints=len(rows),
        latest_checkpoint_size=int(rows[-1]["size"]) if rows else None,
        against_size=against_size,
        seconds=time.perf_counter() - start,
    )


def check_consistent(
    old_note: str,
    new_note: str,
    proof: Sequence[bytes],
    *,
    keys: Sequence[VerifierKey],
    origin: str | None = None,
) -> tuple[Checkpoint, Checkpoint]:
    """Checks offline that two signed checkpoints describe one append-only history.

    Raises:
        SignatureError: either checkpoint is not signed by a trusted key.
        ForkError: the proof does not link them (the log forked or was rewritten).
    """
    old, _ = open_checkpoint(old_note, keys, origin=origin)
    new, _ = open_checkpoint(new_note, keys, origin=origin or old.origin)
    if old.size > new.size:
        old, new = new, old
    try:
        verify_consistency(
            old_size=old.size,
            new_size=new.size,
            old_root=old.root,
            new_root=new.root,
            proof=proof,
        )
    except ProofError as exc:
        raise ForkError(
            f"checkpoints of size {old.size} and {new.size} are not consistent ({exc}): "
            "the log forked or its history was rewritten."
        ) from None
    return old, new
