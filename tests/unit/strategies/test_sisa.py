"""SISA behaviour beyond the oracle: errors, no-ops, rollback, verification, aggregation."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from obliviate import SISAConfig, TrainConfig, Workspace
from obliviate.errors import (
    ConfigError,
    DataError,
    NotFittedError,
    TrainingError,
    UnknownNameError,
    UnknownSampleError,
)
from obliviate.provenance import VersionRecord
from obliviate.strategies import Guarantee, RetrainConfig
from obliviate.strategies.exact.aggregation import aggregate
from obliviate.strategies.exact.sharding import place
from obliviate.strategies.exact.sisa import SISA, ResumeResult
from obliviate.testing import make_blobs
from obliviate.training import slice_epochs

FAST = TrainConfig(epochs=4, batch_size=8, lr=0.05)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = Workspace.init(tmp_path / "ws")
    workspace.register(make_blobs(n=90, subjects=9), dataset="d")
    return workspace


def _train(ws: Workspace, name: str = "m", **kw: object) -> object:
    config = SISAConfig(
        **{"shards": 3, "slices": 3, "model_options": {"hidden": (8,)}, "train": FAST, **kw}  # type: ignore[arg-type]
    )
    return ws.train(name=name, dataset="d", config=config)


def test_unknown_ids_raise_and_change_nothing(ws: Workspace) -> None:
    model = _train(ws)
    before = ws.provenance.active_version("m")
    with pytest.raises(UnknownSampleError, match="nope"):
        model.forget(sample_ids=["s1", "nope"])  # type: ignore[attr-defined]
    assert ws.provenance.active_version("m") == before
    assert ws.provenance.dataset("d").num_deleted == 0
    assert ws.provenance.deletions(dataset="d") == []


def test_unknown_subject_raises(ws: Workspace) -> None:
    model = _train(ws)
    with pytest.raises(UnknownSampleError):
        model.forget(subject_ids=["nobody"])  # type: ignore[attr-defined]


def test_forgetting_again_is_an_explicit_noop(ws: Workspace) -> None:
    model = _train(ws)
    first = model.forget(sample_ids=["s3"])  # type: ignore[attr-defined]
    again = model.forget(sample_ids=["s3"])  # type: ignore[attr-defined]
    assert not first.noop and again.noop
    assert again.already_deleted_ids == ("s3",)
    assert again.version == first.version


def test_forget_needs_ids(ws: Workspace) -> None:
    model = _train(ws)
    with pytest.raises(DataError, match="sample_ids or subject_ids"):
        model.forget()  # type: ignore[attr-defined]


def test_result_is_exact_and_describes_the_work(ws: Workspace) -> None:
    model = _train(ws)
    result = model.forget(sample_ids=["s0", "s1"])  # type: ignore[attr-defined]
    assert result.guarantee is Guarantee.EXACT
    assert result.version_before == 1
    assert result.rolled_back_version == 2 and result.version == 3
    assert set(result.earliest_slices) == set(result.affected_components)
    assert result.samples_retrained > 0 and result.sample_passes > 0
    assert 0 < result.rollback_seconds <= result.seconds
    kinds = [v.kind for v in ws.provenance.versions("m")]
    assert kinds == ["trained", "rolled_back", "retrained"]


def test_rolled_back_version_is_exact_and_old_version_is_not(ws: Workspace) -> None:
    model = _train(ws)
    result = model.forget(sample_ids=["s4", "s5", "s6"])  # type: ignore[attr-defined]
    assert ws.verify(model="m", version=result.rolled_back_version).ok
    assert ws.verify(model="m", version=result.version).ok
    stale = ws.verify(model="m", version=1)
    assert not stale.ok
    assert set(stale.deleted_seen) == {"s4", "s5", "s6"}


def test_rollback_of_the_only_shard_is_degraded_until_retrained(ws: Workspace) -> None:
    model = ws.train(
        name="one",
        dataset="d",
        strategy="retrain",
        config=RetrainConfig(model_options={"hidden": (8,)}, train=FAST),
    )
    result = model.forget(sample_ids=["s7"])
    version = ws.provenance.version(model="one", number=result.rolled_back_version)
    assert list(version.components.values()) == [None]
    with pytest.raises(NotFittedError, match="no servable shard"):
        model.predict(np.zeros((1, 6), np.float32), version=result.rolled_back_version)
    prediction = model.predict(np.zeros((2, 6), np.float32))
    assert prediction.version == result.version and not prediction.degraded


def test_every_model_on_the_dataset_forgets_a_deletion(ws: Workspace) -> None:
    # Deletion is per dataset: a second model must not keep a sample the first forgot.
    first = _train(ws, "a")
    second = _train(ws, "b", shards=2)
    first.forget(sample_ids=["s9"])  # type: ignore[attr-defined]
    assert not ws.verify(model="b").ok
    result = second.forget(sample_ids=["s9"])  # type: ignore[attr-defined]
    assert not result.noop and result.affected_components
    assert ws.verify(model="b").ok


def _uninterrupted_forget(tmp_path: Path, sample_ids: list[str]) -> VersionRecord:
    """Trains model "m" in tmp_path/ws; returns the version a clean forget of a copy makes."""
    with Workspace.init(tmp_path / "ws") as ws:
        ws.register(make_blobs(n=90, subjects=9), dataset="d")
        _train(ws)
    shutil.copytree(tmp_path / "ws", tmp_path / "reference")
    with Workspace.open(tmp_path / "reference") as reference:
        clean = reference.forget(model="m", sample_ids=sample_ids)
        return reference.provenance.version(model="m", number=clean.version)  # type: ignore[arg-type]


def _killed_on_first_retrain(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """The first retrain dies like a kill -9 after the rollback; counts the calls."""
    original = SISA._bring_up_to_date
    calls = {"n": 0}

    def killed_once(self: SISA, *args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt("killed mid-retrain")
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(SISA, "_bring_up_to_date", killed_once)
    return calls


def test_resume_finishes_an_interrupted_forget_bit_for_bit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = _uninterrupted_forget(tmp_path, ["s4", "s40"])
    calls = _killed_on_first_retrain(monkeypatch)
    with Workspace.open(tmp_path / "ws") as ws:
        model = ws.model("m")
        assert isinstance(model, SISA) and model.resume() is None  # nothing interrupted yet
        with pytest.raises(KeyboardInterrupt):
            model.forget(sample_ids=["s4", "s40"])
        halfway = ws.provenance.active_version("m")
        assert halfway is not None and halfway.kind == "rolled_back"
        # An exception marks the request failed (a kill -9 would leave it rolled_back).
        interrupted = [d for d in ws.provenance.deletions(model="m") if d.status == "failed"]
        assert len(interrupted) == 1 and interrupted[0].rolled_back_version == halfway.number

        fresh = ws.model("m")  # a new instance, as a restarted process has
        assert isinstance(fresh, SISA)
        resumed = fresh.resume()

        assert isinstance(resumed, ResumeResult) and calls["n"] == 2
        final = ws.provenance.active_version("m")
        assert final is not None and final.kind == "retrained"
        assert resumed.version == final.number and final.parent_version == halfway.number
        assert resumed.samples_retrained > 0 and resumed.sample_passes >= resumed.samples_retrained
        assert final.content_hash == expected.content_hash  # the uninterrupted forget's model
        assert final.components == expected.components
        assert ws.verify(model="m").ok
        assert model.resume() is None  # nothing left to do
        closed = ws.provenance.deletion(interrupted[0].id)
        assert closed.status == "completed" and closed.to_version == final.number


@pytest.mark.parametrize("again", [["s4", "s40"], ["s4", "s40", "s63"]], ids=["same", "more"])
def test_forget_after_a_crash_finishes_the_interrupted_retrain_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, again: list[str]
) -> None:
    # No resume() call: the next forget, in a restarted process, must not leave the crashed
    # forget's shards lagging, whether it repeats the same ids (a no-op) or adds new ones.
    expected = _uninterrupted_forget(tmp_path, again)
    calls = _killed_on_first_retrain(monkeypatch)
    with Workspace.open(tmp_path / "ws") as ws:
        with pytest.raises(KeyboardInterrupt):
            ws.model("m").forget(sample_ids=["s4", "s40"])
        halfway = ws.provenance.active_version("m")
        assert halfway is not None and halfway.kind == "rolled_back"

        result = ws.model("m").forget(sample_ids=again)

        assert calls["n"] >= 2
        assert result.noop == (again == ["s4", "s40"])
        final = ws.provenance.active_version("m")
        assert final is not None and final.kind == "retrained"
        assert result.version == final.number
        assert final.content_hash == expected.content_hash  # as if nothing had crashed
        assert final.components == expected.components
        assert ws.verify(model="m").ok
        assert all(d.status in ("completed", "noop") for d in ws.provenance.deletions(model="m"))


def test_predict_errors(ws: Workspace) -> None:
    model = ws.create(name="m", dataset="d", config=SISAConfig(train=FAST))
    with pytest.raises(NotFittedError):
        model.predict(np.zeros((1, 6), np.float32))
    model.fit()
    with pytest.raises(DataError, match=r"shape \(n, 6\)"):
        model.predict(np.zeros((1, 5), np.float32))
    prediction = model.predict(np.zeros((3, 6), np.float32))
    assert prediction.labels.shape == (3,) and prediction.components_used == 5


def test_refitting_a_name_is_refused(ws: Workspace) -> None:
    _train(ws)
    with pytest.raises(ConfigError, match="already"):
        _train(ws)


def test_diverging_training_is_a_clear_error(ws: Workspace) -> None:
    wild = TrainConfig(epochs=3, batch_size=4, lr=1e30, momentum=0.0)
    with pytest.raises(TrainingError, match="loss became"):
        ws.train(name="wild", dataset="d", config=SISAConfig(shards=1, train=wild))
    assert ws.provenance.active_version("wild") is None


def test_config_validation_lists_every_problem() -> None:
    with pytest.raises(ConfigError) as info:
        SISAConfig(shards=0, slices=-1, sharding="nope", aggregation="max")
    message = str(info.value)
    for field in ("shards", "slices", "sharding", "aggregation"):
        assert field in message


def test_config_round_trips_and_rejects_other_kinds() -> None:
    config = SISAConfig(shards=4, slices=2, train=TrainConfig(epochs=3))
    assert SISAConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="kind"):
        SISAConfig.from_dict({**config.to_dict(), "kind": "other"})
    with pytest.raises(ConfigError, match="unknown"):
        SISAConfig.from_dict({**config.to_dict(), "colour": "red"})


def test_unknown_strategy_lists_known_ones(ws: Workspace) -> None:
    with pytest.raises(UnknownNameError, match="sisa"):
        ws.train(name="x", dataset="d", strategy="magic")


def test_placement_is_deletion_stable_and_subjects_stay_together() -> None:
    data = make_blobs(n=200, subjects=20)
    subjects = data.subject_ids
    assert subjects is not None
    full = place(
        "by_subject",
        sample_ids=data.sample_ids,
        subject_ids=subjects,
        labels=data.labels,
        shards=4,
        slices=3,
        seed=1,
    )
    keep = np.arange(1, 200)
    part = place(
        "by_subject",
        sample_ids=data.sample_ids[keep],
        subject_ids=subjects[keep],
        labels=data.labels[keep],
        shards=4,
        slices=3,
        seed=1,
    )
    np.testing.assert_array_equal(full.shard[keep], part.shard)
    np.testing.assert_array_equal(full.order_key[keep], part.order_key)
    for subject in np.unique(subjects):
        rows = subjects == subject
        assert len(set(full.shard[rows])) == 1 and len(set(full.slice[rows])) == 1


def test_class_balanced_deals_each_class_evenly() -> None:
    data = make_blobs(n=300, classes=3)
    placement = place(
        "class_balanced",
        sample_ids=data.sample_ids,
        subject_ids=np.full(300, ""),
        labels=data.labels,
        shards=5,
        slices=2,
        seed=0,
    )
    for label in range(3):
        counts = np.bincount(placement.shard[data.labels == label], minlength=5)
        assert counts.max() - counts.min() <= 1


def test_equal_work_schedule_costs_e_epochs() -> None:
    for epochs, slices in [(10, 4), (20, 5), (3, 1), (6, 5)]:
        per_slice = slice_epochs(epochs=epochs, slices=slices)
        passes = sum(e * (r + 1) / slices for r, e in enumerate(per_slice))
        assert abs(passes - epochs) <= 1.0
    assert slice_epochs(epochs=5, slices=3, schedule="constant") == [5, 5, 5]


def test_aggregations_by_hand() -> None:
    probs = np.array(
        [
            [[0.6, 0.4, 0.0]],  # shard 0 votes 0
            [[0.1, 0.5, 0.4]],  # shard 1 votes 1
            [[0.2, 0.45, 0.35]],  # shard 2 votes 1
        ],
        dtype=np.float32,
    )
    weights = np.array([10.0, 1.0, 1.0])
    np.testing.assert_allclose(aggregate("vote", probs, weights), [[1 / 3, 2 / 3, 0.0]])
    np.testing.assert_allclose(
        aggregate("weighted_vote", probs, weights), [[10 / 12, 2 / 12, 0.0]], rtol=1e-6
    )
    np.testing.assert_allclose(
        aggregate("mean_prob", probs, weights), [[0.3, 0.45, 0.25]], rtol=1e-6
    )
    tie = np.array([[[0.9, 0.1]], [[0.1, 0.9]]], dtype=np.float32)
    assert aggregate("vote", tie, np.ones(2)).argmax() == 0  # ties go to the lowest class
