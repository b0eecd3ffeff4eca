"""Oracle: forgetting from the online ensemble equals training it without the samples.

Workspace A receives three chunks, then forgets; workspace B receives the same chunks minus
the forgotten samples. Every member's checkpoint id (a hash of weights, optimiser and RNG
state and the lineage of exact ordered ids) and every prediction must be equal.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from obliviate import SampleSet, TrainConfig, Workspace
from obliviate.strategies.exact.ensemble import OnlineEnsemble
from obliviate.strategies.exact.ensemble_config import EnsembleConfig
from obliviate.testing import make_blobs

FAST = TrainConfig(epochs=2, batch_size=8, lr=0.05, momentum=0.9)


def _chunks() -> list[SampleSet]:
    return [make_blobs(n=40, seed=c, id_prefix=f"c{c}-") for c in range(3)]


def _without(chunks: list[SampleSet], gone: list[str]) -> list[SampleSet]:
    return [c.without([i for i in gone if i in set(c.sample_ids.tolist())]) for c in chunks]


def _run(root: Path, chunks: list[SampleSet], config: EnsembleConfig) -> Workspace:
    ws = Workspace.init(root)
    ws.register(chunks[0], dataset="d")
    model = ws.train(name="m", dataset="d", strategy="ensemble", config=config)
    assert isinstance(model, OnlineEnsemble)
    for chunk in chunks[1:]:
        model.add_data(samples=chunk)
    return ws


def _components(ws: Workspace) -> dict[str, str | None]:
    version = ws.provenance.active_version("m")
    assert version is not None
    return dict(version.components)


@pytest.mark.parametrize("replay", [False, True])
@pytest.mark.parametrize(
    "forget", [["c0-3"], ["c1-5", "c2-0"], ["c0-1", "c0-2", "c1-9", "c1-30", "c2-39"]]
)
def test_forget_equals_training_without_the_samples(
    tmp_path: Path, replay: bool, forget: list[str]
) -> None:
    config = EnsembleConfig(
        members=3,
        subset_fraction=0.6,
        replay=replay,
        model_options={"hidden": (12,), "dropout": 0.2},
        train=FAST,
    )
    chunks = _chunks()
    ws_a = _run(tmp_path / "a", chunks, config)
    model = ws_a.model("m")
    before = _components(ws_a)
    result = model.forget(sample_ids=forget)
    assert not result.noop and result.version is not None
    after = _components(ws_a)
    assert set(result.affected_components) == {k for k in after if after[k] != before[k]}
    ws_b = _run(tmp_path / "b", _without(chunks, forget), config)
    assert after == _components(ws_b)
    probe = chunks[0].features[:25]
    np.testing.assert_array_equal(
        model.predict(probe).probabilities, ws_b.model("m").predict(probe).probabilities
    )
    assert ws_a.verify(model="m").ok
    ws_a.close()
    ws_b.close()


def test_background_retrain_and_successive_forgets_equal_training_without_all(
    tmp_path: Path,
) -> None:
    config = EnsembleConfig(
        members=4,
        subset_fraction=0.5,
        model_options={"hidden": (8,)},
        train=TrainConfig(epochs=2, batch_size=8, optimizer="adam", lr=0.01, scheduler="cosine"),
        retrain="background",
    )
    chunks = _chunks()
    ws_a = _run(tmp_path / "a", chunks, config)
    model = ws_a.model("m")
    model.forget(sample_ids=["c0-4"]).wait(timeout=120)
    model.forget(sample_ids=["c2-7", "c1-1"]).wait(timeout=120)
    gone = ["c0-4", "c2-7", "c1-1"]
    ws_b = _run(tmp_path / "b", _without(chunks, gone), config)
    assert _components(ws_a) == _components(ws_b)
    ws_a.close()
    ws_b.close()
