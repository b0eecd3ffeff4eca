"""Online ensemble behaviour beyond the oracle: subsets, degraded serving, errors, config."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from obliviate import TrainConfig, Workspace
from obliviate.errors import ConfigError, DataError, NotFittedError, UnknownSampleError
from obliviate.strategies.exact.ensemble import OnlineEnsemble, TooFewModelsError, membership
from obliviate.strategies.exact.ensemble_config import EnsembleConfig
from obliviate.testing import make_blobs

FAST = TrainConfig(epochs=2, batch_size=8, lr=0.05)


def _config(**kw: object) -> EnsembleConfig:
    base: dict[str, object] = {
        "members": 3,
        "subset_fraction": 0.5,
        "model_options": {"hidden": (8,)},
        "train": FAST,
    }
    base.update(kw)
    return EnsembleConfig(**base)  # type: ignore[arg-type]


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = Workspace.init(tmp_path / "ws")
    workspace.register(make_blobs(n=60, subjects=6), dataset="d")
    return workspace


def _train(ws: Workspace, **kw: object) -> OnlineEnsemble:
    model = ws.train(name="m", dataset="d", strategy="ensemble", config=_config(**kw))
    assert isinstance(model, OnlineEnsemble)
    return model


def _active(ws: Workspace) -> dict[str, str | None]:
    version = ws.provenance.active_version("m")
    assert version is not None
    return dict(version.components)


def test_membership_is_per_sample_and_near_the_fraction() -> None:
    ids = np.asarray([f"s{i}" for i in range(4000)])
    chosen = membership(ids, member=1, fraction=0.3, seed=7)
    assert abs(chosen.mean() - 0.3) < 0.03
    # A sample's membership does not depend on which other samples exist.
    np.testing.assert_array_equal(membership(ids[::3], member=1, fraction=0.3, seed=7), chosen[::3])
    other = membership(ids, member=2, fraction=0.3, seed=7)
    assert (chosen != other).any()
    assert membership(ids, member=0, fraction=1.0, seed=7).all()


def test_each_checkpoint_records_its_members_subset_of_the_chunk(ws: Workspace) -> None:
    _train(ws)
    table = ws.provenance.samples(dataset="d")
    for k in range(3):
        checkpoint = _active(ws)[f"member-{k}"]
        assert checkpoint is not None
        record = ws.provenance.checkpoint(checkpoint)
        expected = membership(table.sample_ids, member=k, fraction=0.5, seed=0)
        assert record.num_samples_seen == int(expected.sum())
        assert 10 < record.num_samples_seen < 50


def test_add_data_continues_from_each_members_checkpoint(ws: Workspace) -> None:
    model = _train(ws)
    first = _active(ws)
    result = model.add_data(samples=make_blobs(n=30, seed=5, id_prefix="t"))
    assert result.samples == 30
    for name, checkpoint in _active(ws).items():
        assert checkpoint is not None
        assert ws.provenance.checkpoint(checkpoint).parent_id == first[name]


def test_add_data_needs_new_samples_and_a_fit(ws: Workspace, tmp_path: Path) -> None:
    model = _train(ws)
    with pytest.raises(DataError, match="no new samples"):
        model.add_data()
    with pytest.raises(UnknownSampleError):
        model.add_data(sample_ids=["nope"])
    other = Workspace.init(tmp_path / "other")
    other.register(make_blobs(n=10), dataset="d")
    fresh = other.create(name="m", dataset="d", strategy="ensemble", config=_config())
    assert isinstance(fresh, OnlineEnsemble)
    with pytest.raises(NotFittedError):
        fresh.add_data()


def test_invalidated_members_are_excluded_and_predictions_say_so(ws: Workspace) -> None:
    model = _train(ws, min_valid=1)
    ids = ws.provenance.samples(dataset="d").sample_ids
    seen_by = sum(membership(ids, member=k, fraction=0.5, seed=0).astype(int) for k in range(3))
    target = str(ids[np.flatnonzero((seen_by >= 1) & (seen_by <= 2))[0]])
    result = model.forget(sample_ids=[target], background=True)
    rolled = ws.provenance.version(model="m", number=int(result.rolled_back_version or 0))
    invalid = [k for k, c in rolled.components.items() if c is None]
    assert sorted(invalid) == sorted(result.affected_components) and invalid
    degraded = model.predict(make_blobs(n=60).features[:4], version=rolled.number)
    assert degraded.degraded and degraded.components_used == 3 - len(invalid)
    done = result.wait(timeout=60)
    assert done.version is not None
    full = model.predict(make_blobs(n=60).features[:4])
    assert not full.degraded and full.components_used == 3
    assert ws.verify(model="m").ok


def test_too_few_valid_members_is_a_clear_error(ws: Workspace) -> None:
    model = _train(ws, members=2, subset_fraction=1.0, min_valid=2)
    result = model.forget(sample_ids=["s5"], background=True)
    with pytest.raises(TooFewModelsError, match="min_valid is 2"):
        model.predict(make_blobs(n=60).features[:2], version=result.rolled_back_version)
    result.wait(timeout=60)


def test_forgetting_an_untrained_sample_is_a_noop(ws: Workspace) -> None:
    model = _train(ws)
    ws.register(make_blobs(n=5, seed=9, id_prefix="late"), dataset="d")
    result = model.forget(sample_ids=["late1"])
    assert result.noop and result.version == 1


def test_unknown_ids_change_nothing(ws: Workspace) -> None:
    model = _train(ws)
    before = ws.provenance.active_version("m")
    with pytest.raises(UnknownSampleError):
        model.forget(sample_ids=["s1", "ghost"])
    assert ws.provenance.active_version("m") == before
    assert ws.provenance.deletions(dataset="d") == []


def test_subject_deletion_retrains_only_members_that_saw_it(ws: Workspace) -> None:
    model = _train(ws, members=5, subset_fraction=0.2)
    before = _active(ws)
    result = model.forget(subject_ids=["u2"])
    after = _active(ws)
    changed = sorted(k for k in after if after[k] != before[k])
    assert changed == sorted(result.affected_components)
    assert len(result.forgotten_sample_ids) > 0


def test_bad_predict_input_is_a_clear_error(ws: Workspace) -> None:
    model = _train(ws)
    with pytest.raises(DataError, match="features must have shape"):
        model.predict(np.zeros((2, 3)))


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"members": 0}, "members must be"),
        ({"subset_fraction": 0.0}, "subset_fraction"),
        ({"subset_fraction": 1.5}, "subset_fraction"),
        ({"min_valid": 4}, "min_valid must lie"),
        ({"retrain": "later"}, "retrain must be"),
        ({"replay": "yes"}, "replay must be"),
    ],
)
def test_bad_config_names_the_field(kw: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        _config(**kw)


def test_config_round_trips_and_the_model_reopens(ws: Workspace) -> None:
    config = _config(replay=True, retrain="background")
    assert EnsembleConfig.from_dict(config.to_dict()) == config
    ws.train(name="m", dataset="d", strategy="ensemble", config=config)
    reopened = ws.model("m")
    assert isinstance(reopened, OnlineEnsemble)
    assert reopened.config.to_dict() == json.loads(json.dumps(config.to_dict()))
    with pytest.raises(ConfigError, match="already fitted"):
        reopened.fit()
