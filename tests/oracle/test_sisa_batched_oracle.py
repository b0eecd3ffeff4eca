"""Oracle: SISA with the batched trainer forgets exactly (forget == fit without the ids).

Fit trains every shard in its fixed slot of a batched group; forget retrains the affected
shards in the same slots with the unaffected ones idle. Slot numerics depend only on the
slot's own data and on the group size, so the retrained shards equal a fresh fit without
the forgotten samples, bit for bit (compared by checkpoint ids, which hash every tensor and
the lineage).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from obliviate import SampleSet, SISAConfig, TrainConfig, Workspace
from obliviate.testing import make_blobs

FAST = TrainConfig(epochs=4, batch_size=8, lr=0.05, momentum=0.9, grad_clip=2.0)


def _data(model: str) -> SampleSet:
    if model == "mlp":
        return make_blobs(n=120)
    flat = make_blobs(n=120, features=64)
    return SampleSet.from_arrays(
        features=flat.features.reshape(-1, 1, 8, 8),
        labels=flat.labels,
        sample_ids=flat.sample_ids,
        num_classes=flat.num_classes,
    )


@pytest.mark.parametrize(
    ("model", "options", "slots", "forget"),
    [
        ("mlp", {"hidden": (16,)}, None, ["s7"]),
        ("mlp", {"hidden": (16,)}, 2, ["s1", "s2", "s50", "s77", "s119"]),
        ("cnn", {"channels": (4,), "hidden": 16}, None, ["s3", "s60"]),
        ("cnn", {"channels": (4,), "hidden": 16}, 2, ["s5", "s6", "s100"]),
    ],
)
def test_batched_forget_equals_batched_fit_without_the_samples(
    tmp_path: Path, model: str, options: dict[str, Any], slots: int | None, forget: list[str]
) -> None:
    config = SISAConfig(
        shards=3,
        slices=3,
        model=model,
        model_options=options,
        train=FAST,
        trainer="batched",
        batch_slots=slots,
    )
    data = _data(model)
    ws = Workspace.init(tmp_path / "a")
    ws.register(data, dataset="d")
    ws.train(name="m", dataset="d", config=config)
    result = ws.model("m").forget(sample_ids=forget)
    assert result.version is not None and not result.noop
    assert ws.verify(model="m").ok
    forgotten = ws.provenance.active_version("m")
    ws.close()
    fresh_ws = Workspace.init(tmp_path / "b")
    fresh_ws.register(data.without(forget), dataset="d")
    fresh_ws.train(name="m", dataset="d", config=config)
    fresh = fresh_ws.provenance.active_version("m")
    fresh_ws.close()
    assert forgotten is not None and fresh is not None
    assert dict(forgotten.components) == dict(fresh.components)


def test_batched_and_sequential_configs_hash_differently() -> None:
    sequential = SISAConfig()
    batched = SISAConfig(trainer="batched")
    assert sequential.config_hash() != batched.config_hash()
    assert "trainer" not in sequential.to_dict()  # old hashes stay valid
    assert SISAConfig.from_dict(batched.to_dict()) == batched
