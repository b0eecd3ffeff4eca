"""The audit ledger: an append-only RFC 6962 Merkle log of audit events in the registry DB.

:class:`Ledger` appends events (one leaf each, ``SHA-256(0x00 || RFC 8785 JSON)``), signs
C2SP checkpoints of the tree with the workspace's Ed25519 key, and serves inclusion and
consistency proofs. Appends from any number of processes are serialised on the head row
so leaf indices are dense; a batch (:meth:`Ledger.append_many`) is one transaction.
Complete subtree hashes are stored as they form, and cached here, so proofs stay O(log n)
at millions of leaves. See ``docs/ledger.md`` for the threat model.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from obliviate.ledger import store
from obliviate.ledger.errors import LedgerError, TamperError
from obliviate.ledger.events import event as make_event
from obliviate.ledger.jcs import canonicalize
from obliviate.ledger.keys import Keyring
from obliviate.ledger.merkle import (
    EMPTY_ROOT,
    consistency_ranges,
    fold_pieces,
    inclusion_ranges,
    node_hash,
    range_pieces,
)
from obliviate.ledger.note import Checkpoint, SigningKey, VerifierKey, sign_checkpoint
from obliviate.ledger.pseudonym import Pseudonymizer
from obliviate.ledger.schema import CHECKPOINTS, LEAVES
from obliviate.ledger.verify import LedgerReport, verify_log
from obliviate.provenance._util import utcnow
from obliviate.provenance.engine import SQLITE_BEGIN_OPTION, create_engine
from obliviate.provenance.migrate import upgrade

__all__ = ["Ledger", "SignedCheckpoint"]

# Subtrees of at least 2**_BLOCK_LEVEL leaves are kept in memory (n / 32 hashes: about 1 MB
# per 1,000,000 leaves); smaller ones are recomputed from one range read of <= 32 leaves.
_BLOCK_LEVEL = 5
_sha256 = hashlib.sha256


def _perfect_root(hashes: list[bytes]) -> bytes:
    """The root of a perfect subtree from its leaf hashes (a power-of-two count)."""
    while len(hashes) > 1:
        hashes = [node_hash(hashes[j], hashes[j + 1]) for j in range(0, len(hashes), 2)]
    return hashes[0]


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint, its signed note text, and the public key that signed it."""

    checkpoint: Checkpoint
    note: str
    key: VerifierKey


