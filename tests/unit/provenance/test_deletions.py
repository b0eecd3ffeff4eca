"""Deletion requests are atomic, and verify_version catches lineage that saw deleted data."""

from __future__ import annotations

import pytest

from obliviate.errors import (
    AlreadyDeletedError,
    LineageError,
    ProvenanceError,
    UnknownSampleError,
)
from obliviate.provenance import Provenance
from tests.unit.provenance.helpers import hex64, make_samples

IDS = [f"s{i}" for i in range(6)]


@pytest.fixture
def pk(prov: Provenance) -> dict[str, int]:
    prov.register_samples(dataset="toy", samples=make_samples(IDS), chunk="c0")
    prov.create_model(name="m", strategy="sisa", config={}, dataset="toy")
    return dict(zip(IDS, prov.samples(dataset="toy").pk.tolist(), strict=True))


def _checkpoint(
    prov: Provenance, cid: str, parent: str | None, pks: list[int], component: str = "shard-0"
) -> None:
    prov.record_checkpoint(
        model="m",
        component=component,
        checkpoint_id=cid,
        storage_url="file:///x",
        parent_id=parent,
        lineage_hash=hex64(int(cid, 16) + 500),
        new_sample_pks=pks,
        num_samples_seen=len(pks),
        meta={},
    )


def test_begin_deletion_marks_samples_and_records_the_request(
    prov: Provenance, pk: dict[str, int]
) -> None:
    _checkpoint(prov, hex64(1), None, list(pk.values()))
    prov.create_version(model="m", components={"shard-0": hex64(1)}, kind="trained", activate=True)
    record = prov.begin_deletion(
        dataset="toy",
        sample_pks=[pk["s1"], pk["s2"]],
        model="m",
        reason="erasure request",
        from_version=1,
        details={"ticket": 7},
    )
    assert (record.dataset, record.model, record.status) == ("toy", "m", "pending")
    assert (record.num_samples, record.from_version, record.details) == (2, 1, {"ticket": 7})
    assert record.requested_at.tzinfo is not None and record.completed_at is None
    assert prov.deletion_sample_ids(record.id) == ["s1", "s2"]
    assert prov.samples(dataset="toy", status="deleted").sample_ids.tolist() == ["s1", "s2"]
    assert prov.dataset("toy").num_deleted == 2
    assert prov.deletions(dataset="toy") == [record]
    assert prov.deletions(model="m") == [record]
    assert prov.deletion(record.id) == record


def test_already_deleted_is_rejected_atomically(prov: Provenance, pk: dict[str, int]) -> None:
    prov.begin_deletion(dataset="toy", sample_pks=[pk["s1"], pk["s2"]], reason="first")
    with pytest.raises(AlreadyDeletedError, match="'s2'"):
        prov.begin_deletion(dataset="toy", sample_pks=[pk["s2"], pk["s3"]], reason="second")
    assert prov.samples(dataset="toy", status="deleted").sample_ids.tolist() == ["s1", "s2"]
    assert len(prov.deletions()) == 1
    with pytest.raises(UnknownSampleError):
        prov.begin_deletion(dataset="toy", sample_pks=[pk["s3"], 999_999], reason="third")
    assert prov.dataset("toy").num_deleted == 2


def test_non_deletable_datasets_refuse_deletions(prov: Provenance) -> None:
    prov.register_samples(
        dataset="public", samples=make_samples(["p0", "p1"]), chunk="c0", deletable=False
    )
    assert prov.dataset("public").deletable is False
    pks = prov.samples(dataset="public").pk
    with pytest.raises(ProvenanceError, match="not deletable"):
        prov.begin_deletion(dataset="public", sample_pks=pks, reason="x")
    assert prov.dataset("public").num_deleted == 0


def test_deletion_model_must_match_the_dataset(prov: Provenance, pk: dict[str, int]) -> None:
    prov.register_samples(dataset="other", samples=make_samples(["o0"]), chunk="c0")
    with pytest.raises(ProvenanceError, match="not trained on dataset 'other'"):
        prov.begin_deletion(
            dataset="other", sample_pks=prov.samples(dataset="other").pk, model="m", reason="x"
        )
    with pytest.raises(ProvenanceError, match="needs a model"):
        prov.begin_deletion(dataset="toy", sample_pks=[pk["s0"]], reason="x", from_version=1)


def test_update_deletion_tracks_progress(prov: Provenance, pk: dict[str, int]) -> None:
    _checkpoint(prov, hex64(1), None, [pk["s0"]])
    _checkpoint(prov, hex64(2), hex64(1), [pk["s1"]])
    prov.create_version(model="m", components={"shard-0": hex64(2)}, kind="trained", activate=True)
    prov.create_version(model="m", components={"shard-0": hex64(1)}, kind="rolled_back")
    deletion = prov.begin_deletion(
        dataset="toy", sample_pks=[pk["s1"]], model="m", reason="x", from_version=1
    )
    rolled = prov.update_deletion(
        deletion.id, status="rolled_back", rolled_back_version=2, details={"plan": "rollback"}
    )
    assert (rolled.status, rolled.rolled_back_version, rolled.completed_at) == (
        "rolled_back",
        2,
        None,
    )
    done = prov.update_deletion(
        deletion.id, status="completed", to_version=2, details={"verified": True}
    )
    assert (done.status, done.to_version) == ("completed", 2)
    assert done.details == {"plan": "rollback", "verified": True}
    assert done.completed_at is not None
    with pytest.raises(ProvenanceError, match="closed"):
        prov.update_deletion(deletion.id, status="failed")
    with pytest.raises(ProvenanceError, match="no deletion request"):
        prov.update_deletion(12345, status="failed")


def test_verify_version_detects_a_deleted_sample_in_an_ancestor(
    prov: Provenance, pk: dict[str, int]
) -> None:
    # shard-0: root {s0, s1} -> child {s2}; shard-1: {s3, s4}
    _checkpoint(prov, hex64(1), None, [pk["s0"], pk["s1"]])
    _checkpoint(prov, hex64(2), hex64(1), [pk["s2"]])
    _checkpoint(prov, hex64(3), None, [pk["s3"], pk["s4"]], component="shard-1")
    prov.create_version(
        model="m", components={"shard-0": hex64(2), "shard-1": hex64(3)}, kind="trained"
    )
    clean = prov.verify_version(model="m", number=1)
    assert clean.ok and clean.deleted_seen == [] and clean.components_with_deleted == {}
    clean.raise_if_failed()

    prov.begin_deletion(dataset="toy", sample_pks=[pk["s1"]], model="m", reason="x")
    report = prov.verify_version(model="m", number=1)
    assert not report.ok
    assert (report.model, report.version) == ("m", 1)
    assert report.deleted_seen == ["s1"]
    assert report.components_with_deleted == {"shard-0": ["s1"]}
    with pytest.raises(LineageError, match="shard-0: 's1'"):
        report.raise_if_failed()

    # Retrain shard-0 from scratch without s1; shard-1 never saw it and is reused.
    _checkpoint(prov, hex64(4), None, [pk["s0"], pk["s2"]])
    fixed = prov.create_version(
        model="m",
        components={"shard-0": hex64(4), "shard-1": hex64(3)},
        kind="retrained",
        parent_version=1,
        activate=True,
    )
    assert prov.verify_version(model="m", number=fixed.number).ok
    # Excluding the contaminated component also yields a clean version.
    excluded = prov.create_version(
        model="m", components={"shard-0": None, "shard-1": hex64(3)}, kind="rolled_back"
    )
    assert prov.verify_version(model="m", number=excluded.number).ok
