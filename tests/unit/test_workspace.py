"""Workspace: init/open, registration that is all-or-nothing, feature purging."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from obliviate import SISAConfig, TrainConfig, Workspace
from obliviate.errors import ConfigError, DataError, UnknownNameError, WorkspaceError
from obliviate.testing import make_blobs


def test_init_then_open(tmp_path: Path) -> None:
    with Workspace.init(tmp_path / "ws") as ws:
        assert (ws.root / "obliviate.json").exists()
        assert ws.database_url.startswith("sqlite:///")
    with Workspace.open(tmp_path / "ws") as ws:
        assert ws.provenance.datasets() == []


def test_init_twice_and_open_missing_are_clear_errors(tmp_path: Path) -> None:
    Workspace.init(tmp_path / "ws").close()
    with pytest.raises(WorkspaceError, match="already exists"):
        Workspace.init(tmp_path / "ws")
    with pytest.raises(WorkspaceError, match="no workspace"):
        Workspace.open(tmp_path / "elsewhere")


def test_corrupt_manifest_is_a_workspace_error(tmp_path: Path) -> None:
    Workspace.init(tmp_path / "ws").close()
    (tmp_path / "ws" / "obliviate.json").write_text("{not json")
    with pytest.raises(WorkspaceError, match="unreadable"):
        Workspace.open(tmp_path / "ws")


def test_duplicate_registration_leaves_nothing_behind(tmp_path: Path) -> None:
    with Workspace.init(tmp_path / "ws") as ws:
        ws.register(make_blobs(n=20), dataset="d")
        chunks_before = sorted((ws.root / "features" / "d").iterdir())
        clash = make_blobs(n=10, seed=3)  # ids s0..s9 collide
        with pytest.raises(DataError, match="s0"):
            ws.register(clash, dataset="d")
        assert ws.provenance.dataset("d").num_active == 20
        assert sorted((ws.root / "features" / "d").iterdir()) == chunks_before


def test_bad_names_are_rejected(tmp_path: Path) -> None:
    with Workspace.init(tmp_path / "ws") as ws:
        with pytest.raises(ConfigError, match="dataset names"):
            ws.register(make_blobs(n=5), dataset="../escape")
        ws.register(make_blobs(n=30), dataset="d")
        with pytest.raises(ConfigError, match="model names"):
            ws.train(name="a b", dataset="d")


def test_forgotten_features_are_purged_from_the_workspace(tmp_path: Path) -> None:
    data = make_blobs(n=40)
    with Workspace.init(tmp_path / "ws") as ws:
        ws.register(data, dataset="d")
        model = ws.train(
            name="m",
            dataset="d",
            config=SISAConfig(shards=2, train=TrainConfig(epochs=2, batch_size=8)),
        )
        model.forget(sample_ids=["s3"])
        table = ws.provenance.samples(dataset="d", status=None)
        row = int(np.flatnonzero(table.sample_ids == "s3")[0])
        stored = ws.features.read("d", table.chunks[[row]], table.rows[[row]])
        assert not stored.any()
        other = int(np.flatnonzero(table.sample_ids == "s4")[0])
        kept = ws.features.read("d", table.chunks[[other]], table.rows[[other]])
        np.testing.assert_array_equal(kept[0], data.features[4])


def test_reopened_model_continues_exactly(tmp_path: Path) -> None:
    """A forget in a fresh process-like reopen equals one in the original session."""
    data = make_blobs(n=60)
    config = SISAConfig(shards=2, slices=2, train=TrainConfig(epochs=2, batch_size=8))
    with Workspace.init(tmp_path / "a") as ws:
        ws.register(data, dataset="d")
        ws.train(name="m", dataset="d", config=config)
    with Workspace.open(tmp_path / "a") as ws:
        ws.forget(model="m", sample_ids=["s1"])
        reopened = ws.provenance.active_version("m")
    with Workspace.init(tmp_path / "b") as ws:
        ws.register(data.without(["s1"]), dataset="d")
        ws.train(name="m", dataset="d", config=config)
        fresh = ws.provenance.active_version("m")
    assert reopened is not None and fresh is not None
    assert reopened.components == fresh.components


def test_models_holding_deleted_lists_the_other_models_that_still_hold_them(
    tmp_path: Path,
) -> None:
    with Workspace.init(tmp_path / "ws") as ws:
        ws.register(make_blobs(n=40), dataset="d")
        config = SISAConfig(
            shards=2, model_options={"hidden": (4,)}, train=TrainConfig(epochs=1, batch_size=8)
        )
        for name in ("a", "b"):
            ws.train(name=name, dataset="d", config=config)
        assert ws.models_holding_deleted(dataset="d") == {}
        ws.forget(model="a", sample_ids=["s3"])
        assert ws.models_holding_deleted(dataset="d") == {"b": {"s3"}}
        assert ws.models_holding_deleted(dataset="d", exclude="b") == {}
        with pytest.raises(UnknownNameError, match="nope"):
            ws.models_holding_deleted(dataset="nope")
