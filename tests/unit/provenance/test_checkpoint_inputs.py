"""Checkpoint inputs: a checkpoint computed from others' outputs inherits their lineage.

::

    shard-0:  A {s0, s1}  ->  B {s2}
    shard-1:  D {s3}
    head:     H {s4}, inputs B and D  (an aggregator over the shards' outputs)

    version 1: shard-0 = B, shard-1 = D, head = H
"""

from __future__ import annotations

import pytest

from obliviate.errors import ConfigError, ProvenanceError
from obliviate.provenance import Provenance
from tests.unit.provenance.helpers import hex64, make_samples

IDS = [f"s{i}" for i in range(6)]
A, B, D, H, X = (hex64(n) for n in (1, 2, 4, 8, 9))


def _record(
    prov: Provenance,
    cid: str,
    *,
    component: str,
    parent: str | None = None,
    seen: list[int] | None = None,
    inputs: list[str] | None = None,
) -> None:
    prov.record_checkpoint(
        model="m",
        component=component,
        checkpoint_id=cid,
        storage_url=f"file:///store/{cid}",
        parent_id=parent,
        lineage_hash=hex64(1000 + int(cid, 16)),
        new_sample_pks=seen or [],
        num_samples_seen=len(seen or []),
        meta={},
        inputs=inputs or [],
    )


@pytest.fixture
def pk(prov: Provenance) -> dict[str, int]:
    prov.register_samples(dataset="toy", samples=make_samples(IDS), chunk="c0")
    pks = dict(zip(IDS, prov.samples(dataset="toy").pk.tolist(), strict=True))
    prov.create_model(name="m", strategy="sispa", config={}, dataset="toy")
    _record(prov, A, component="shard-0", seen=[pks["s0"], pks["s1"]])
    _record(prov, B, component="shard-0", parent=A, seen=[pks["s2"]])
    _record(prov, D, component="shard-1", seen=[pks["s3"]])
    _record(prov, H, component="head", seen=[pks["s4"]], inputs=[D, B, B])
    prov.create_version(
        model="m", components={"shard-0": B, "shard-1": D, "head": H}, kind="trained"
    )
    return pks


def test_a_consumer_inherits_its_inputs_lineage(prov: Provenance, pk: dict[str, int]) -> None:
    assert prov.influence_sample_ids(model="m", number=1) == ["s0", "s1", "s2", "s3", "s4"]
    for sample in ("s0", "s2", "s3", "s4"):
        saw = {r.checkpoint_id for r in prov.checkpoints_that_saw(dataset="toy", sample_id=sample)}
        assert H in saw, sample
    assert {r.checkpoint_id for r in prov.checkpoints_that_saw(dataset="toy", sample_id="s5")} == (
        set()
    )
    assert [v.number for v in prov.versions_that_saw(dataset="toy", sample_id="s0")] == [1]


def test_verify_names_the_consumer_when_an_input_saw_a_deleted_sample(
    prov: Provenance, pk: dict[str, int]
) -> None:
    prov.begin_deletion(dataset="toy", sample_pks=[pk["s0"]], model="m", reason="test")
    report = prov.verify_version(model="m", number=1)
    assert not report.ok and report.deleted_seen == ["s0"]
    assert set(report.components_with_deleted) == {"shard-0", "head"}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"inputs": [X]}, "not recorded"),
        ({"inputs": [H]}, "inputs of its own"),
        ({"inputs": [A], "parent": A}, "starts no chain"),
        ({"parent": H}, "ends its chain"),
        ({"inputs": ["nothex"]}, "input checkpoint id"),
    ],
)
def test_inputs_must_be_known_and_one_level_deep(
    prov: Provenance, pk: dict[str, int], kwargs: dict[str, object], match: str
) -> None:
    before = len(prov.checkpoints(model="m"))
    with pytest.raises((ProvenanceError, ConfigError), match=match):
        _record(prov, hex64(77), component="other", **kwargs)  # type: ignore[arg-type]
    assert len(prov.checkpoints(model="m")) == before  # nothing half-written
