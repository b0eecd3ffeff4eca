"""Registering samples, reading them back, and resolving deletion requests to them."""

from __future__ import annotations

from datetime import timezone
from typing import Any

import numpy as np
import pytest

from obliviate.data.sample_set import SampleSet
from obliviate.errors import ConfigError, DataError, UnknownNameError
from obliviate.provenance import DatasetRecord, Provenance
from obliviate.provenance.schema import Sample
from tests.unit.provenance.helpers import make_samples

IDS = [f"s{i}" for i in range(6)]
SUBJECTS = ["alice", "alice", "bob", "carol", "carol", "carol"]


def test_register_and_read_back(prov: Provenance) -> None:
    samples = make_samples(IDS, subjects=SUBJECTS)
    record = prov.register_samples(dataset="toy", samples=samples, chunk="chunk-0")
    assert record == DatasetRecord(
        name="toy",
        num_classes=3,
        feature_shape=(4,),
        deletable=True,
        num_active=6,
        num_deleted=0,
    )
    assert prov.dataset("toy") == record
    assert prov.datasets() == [record]
    table = prov.samples(dataset="toy")
    assert len(table) == 6
    assert table.sample_ids.tolist() == IDS
    assert table.subject_ids.tolist() == SUBJECTS
    assert table.labels.tolist() == samples.labels.tolist()
    assert table.chunks.tolist() == ["chunk-0"] * 6
    assert table.rows.tolist() == list(range(6))
    assert table.status.tolist() == ["active"] * 6
    assert table.pk.dtype == np.int64 and np.all(np.diff(table.pk) > 0)
    with prov.engine.connect() as conn:
        rows = conn.execute(Sample.__table__.select().order_by(Sample.id)).all()
    assert [r.content_hash for r in rows] == samples.content_hashes()
    assert all(r.created_at.tzinfo is not None for r in rows)


def test_samples_without_subjects_read_back_as_empty_strings(prov: Provenance) -> None:
    prov.register_samples(dataset="toy", samples=make_samples(IDS[:2]), chunk="c0")
    assert prov.samples(dataset="toy").subject_ids.tolist() == ["", ""]


def test_reregistering_appends_with_rows_of_the_new_chunk(prov: Provenance) -> None:
    prov.register_samples(dataset="toy", samples=make_samples(IDS[:4]), chunk="c0")
    record = prov.register_samples(dataset="toy", samples=make_samples(IDS[4:]), chunk="c1")
    assert record.num_active == 6
    table = prov.samples(dataset="toy")
    assert table.sample_ids.tolist() == IDS
    assert table.chunks.tolist() == ["c0"] * 4 + ["c1"] * 2
    assert table.rows.tolist() == [0, 1, 2, 3, 0, 1]


def test_colliding_ids_roll_back_completely(prov: Provenance) -> None:
    prov.register_samples(dataset="toy", samples=make_samples(IDS[:4]), chunk="c0")
    before = prov.samples(dataset="toy", status=None)
    with pytest.raises(DataError, match="already registered") as info:
        prov.register_samples(dataset="toy", samples=make_samples(["new", "s2", "s3"]), chunk="c1")
    assert "'s2'" in str(info.value) and "'s3'" in str(info.value)
    after = prov.samples(dataset="toy", status=None)
    assert after.sample_ids.tolist() == before.sample_ids.tolist()
    assert prov.dataset("toy").num_active == 4


def test_collision_message_lists_at_most_five_ids(prov: Provenance) -> None:
    ids = [f"x{i}" for i in range(8)]
    prov.register_samples(dataset="toy", samples=make_samples(ids), chunk="c0")
    with pytest.raises(DataError, match=r"8 in all"):
        prov.register_samples(dataset="toy", samples=make_samples(ids), chunk="c1")


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"feature_shape": (2, 2)}, r"feature_shape=\(4,\).*got.*feature_shape=\(2, 2\)"),
        ({"num_classes": 5}, r"num_classes=3.*got num_classes=5"),
    ],
)
def test_mismatched_dataset_shape_rolls_back(
    prov: Provenance, kwargs: dict[str, Any], expected: str
) -> None:
    prov.register_samples(dataset="toy", samples=make_samples(IDS[:3]), chunk="c0")
    with pytest.raises(DataError, match=expected):
        prov.register_samples(
            dataset="toy",
            samples=make_samples(IDS[3:], **kwargs),
            chunk="c1",
        )
    assert prov.dataset("toy").num_active == 3
    assert len(prov.samples(dataset="toy", status=None)) == 3


