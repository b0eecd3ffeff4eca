"""The Ledger: appends, proofs at any size, checkpoints, keys, and tamper detection."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from obliviate.ledger import (
    ForkError,
    Ledger,
    LedgerError,
    SignatureError,
    SigningKey,
    TamperError,
    canonicalize,
    check_consistent,
)
from obliviate.ledger.merkle import MerkleTree, leaf_hash, verify_consistency, verify_inclusion
from obliviate.ledger.note import Checkpoint, sign_checkpoint
from obliviate.ledger.schema import HEAD, LEAVES, NODES
from tests.unit.ledger.conftest import events


def reference(evts: list[dict[str, object]]) -> MerkleTree:
    return MerkleTree([leaf_hash(canonicalize(e)) for e in evts])


def test_appends_are_dense_and_proofs_match_the_reference(ledger: Ledger) -> None:
    evts = events(70)
    assert ledger.append_many(evts[:33]) == range(33)
    for e in evts[33:40]:
        ledger.append(e)
    assert ledger.append_many(evts[40:]) == range(40, 70)
    ref = reference(evts)
    for size in (1, 2, 3, 31, 32, 33, 64, 70):
        assert ledger.root(size) == ref.root(size)
        for index in {0, size // 2, size - 1}:
            proof = ledger.inclusion_proof(index, size)
            assert proof == ref.inclusion_proof(index, size)
            verify_inclusion(
                index=index, size=size, leaf=ref.subtree(0, index), proof=proof, root=ref.root(size)
            )
        for old in (0, 1, size // 3, size):
            assert ledger.consistency_proof(old, size) == ref.consistency_proof(old, size)
    assert ledger.read_event(5) == evts[5]
    assert [i for i, _ in ledger.events_for("r7")] == [7]


def test_a_second_process_continues_the_same_log(tmp_path: Path, ledger: Ledger) -> None:
    ledger.append_many(events(5))
    other = Ledger(ledger._engine, directory=tmp_path / "ledger")
    assert other.origin == ledger.origin
    other.append_many(events(4, start=5))
    ledger.append(events(1, start=9)[0])  # stale in-memory frontier must be reloaded
    assert ledger.root() == reference(events(10)).root()
    ledger.verify()


def test_concurrent_appenders_keep_indices_dense(ledger: Ledger) -> None:
    def work(offset: int) -> None:
        for i in range(10):
            ledger.append_many(events(3, start=offset + 3 * i))

    threads = [threading.Thread(target=work, args=(k * 100,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ledger.size == 90
    assert ledger.verify().size == 90


def test_a_bad_event_writes_nothing(ledger: Ledger) -> None:
    ledger.append_many(events(3))
    with pytest.raises(LedgerError, match="no representation"):
        ledger.append_many([*events(2, start=3), {"type": "plan", "x": float("nan")}])
    with pytest.raises(LedgerError, match="string 'type'"):
        ledger.append({"no": "type"})
    assert ledger.size == 3
    with pytest.raises(LedgerError, match="no tree of size 4"):
        ledger.inclusion_proof(0, 4)


def test_checkpoint_is_a_signed_c2sp_note(ledger: Ledger) -> None:
    ledger.append_many(events(6))
    signed = ledger.checkpoint()
    lines = signed.note.split("\n")
    assert lines[0] == ledger.origin and lines[0].startswith("obliviate/")
    assert lines[1] == "6" and lines[3] == ""
    assert lines[4].startswith(f"\u2014 {ledger.origin} ")
    assert signed.checkpoint.root == ledger.root()
    assert ledger.latest_checkpoint() == signed.note
    vkey = ledger.public_keys()[0].vkey
    name, key_hash, _ = vkey.split("+", 2)
    assert name == ledger.origin and key_hash == signed.key.key_hash


def test_secrets_are_private_files(ledger: Ledger) -> None:
    ledger.append_many(events(1))
    ledger.checkpoint()
    ledger.pseudonyms.subject("alice")
    for path in (ledger.directory / "keys" / "active.pem", ledger.directory / "secret"):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_key_rotation_keeps_old_checkpoints_verifiable(ledger: Ledger) -> None:
    ledger.append_many(events(4))
    old = ledger.checkpoint()
    new_key = ledger.rotate_key()
    assert new_key.key_hash != old.key.key_hash and new_key.name == old.key.name
    keys = ledger.public_keys()
    assert [k.key_hash for k in keys] == [old.key.key_hash, new_key.key_hash]
    rotated = ledger.read_event(4)
    assert rotated["type"] == "key_rotated" and rotated["new_key"] == new_key.vkey
    latest = ledger.checkpoint()
    assert latest.key == new_key
    ledger.verify(against=old.note)
    proof = ledger.consistency_proof(old.checkpoint.size, latest.checkpoint.size)
    check_consistent(old.note, latest.note, proof, keys=keys)


# ------------------------------------------------------------------------- tamper tests
def _edit(ledger: Ledger, statement: sa.Executable) -> None:
    with ledger._engine.begin() as conn:
        conn.execute(statement)


def test_changed_leaf_is_detected(ledger: Ledger) -> None:
    ledger.append_many(events(20))
    ledger.checkpoint()
    forged = canonicalize({**events(1, start=17)[0], "n": 999}).decode()
    _edit(ledger, sa.update(LEAVES).where(LEAVES.c.idx == 17).values(event=forged))
    with pytest.raises(TamperError, match="leaf 17 does not match its stored hash"):
        ledger.verify()


def test_changed_leaf_with_recomputed_hash_breaks_the_tree(ledger: Ledger) -> None:
    ledger.append_many(events(20))
    data = canonicalize({**events(1, start=17)[0], "n": 999})
    _edit(
        ledger,
        sa.update(LEAVES)
        .where(LEAVES.c.idx == 17)
        .values(event=data.decode(), leaf_hash=leaf_hash(data)),
    )
    with pytest.raises(TamperError, match=r"subtree \(level 1, index 8\) does not match leaves"):
        ledger.verify()


def test_reordered_leaves_are_detected(ledger: Ledger) -> None:
    evts = events(16)
    ledger.append_many(evts)
    ledger.checkpoint()
    for i, j in ((3, 9), (9, 3)):
        data = canonicalize(evts[j])
        _edit(
            ledger,
            sa.update(LEAVES)
            .where(LEAVES.c.idx == i)
            .values(event=data.decode(), leaf_hash=leaf_hash(data)),
        )
    with pytest.raises(TamperError, match="leaves were reordered or replaced"):
        ledger.verify()
    # Rebuilding every subtree too still cannot forge the signed checkpoint.
    tree = reference([evts[9] if k == 3 else evts[3] if k == 9 else e for k, e in enumerate(evts)])
    _edit(ledger, sa.delete(NODES))
    rows = [
        {"level": lv, "idx": i, "hash": h}
        for lv in range(1, len(tree.levels))
        for i, h in enumerate(tree.levels[lv])
    ]
    with ledger._engine.begin() as conn:
        conn.execute(sa.insert(NODES), rows)
    with pytest.raises(ForkError, match="stored checkpoint #1 .* rewritten"):
        ledger.verify()


def test_truncated_log_is_detected(ledger: Ledger) -> None:
    ledger.append_many(events(12))
    saved = ledger.checkpoint().note
    _edit(ledger, sa.delete(LEAVES).where(LEAVES.c.idx >= 10))
    with pytest.raises(TamperError, match="head says 12 leaves but 10 are stored"):
        ledger.verify()
    for level in range(1, 5):  # drop the subtrees that covered the deleted leaves too
        _edit(
            ledger,
            sa.delete(NODES).where(NODES.c.level == level, NODES.c.idx >= 10 // 2**level),
        )
    _edit(ledger, sa.update(HEAD).values(size=10))
    with pytest.raises(TamperError, match="covers 12 leaves but the log has only 10"):
        ledger.verify()
    with pytest.raises(TamperError, match="truncated"):
        ledger.verify(against=saved)


def test_a_deleted_middle_leaf_is_detected(ledger: Ledger) -> None:
    ledger.append_many(events(8))
    _edit(ledger, sa.delete(LEAVES).where(LEAVES.c.idx == 4))
    with pytest.raises(TamperError, match="leaf 4 is missing"):
        ledger.verify()


def test_forked_log_is_detected(ledger: Ledger, tmp_path: Path) -> None:
    ledger.append_many(events(10))
    honest = ledger.checkpoint()
    # The operator shows someone else a different history of the same size...
    key = ledger.signing_key()
    fork = reference([*events(9), events(1, start=50)[0]])
    forged = sign_checkpoint(Checkpoint(origin=ledger.origin, size=10, root=fork.root()), key)
    with pytest.raises(ForkError, match="not consistent"):
        ledger.verify(against=forged)
    # ...and two checkpoints of different sizes that no proof can link.
    ledger.append_many(events(5, start=10))
    later = ledger.checkpoint()
    proof = ledger.consistency_proof(10, 15)
    check_consistent(honest.note, later.note, proof, keys=ledger.public_keys())
    with pytest.raises(ForkError, match="not consistent"):
        check_consistent(forged, later.note, proof, keys=ledger.public_keys())
    with pytest.raises(Exception, match="fork"):
        verify_consistency(
            old_size=10,
            new_size=10,
            old_root=fork.root(),
            new_root=honest.checkpoint.root,
            proof=[],
        )


def test_checkpoint_signed_by_a_wrong_key_is_rejected(ledger: Ledger) -> None:
    ledger.append_many(events(3))
    ledger.checkpoint()
    stranger = SigningKey.generate(ledger.origin)
    with pytest.raises(SignatureError, match="not signed by any trusted key"):
        ledger.verify(keys=[stranger.verifier])
    rogue = sign_checkpoint(Checkpoint(origin=ledger.origin, size=3, root=ledger.root()), stranger)
    with pytest.raises(SignatureError, match="trusted"):
        ledger.verify(against=rogue)


@pytest.mark.postgres
def test_append_and_prove_on_postgres(postgres_url: str, tmp_path: Path) -> None:
    with Ledger.open(postgres_url, directory=tmp_path / "ledger") as ledger:
        evts = events(37)
        ledger.append_many(evts[:20])
        for e in evts[20:]:
            ledger.append(e)
        ref = reference(evts)
        assert ledger.root() == ref.root()
        assert ledger.inclusion_proof(11) == ref.inclusion_proof(11)
        assert ledger.consistency_proof(20) == ref.consistency_proof(20)
        saved = ledger.checkpoint()
        assert ledger.verify(against=saved.note).size == 37
