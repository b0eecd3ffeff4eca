"""Approximate forgetting of a workspace model: labelled, recorded, and undone by exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from obliviate import Guarantee, SISAConfig, TrainConfig, Workspace
from obliviate.errors import ConfigError, UnknownNameError, UnknownSampleError
from obliviate.testing import make_blobs

FAST = TrainConfig(epochs=3, batch_size=8, lr=0.05, momentum=0.9)


def _workspace(root: Path, *, shards: int = 3, slices: int = 2) -> Workspace:
    ws = Workspace.init(root)
    ws.register(make_blobs(n=90, subjects=30), dataset="d")
    config = SISAConfig(
        shards=shards,
        slices=slices,
        model="mlp",
        model_options={"hidden": (8,)},
        train=FAST,
        aggregation="mean_prob",
    )
    ws.train(name="m", dataset="d", config=config)
    return ws


def test_approximate_forget_updates_only_the_affected_shards(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    before = ws.provenance.active_version("m")
    assert before is not None
    result = ws.forget(model="m", sample_ids=["s4"], method="finetune")
    assert result.guarantee is Guarantee.APPROXIMATE
    assert result.method == "finetune" and not result.noop
    after = ws.provenance.active_version("m")
    assert after is not None and after.kind == "approximate"
    assert after.details["method"] == "finetune"
    changed = {c for c in after.components if after.components[c] != before.components[c]}
    assert changed == set(result.affected_components) and len(changed) == 1
    # The update reduced the sample's influence but did not remove it: verify says so.
    report = ws.verify(model="m")
    assert not report.ok and report.deleted_seen == ["s4"]
    # The sample is deleted in the registry and its features are gone from the workspace.
    deleted = ws.provenance.samples(dataset="d", status="deleted")
    assert list(deleted.sample_ids) == ["s4"]
    ws.close()


def test_a_later_exact_forget_removes_approximately_forgotten_samples(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    ws.forget(model="m", sample_ids=["s4"], method="gradient_ascent")
    exact = ws.forget(model="m", sample_ids=["s9"])
    assert exact.guarantee is Guarantee.EXACT
    assert set(exact.forgotten_sample_ids) == {"s4", "s9"}
    assert ws.verify(model="m").ok
    ws.close()


def test_approximate_forget_by_subject_and_prediction_still_works(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    result = ws.forget(model="m", subject_ids=["u3"], method="random_label")
    assert set(result.forgotten_sample_ids) == {"s3", "s33", "s63"}
    prediction = ws.model("m").predict(make_blobs(n=90).features[:5])
    assert prediction.version == result.version
    ws.close()


def test_bad_approximate_requests_change_nothing(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    before = ws.provenance.active_version("m")
    with pytest.raises(UnknownNameError, match="no_such_method"):
        ws.forget(model="m", sample_ids=["s4"], method="no_such_method")
    with pytest.raises(UnknownSampleError, match="nope"):
        ws.forget(model="m", sample_ids=["nope"], method="finetune")
    after = ws.provenance.active_version("m")
    assert after is not None and before is not None and after.number == before.number
    assert len(ws.provenance.samples(dataset="d", status="deleted").sample_ids) == 0
    ws.close()


def test_strategies_without_an_approximate_path_say_so(tmp_path: Path) -> None:
    from obliviate.strategies.base import Strategy

    class Dummy(Strategy):
        name = "dummy"
        guarantee = Guarantee.EXACT
        config_class = SISAConfig

        def fit(self, *, sample_ids=None):  # type: ignore[no-untyped-def]
            raise NotImplementedError

        def _forget(self, **kw):  # type: ignore[no-untyped-def]
            raise NotImplementedError

        def predict(self, features, *, version=None):  # type: ignore[no-untyped-def]
            raise NotImplementedError

    ws = _workspace(tmp_path)
    dummy = Dummy(SISAConfig(), context=ws.model("m").context)
    with pytest.raises(ConfigError, match="does not support approximate"):
        dummy.forget(sample_ids=["s1"], method="finetune")
    ws.close()


def test_approximate_forget_result_differs_from_the_original_weights(tmp_path: Path) -> None:
    ws = _workspace(tmp_path, shards=1, slices=1)
    model = ws.model("m")
    probe = make_blobs(n=90).features
    before = model.predict(probe).probabilities
    ws.forget(model="m", sample_ids=[f"s{i}" for i in range(10)], method="gradient_ascent")
    after = ws.model("m").predict(probe).probabilities
    assert not np.array_equal(before, after)
    assert torch.isfinite(torch.from_numpy(after)).all()
    ws.close()