class Ledger:
    """The workspace's append-only audit log.

    Args:
        engine: an engine on a registry database migrated to at least revision 0002.
        directory: where keys and the pseudonym secret live (``<workspace>/ledger``).
        owns_engine: dispose ``engine`` on :meth:`close`.

    Example:
        >>> ledger = Ledger.open("sqlite:///ws/registry.db", directory=Path("ws/ledger"))
        ... # doctest: +SKIP
        >>> ledger.append({"type": "plan", ...})  # doctest: +SKIP
    """

    def __init__(self, engine: sa.Engine, *, directory: Path, owns_engine: bool = False) -> None:
        self._engine = engine
        self._writer = engine.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
        self._owns_engine = owns_engine
        self.directory = directory
        self.origin = self._init_head()
        self.keyring = Keyring(directory / "keys", name=self.origin)
        self.pseudonyms = Pseudonymizer(directory / "secret")
        self._lock = threading.Lock()
        self._frontier: tuple[int, list[tuple[int, bytes]]] | None = None
        self._high: dict[tuple[int, int], bytes] = {}
        self._high_loaded = False

    @classmethod
    def open(cls, url: str, *, directory: Path) -> Ledger:
        """Opens (migrating if needed) the ledger in the database at ``url``."""
        engine = create_engine(url)
        try:
            upgrade(engine)
            return cls(engine, directory=directory, owns_engine=True)
        except BaseException:
            engine.dispose()
            raise

    def _init_head(self) -> str:
        for _ in range(3):
            try:
                with self._writer.begin() as conn:
                    return store.init_head(conn)[0]
            except IntegrityError:  # another process created it first; read theirs
                continue
        raise LedgerError("could not initialise the ledger head row.")  # pragma: no cover

    def close(self) -> None:
        """Releases the engine if this ledger created it."""
        if self._owns_engine:
            self._engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------------ appending
    @property
    def size(self) -> int:
        """The number of leaves committed so far."""
        with self._engine.connect() as conn:
            head = store.read_head(conn)
        return 0 if head is None else head[1]

    def event(self, type: str, *, request_id: str, model: str, **fields: Any) -> dict[str, Any]:
        """Builds an event (see :mod:`obliviate.ledger.events`) without appending it."""
        return make_event(type, request_id=request_id, model=model, **fields)

    def append(self, event: Mapping[str, Any]) -> int:
        """Appends one event in its own transaction; returns its leaf index."""
        return self.append_many([event]).start

    def append_many(self, events: Iterable[Mapping[str, Any]]) -> range:
        """Appends events in one transaction (all or none); returns their leaf indices.

        Raises:
            LedgerError: an event is not a JSON object with a string ``type``, or holds a
                value canonical JSON cannot represent. Nothing is written then.
        """
        encoded = [self._encode(e) for e in events]
        if not encoded:
            size = self.size
            return range(size, size)
        with self._lock:
            with self._writer.begin() as conn:
                start = store.lock_head(conn)
                frontier = list(self._frontier_at(conn, start))
                leaf_rows: list[dict[str, Any]] = []
                node_rows: list[dict[str, Any]] = []
                index = start
                for data, event_type, request_id in encoded:
                    digest = _sha256(b"\x00" + data).digest()
                    leaf_rows.append(
                        {
                            "idx": index,
                            "leaf_hash": digest,
                            "event_type": event_type,
                            "request_id": request_id,
                            "event": data.decode("utf-8"),
                        }
                    )
                    frontier.append((0, digest))
                    level, i = 0, index
                    while i & 1:
                        merged = node_hash(frontier[-2][1], frontier[-1][1])
                        level += 1
                        i >>= 1
                        frontier[-2:] = [(level, merged)]
                        node_rows.append({"level": level, "idx": i, "hash": merged})
                    index += 1
                store.insert_leaves(conn, leaf_rows)
                store.insert_nodes(conn, node_rows)
                store.set_size(conn, index)
            self._frontier = (index, frontier)
            self._high.update(
                ((r["level"], r["idx"]), r["hash"]) for r in node_rows if r["level"] >= _BLOCK_LEVEL
            )
        return range(start, index)

    @staticmethod
    def _encode(event: Mapping[str, Any]) -> tuple[bytes, str, str]:
        if not isinstance(event, Mapping) or not isinstance(event.get("type"), str):
            raise LedgerError(f"an audit event is a mapping with a string 'type'; got {event!r}.")
        request_id = event.get("request_id", "")
        if not isinstance(request_id, str) or len(request_id) > 128:
            raise LedgerError("an audit event's request_id must be a string of <= 128 chars.")
        return canonicalize(event), str(event["type"]), request_id

    def _frontier_at(self, conn: sa.Connection, size: int) -> list[tuple[int, bytes]]:
        if self._frontier is not None and self._frontier[0] == size:
            return self._frontier[1]
        pieces = range_pieces(0, size) if size else []
        found = self._subtrees(conn, pieces)
        return [(level, found[(level, i)]) for level, i in pieces]

    # --------------------------------------------------------------------------- proofs
    def _subtrees(
        self, conn: sa.Connection, keys: Sequence[tuple[int, int]]
    ) -> dict[tuple[int, int], bytes]:
        high = [k for k in keys if k[0] >= _BLOCK_LEVEL]
        missing = [k for k in high if k not in self._high]
        if missing and not self._high_loaded:
            self._high.update(store.fetch_levels(conn, min_level=_BLOCK_LEVEL))
            self._high_loaded = True
            missing = [k for k in missing if k not in self._high]
        if missing:  # written by another process since the bulk load
            self._high.update(store.fetch_subtrees(conn, missing))
        found = {k: self._high[k] for k in high if k in self._high}
        low = [k for k in keys if k[0] < _BLOCK_LEVEL]
        if low:
            width = 1 << _BLOCK_LEVEL
            blocks = sorted({(i << level) // width for level, i in low})
            leaves = store.fetch_leaf_blocks(conn, blocks, width=width)
            for level, i in low:
                start = i << level
                hashes = [leaves.get(j) for j in range(start, start + (1 << level))]
                if all(h is not None for h in hashes):
                    found[(level, i)] = _perfect_root([h for h in hashes if h is not None])
        for level, i in keys:
            if (level, i) not in found:
                raise TamperError(
                    f"the stored subtree (level {level}, index {i}) is missing: the log was "
                    "truncated or its tables were edited."
                )
        return found

    def _range_hashes(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        piece_lists = [range_pieces(s, e) for s, e in ranges]
        keys = [k for ps in piece_lists for k in ps]
        high = self._high
        if all(k in high for k in keys):  # stored subtrees never change: no query needed
            found = {k: high[k] for k in keys}
        else:
            with self._engine.connect() as conn:
                found = self._subtrees(conn, keys)
        return [fold_pieces([found[k] for k in ps]) for ps in piece_lists]

    def _check_size(self, size: int | None) -> int:
        # The log only grows, so a size within the last one seen needs no query.
        if size is not None and self._frontier is not None and 0 <= size <= self._frontier[0]:
            return size
        current = self.size
        if size is None:
            return current
        if not 0 <= size <= current:
            raise LedgerError(f"no tree of size {size}; the log has {current} leaves.")
        return size

    def root(self, size: int | None = None) -> bytes:
        """The Merkle root of the first ``size`` leaves (default: all)."""
        size = self._check_size(size)
        return EMPTY_ROOT if size == 0 else self._range_hashes([(0, size)])[0]

    def leaf_hash(self, index: int) -> bytes:
        """The stored hash of leaf ``index``."""
        return self._range_hashes([(index, index + 1)])[0]

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """The audit path of leaf ``index`` in the tree of ``size`` leaves (default: all)."""
        return self._range_hashes(inclusion_ranges(index, self._check_size(size)))

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """Proof that the tree of ``old_size`` leaves is a prefix of ``new_size`` leaves."""
        return self._range_hashes(consistency_ranges(old_size, self._check_size(new_size)))

    def read_event(self, index: int) -> dict[str, Any]:
        """The event at leaf ``index`` (parsed from its stored canonical JSON)."""
        with self._engine.connect() as conn:
            text = conn.execute(sa.select(LEAVES.c.event).where(LEAVES.c.idx == index)).scalar()
        if text is None:
            raise LedgerError(f"leaf {index} does not exist; the log has {self.size} leaves.")
        data: dict[str, Any] = json.loads(text)
        return data

    def events_for(self, request_id: str) -> list[tuple[int, dict[str, Any]]]:
        """``(leaf index, event)`` of every event of one request, in log order."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(LEAVES.c.idx, LEAVES.c.event)
                .where(LEAVES.c.request_id == request_id)
                .order_by(LEAVES.c.idx)
            ).all()
        return [(int(r.idx), json.loads(r.event)) for r in rows]

    # ---------------------------------------------------------------------- checkpoints
    def signing_key(self) -> SigningKey:
        """The active checkpoint signing key (created on first use)."""
        return self.keyring.active()

    def public_keys(self) -> list[VerifierKey]:
        """Every public key this log has signed with, oldest first."""
        self.keyring.active()
        return self.keyring.public_keys()

    def checkpoint(self, size: int | None = None) -> SignedCheckpoint:
        """Signs and records a checkpoint of the tree of ``size`` leaves (default: all)."""
        size = self._check_size(size)
        key = self.keyring.active()
        checkpoint = Checkpoint(origin=self.origin, size=size, root=self.root(size))
        note = sign_checkpoint(checkpoint, key)
        with self._writer.begin() as conn:
            conn.execute(
                sa.insert(CHECKPOINTS).values(
                    size=size,
                    root_hash=checkpoint.root,
                    key_id=key.verifier.key_hash,
                    note=note,
                    created_at=utcnow(),
                )
            )
        return SignedCheckpoint(checkpoint=checkpoint, note=note, key=key.verifier)

    def latest_checkpoint(self) -> str | None:
        """The note text of the most recent stored checkpoint, if any."""
        with self._engine.connect() as conn:
            return conn.execute(
                sa.select(CHECKPOINTS.c.note).order_by(CHECKPOINTS.c.id.desc()).limit(1)
            ).scalar()

    def rotate_key(self) -> VerifierKey:
        """Replaces the signing key, logs a ``key_rotated`` event and signs a checkpoint.

        The event names both public keys and the new key signs the next checkpoint, so
        the hand-over is itself on the record; the old public key stays in the keyring
        so everything it signed can still be verified.
        """
        old_key, new_key = self.keyring.rotate()
        self.append(
            make_event(
                "key_rotated", request_id="", model="", old_key=old_key.vkey, new_key=new_key.vkey
            )
        )
        self.checkpoint()
        return new_key

    # --------------------------------------------------------------------- verification
    def verify(
        self, *, against: str | None = None, keys: Sequence[VerifierKey] | None = None
    ) -> LedgerReport:
        """Recomputes the whole log and checks it against every signed checkpoint.

        Args:
            against: a saved checkpoint note; the log must still contain that history.
            keys: trusted public keys (default: every key in this workspace's keyring).

        Raises:
            TamperError: a leaf or subtree does not match, or leaves are missing.
            ForkError: a checkpoint (stored or ``against``) describes another history.
            SignatureError: a checkpoint's signature is bad or by an untrusted key.
        """
        trusted = list(keys) if keys is not None else self.keyring.public_keys()
        with self._engine.connect() as conn:
            return verify_log(conn, origin=self.origin, keys=trusted, against=against)
