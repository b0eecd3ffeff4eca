"""Checkpoint lineage on a hand-built chain whose answers are known.

::

    shard-0:  A {s0, s1}  ->  B {s2, s3}  ->  C {s4}
    shard-1:  D {s5, s6}  ->  E {s7}

    version 1: shard-0 = B, shard-1 = E
    version 2: shard-0 = C, shard-1 = D
    version 3: shard-0 excluded, shard-1 = E

Subjects: s0 and s1 belong to alice, s2 to bob.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from obliviate.errors import ConfigError, ProvenanceError, UnknownSampleError
from obliviate.provenance import CheckpointRecord, Provenance
from tests.unit.provenance.helpers import hex64, make_samples

IDS = [f"s{i}" for i in range(8)]
SUBJECTS = ["alice", "alice", "bob", "x3", "x4", "x5", "x6", "x7"]
A, B, C, D, E = (hex64(n) for n in range(1, 6))
NAMES = {A: "A", B: "B", C: "C", D: "D", E: "E"}


@dataclass(frozen=True)
class Chain:
    prov: Provenance
    pk: dict[str, int]


def _record(
    prov: Provenance,
    pk: dict[str, int],
    *,
    component: str,
    cid: str,
    parent: str | None,
    seen: list[str],
    total: int,
) -> None:
    prov.record_checkpoint(
        model="m",
        component=component,
        checkpoint_id=cid,
        storage_url=f"file:///store/{cid}",
        parent_id=parent,
        lineage_hash=hex64(1000 + int(cid, 16)),
        new_sample_pks=[pk[s] for s in seen],
        num_samples_seen=total,
        meta={"name": NAMES[cid]},
    )


@pytest.fixture
def chain(prov: Provenance) -> Chain:
    prov.register_samples(dataset="toy", samples=make_samples(IDS, subjects=SUBJECTS), chunk="c0")
    pk = dict(zip(IDS, prov.samples(dataset="toy").pk.tolist(), strict=True))
    prov.create_model(name="m", strategy="sisa", config={"shards": 2}, dataset="toy")
    _record(prov, pk, component="shard-0", cid=A, parent=None, seen=["s0", "s1"], total=2)
    _record(prov, pk, component="shard-0", cid=B, parent=A, seen=["s2", "s3"], total=4)
    _record(prov, pk, component="shard-0", cid=C, parent=B, seen=["s4"], total=5)
    _record(prov, pk, component="shard-1", cid=D, parent=None, seen=["s5", "s6"], total=2)
    _record(prov, pk, component="shard-1", cid=E, parent=D, seen=["s7"], total=3)
    prov.create_version(model="m", components={"shard-0": B, "shard-1": E}, kind="trained")
    prov.create_version(model="m", components={"shard-0": C, "shard-1": D}, kind="trained")
    prov.create_version(model="m", components={"shard-0": None, "shard-1": E}, kind="trained")
    return Chain(prov=prov, pk=pk)


def _names(records: list[CheckpointRecord]) -> set[str]:
    return {NAMES[r.checkpoint_id] for r in records}


def test_parent_child_chain_is_recorded(chain: Chain) -> None:
    c = chain.prov.checkpoint(C)
    assert (c.model, c.component, c.parent_id, c.num_samples_seen) == ("m", "shard-0", B, 5)
    assert c.meta == {"name": "C"}
    assert c.storage_url == f"file:///store/{C}"
    assert [r.checkpoint_id for r in chain.prov.checkpoints(model="m", component="shard-0")] == [
        A,
        B,
        C,
    ]
    assert len(chain.prov.checkpoints(model="m")) == 5


@pytest.mark.parametrize(
    ("sample_id", "expected"),
    [("s0", {"A", "B", "C"}), ("s2", {"B", "C"}), ("s4", {"C"}), ("s5", {"D", "E"}), ("s7", {"E"})],
)
def test_checkpoints_that_saw_a_sample(chain: Chain, sample_id: str, expected: set[str]) -> None:
    assert _names(chain.prov.checkpoints_that_saw(dataset="toy", sample_id=sample_id)) == expected


def test_checkpoints_that_saw_a_subject(chain: Chain) -> None:
    prov = chain.prov
    assert _names(prov.checkpoints_that_saw(dataset="toy", subject_id="alice")) == {"A", "B", "C"}
    assert _names(prov.checkpoints_that_saw(dataset="toy", subject_id="bob")) == {"B", "C"}
    both = prov.checkpoints_that_saw(dataset="toy", sample_id="s7", subject_id="bob")
    assert _names(both) == {"B", "C", "E"}


def test_lineage_queries_reject_unknown_samples(chain: Chain) -> None:
    with pytest.raises(UnknownSampleError, match="'nope'"):
        chain.prov.checkpoints_that_saw(dataset="toy", sample_id="nope")
    with pytest.raises(UnknownSampleError, match="'dave'"):
        chain.prov.versions_that_saw(dataset="toy", subject_id="dave")
    with pytest.raises(ConfigError):
        chain.prov.checkpoints_that_saw(dataset="toy")


@pytest.mark.parametrize(
    ("sample_id", "expected"),
    [("s0", [1, 2]), ("s4", [2]), ("s5", [1, 2, 3]), ("s7", [1, 3])],
)
def test_versions_that_saw(chain: Chain, sample_id: str, expected: list[int]) -> None:
    found = chain.prov.versions_that_saw(dataset="toy", sample_id=sample_id)
    assert [v.number for v in found] == expected
    assert all(v.model == "m" for v in found)


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        (1, ["s0", "s1", "s2", "s3", "s5", "s6", "s7"]),
        (2, ["s0", "s1", "s2", "s3", "s4", "s5", "s6"]),
        (3, ["s5", "s6", "s7"]),
    ],
)
def test_influence_set(chain: Chain, number: int, expected: list[str]) -> None:
    pks = chain.prov.influence_set(model="m", number=number)
    assert pks.dtype == np.int64
    assert pks.tolist() == sorted(chain.pk[s] for s in expected)
    assert chain.prov.influence_sample_ids(model="m", number=number) == expected


def test_record_checkpoint_is_idempotent(chain: Chain) -> None:
    before = chain.prov.checkpoint(B)
    again = chain.prov.record_checkpoint(
        model="m",
        component="shard-0",
        checkpoint_id=B,
        storage_url="file:///elsewhere",
        parent_id=A,
        lineage_hash=before.lineage_hash,
        new_sample_pks=[chain.pk["s2"], chain.pk["s3"]],
        num_samples_seen=4,
        meta={"name": "B"},
    )
    assert again == before
    assert len(chain.prov.checkpoints(model="m")) == 5
    assert chain.prov.influence_sample_ids(model="m", number=1)[:4] == ["s0", "s1", "s2", "s3"]


def test_conflicting_rerecord_is_refused(chain: Chain) -> None:
    with pytest.raises(ProvenanceError, match="already recorded"):
        chain.prov.record_checkpoint(
            model="m",
            component="shard-1",
            checkpoint_id=B,
            storage_url="file:///x",
            parent_id=A,
            lineage_hash=hex64(999),
            new_sample_pks=[],
            num_samples_seen=0,
            meta={},
        )


def test_bad_checkpoints_write_nothing(chain: Chain) -> None:
    prov = chain.prov
    common: dict[str, Any] = {
        "model": "m",
        "component": "shard-2",
        "storage_url": "file:///x",
        "lineage_hash": hex64(7),
        "num_samples_seen": 1,
        "meta": {},
    }
    with pytest.raises(ProvenanceError, match="parent"):
        prov.record_checkpoint(
            checkpoint_id=hex64(50), parent_id=hex64(51), new_sample_pks=[], **common
        )
    for pks in ([999_999], [chain.pk["s0"], 999_999]):  # dense and sparse pk checks
        with pytest.raises(UnknownSampleError, match="999999"):
            prov.record_checkpoint(
                checkpoint_id=hex64(50), parent_id=None, new_sample_pks=pks, **common
            )
    with pytest.raises(ConfigError, match="64-character"):
        prov.record_checkpoint(checkpoint_id="abc", parent_id=None, new_sample_pks=[], **common)
    assert prov.checkpoints(model="m", component="shard-2") == []
    assert len(prov.checkpoints(model="m")) == 5


def test_delta_pks_accept_numpy_arrays_with_duplicates(chain: Chain) -> None:
    pks = np.array([chain.pk["s5"], chain.pk["s0"], chain.pk["s0"]], dtype=np.int64)
    chain.prov.record_checkpoint(
        model="m",
        component="shard-9",
        checkpoint_id=hex64(60),
        storage_url="file:///x",
        parent_id=None,
        lineage_hash=hex64(61),
        new_sample_pks=pks,
        num_samples_seen=2,
        meta={},
    )
    number = chain.prov.create_version(
        model="m", components={"shard-9": hex64(60)}, kind="trained"
    ).number
    assert chain.prov.influence_sample_ids(model="m", number=number) == ["s0", "s5"]
