"""Model versions: numbering, content hashes, and exclusive activation."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from obliviate.errors import ConfigError, ProvenanceError, UnknownNameError
from obliviate.provenance import Provenance, version_content_hash
from obliviate.provenance.schema import ModelVersion
from tests.unit.provenance.helpers import hex64, make_samples

X, Y = hex64(1), hex64(2)


@pytest.fixture
def model(prov: Provenance) -> Provenance:
    prov.register_samples(dataset="toy", samples=make_samples(["a", "b"]), chunk="c0")
    pks = prov.samples(dataset="toy").pk.tolist()
    prov.create_model(name="m", strategy="sisa", config={"shards": 1}, dataset="toy")
    for cid, pk in ((X, pks[0]), (Y, pks[1])):
        prov.record_checkpoint(
            model="m",
            component="shard-0",
            checkpoint_id=cid,
            storage_url="file:///x",
            parent_id=None,
            lineage_hash=hex64(100 + pk),
            new_sample_pks=[pk],
            num_samples_seen=1,
            meta={},
        )
    return prov


def _active(prov: Provenance) -> list[int]:
    return [v.number for v in prov.versions("m") if v.status == "active"]


def test_numbers_increase_and_hash_is_canonical(model: Provenance) -> None:
    v1 = model.create_version(model="m", components={"shard-0": X}, kind="trained")
    v2 = model.create_version(
        model="m",
        components={"shard-0": Y},
        kind="retrained",
        details={"b": 1, "a": [1, 2]},
        parent_version=1,
    )
    assert (v1.number, v2.number) == (1, 2)
    assert (v1.status, v2.status) == ("candidate", "candidate")
    assert v2.parent_version == 1 and v1.parent_version is None
    assert v2.components == {"shard-0": Y}
    assert v2.details == {"a": [1, 2], "b": 1}
    assert v2.content_hash == version_content_hash(
        model="m", components={"shard-0": Y}, details={"a": [1, 2], "b": 1}
    )
    assert v1.content_hash == version_content_hash(model="m", components={"shard-0": X}, details={})
    assert model.active_version("m") is None
    assert [v.number for v in model.versions("m")] == [1, 2]
    assert model.version(model="m", number=2) == v2


def test_activation_is_exclusive(model: Provenance) -> None:
    v1 = model.create_version(model="m", components={"shard-0": X}, kind="trained", activate=True)
    assert v1.status == "active" and v1.activated_at is not None
    assert _active(model) == [1]
    model.create_version(model="m", components={"shard-0": Y}, kind="retrained", activate=True)
    assert _active(model) == [2]
    assert model.version(model="m", number=1).status == "retired"
    model.create_version(model="m", components={"shard-0": None}, kind="rolled_back")
    assert _active(model) == [2]
    again = model.activate_version(model="m", number=1)
    assert again.status == "active"
    assert _active(model) == [1]
    assert [v.status for v in model.versions("m")] == ["active", "retired", "candidate"]
    active = model.active_version("m")
    assert active is not None and active.number == 1
    assert model.activate_version(model="m", number=1).activated_at == again.activated_at


def test_database_refuses_a_second_active_version(model: Provenance) -> None:
    model.create_version(model="m", components={"shard-0": X}, kind="trained", activate=True)
    model.create_version(model="m", components={"shard-0": Y}, kind="trained")
    with pytest.raises(sa.exc.IntegrityError), model.engine.begin() as conn:
        conn.execute(
            sa.update(ModelVersion).where(ModelVersion.number == 2).values(status="active")
        )
    assert _active(model) == [1]


def test_unknown_or_foreign_checkpoints_are_refused(model: Provenance) -> None:
    with pytest.raises(ProvenanceError, match="not recorded"):
        model.create_version(model="m", components={"shard-0": hex64(99)}, kind="trained")
    with pytest.raises(ProvenanceError, match="belongs to model 'm' component 'shard-0'"):
        model.create_version(model="m", components={"shard-1": X}, kind="trained")
    with pytest.raises(ProvenanceError, match="no version 7"):
        model.create_version(model="m", components={"shard-0": X}, kind="trained", parent_version=7)
    assert model.versions("m") == []


def test_version_lookups_fail_clearly(model: Provenance) -> None:
    with pytest.raises(ProvenanceError, match="no version 1"):
        model.activate_version(model="m", number=1)
    with pytest.raises(ConfigError, match="positive integer"):
        model.version(model="m", number=0)
    with pytest.raises(UnknownNameError, match="'n'.*'m'"):
        model.versions("n")
    with pytest.raises(ConfigError):
        model.create_version(model="m", components={}, kind="trained")


def test_models_are_registered_once(model: Provenance) -> None:
    record = model.model("m")
    assert (record.strategy, record.config, record.dataset) == ("sisa", {"shards": 1}, "toy")
    assert model.models() == [record]
    with pytest.raises(ConfigError, match="already exists"):
        model.create_model(name="m", strategy="sisa", config={}, dataset="toy")
    with pytest.raises(UnknownNameError):
        model.create_model(name="m2", strategy="sisa", config={}, dataset="nope")
    with pytest.raises(ConfigError, match="JSON"):
        model.create_model(name="m3", strategy="sisa", config={"x": object()}, dataset="toy")
    assert [m.name for m in model.models()] == ["m"]