def test_deletability_must_match_and_chunks_are_not_reused(prov: Provenance) -> None:
    prov.register_samples(dataset="toy", samples=make_samples(IDS[:3]), chunk="c0")
    with pytest.raises(DataError, match="deletable=True; got.*deletable=False"):
        prov.register_samples(
            dataset="toy", samples=make_samples(IDS[3:]), chunk="c1", deletable=False
        )
    with pytest.raises(DataError, match="chunk 'c0'"):
        prov.register_samples(dataset="toy", samples=make_samples(IDS[3:]), chunk="c0")
    assert prov.dataset("toy").num_active == 3


def test_a_failed_first_registration_leaves_no_dataset(
    prov: Provenance, monkeypatch: pytest.MonkeyPatch
) -> None:
    samples = make_samples(IDS)

    def broken(self: SampleSet) -> list[str]:
        raise RuntimeError("disk on fire")

    # Fails after the dataset row is inserted, inside the same transaction.
    monkeypatch.setattr(SampleSet, "content_hashes", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        prov.register_samples(dataset="toy", samples=samples, chunk="c0")
    assert prov.datasets() == []


def test_unknown_dataset_lists_the_known_ones(prov: Provenance) -> None:
    prov.register_samples(dataset="toy", samples=make_samples(IDS[:1]), chunk="c0")
    with pytest.raises(UnknownNameError, match="'tyo'.*toy"):
        prov.dataset("tyo")
    with pytest.raises(UnknownNameError):
        prov.samples(dataset="tyo")


def test_samples_filter_by_status(prov: Provenance) -> None:
    prov.register_samples(dataset="toy", samples=make_samples(IDS), chunk="c0")
    resolution = prov.resolve(dataset="toy", sample_ids=["s1", "s4"])
    prov.begin_deletion(dataset="toy", sample_pks=resolution.active_pks, reason="test")
    assert prov.samples(dataset="toy").sample_ids.tolist() == ["s0", "s2", "s3", "s5"]
    assert prov.samples(dataset="toy", status="deleted").sample_ids.tolist() == ["s1", "s4"]
    assert len(prov.samples(dataset="toy", status=None)) == 6
    with pytest.raises(ConfigError):
        prov.samples(dataset="toy", status="gone")


def test_resolve_ids_subjects_unknown_and_deleted(prov: Provenance) -> None:
    prov.register_samples(dataset="toy", samples=make_samples(IDS, subjects=SUBJECTS), chunk="c0")
    pk = dict(zip(IDS, prov.samples(dataset="toy").pk.tolist(), strict=True))

    r = prov.resolve(dataset="toy", sample_ids=["s2", "nope", "s2"], subject_ids=["alice", "dave"])
    assert r.active_ids == ["s0", "s1", "s2"]
    assert r.active_pks.tolist() == [pk["s0"], pk["s1"], pk["s2"]]
    assert r.active_pks.dtype == np.int64
    assert r.already_deleted_ids == []
    assert r.unknown_ids == ["nope", "dave"]

    prov.begin_deletion(dataset="toy", sample_pks=[pk["s3"]], reason="test")
    r = prov.resolve(dataset="toy", sample_ids=["s3"], subject_ids=["carol"])
    assert r.active_ids == ["s4", "s5"]
    assert r.already_deleted_ids == ["s3"]
    assert r.unknown_ids == []

    empty = prov.resolve(dataset="toy")
    assert empty.active_pks.size == 0 and empty.unknown_ids == []


def test_resolve_rejects_a_bare_string(prov: Provenance) -> None:
    prov.register_samples(dataset="toy", samples=make_samples(IDS), chunk="c0")
    with pytest.raises(ConfigError, match="not one string"):
        prov.resolve(dataset="toy", sample_ids="s1")


def test_timestamps_are_utc(prov: Provenance) -> None:
    prov.register_samples(dataset="toy", samples=make_samples(IDS[:1]), chunk="c0")
    model = prov.create_model(name="m", strategy="retrain", config={}, dataset="toy")
    assert model.created_at.tzinfo is not None
    assert model.created_at.utcoffset() == timezone.utc.utcoffset(None)


def test_a_second_registry_sees_committed_work(prov: Provenance, db_url: str) -> None:
    prov.register_samples(dataset="toy", samples=make_samples(IDS), chunk="c0")
    with Provenance.connect(db_url, migrate=False) as other:
        assert other.dataset("toy").num_active == 6
        other.begin_deletion(
            dataset="toy", sample_pks=other.samples(dataset="toy").pk[:2], reason="x"
        )
    assert prov.dataset("toy").num_deleted == 2
