"""Oracle: after deletions, S3T serves exactly what training from scratch would give.

For every shard, the served prefix checkpoint equals the checkpoint that a fit from scratch
on the surviving data trains for the same prefix. Equality is checked on checkpoint ids: an
id is the SHA-256 of every tensor and of the metadata (including the lineage hash of the
exact ordered sample ids), so equal ids mean bitwise equal adapters and heads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from obliviate.strategies.exact.plan import Plan
from obliviate.strategies.exact.s3t import served
from obliviate.strategies.exact.s3t.trie import prefix_key
from tests.unit.strategies.s3t._helpers import config, data, fit, workspace


def _served_prefixes(ws: object, model: object) -> dict[str, tuple[str, str | None]]:
    version = ws.provenance.active_version("m")  # type: ignore[attr-defined]
    out = {}
    for name, state in version.details["shards"].items():
        best, length = served(state["lengths"])
        key = prefix_key(model.sequences[best][:length])  # type: ignore[attr-defined]
        out[name] = (key, version.components[name])
    return out


@pytest.mark.slow
@pytest.mark.parametrize(
    ("shards", "slices", "sequences", "selection", "forget"),
    [
        (2, 2, 2, "cyclic", ["s5"]),
        (2, 3, 4, "cyclic", ["s1", "s40", "s77"]),
        (3, 3, 3, "matching", [f"s{i}" for i in range(0, 96, 17)]),
    ],
)
def test_served_prefixes_equal_training_from_scratch_without_the_samples(
    tmp_path: Path,
    shards: int,
    slices: int,
    sequences: int,
    selection: str,
    forget: list[str],
) -> None:
    samples = data()
    cfg_kw = {"shards": shards, "slices": slices, "sequences": sequences, "selection": selection}
    ws_a, bb_a = workspace(tmp_path / "a", samples)
    model = fit(ws_a, config(bb_a, **cfg_kw))
    for sample_id in forget:  # one request each: cuts accumulate
        model.forget(sample_ids=[sample_id])
    ws_b, bb_b = workspace(tmp_path / "b", samples.without(forget))
    assert bb_a == bb_b  # pretraining is deterministic and independent of deletable data
    scratch = fit(ws_b, config(bb_b, **cfg_kw))
    nodes_b = ws_b.provenance.active_version("m").details["shards"]
    checked = 0
    for name, (key, checkpoint) in _served_prefixes(ws_a, model).items():
        if checkpoint is None:
            continue
        assert nodes_b[name]["nodes"][key] == checkpoint, (name, key)
        a = ws_a.store.get(checkpoint).tensors
        b = ws_b.store.get(nodes_b[name]["nodes"][key]).tensors
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        checked += 1
    assert checked > 0
    # No deleted sample is in the lineage of any active stage.
    report = ws_a.verify(model="m")
    assert report.ok
    active = ws_a.provenance.active_version("m")
    seen = set(ws_a.provenance.influence_sample_ids(model="m", number=active.number))
    assert not seen & set(forget)
    assert scratch.budget().served_fraction == 1.0
    ws_a.close()
    ws_b.close()


def test_a_retrained_shard_equals_the_shard_trained_from_scratch(tmp_path: Path) -> None:
    samples = data()
    ws_a, bb = workspace(tmp_path / "a", samples)
    model = fit(ws_a, config(bb, retrain_when="exhausted"))
    table = ws_a.provenance.samples(dataset="d")
    plan = Plan.load(ws_a.root / "models" / "m")
    pos = plan.lookup(table.pk)
    victims = [
        str(table.sample_ids[np.flatnonzero((plan.shard[pos] == 0) & (plan.slice[pos] == s))[0]])
        for s in (0, 1)
    ]
    result = model.forget(sample_ids=victims).wait(timeout=120)
    assert result.samples_retrained > 0
    ws_b, _ = workspace(tmp_path / "b", samples.without(victims))
    fit(ws_b, config(bb, retrain_when="exhausted"))
    shards_a = ws_a.provenance.active_version("m").details["shards"]
    shards_b = ws_b.provenance.active_version("m").details["shards"]
    for name in shards_a:
        assert shards_a[name]["nodes"] == shards_b[name]["nodes"]
        assert shards_a[name]["lengths"] == shards_b[name]["lengths"]
    probe = samples.features[:30]
    np.testing.assert_array_equal(
        model.predict(probe).probabilities, ws_b.model("m").predict(probe).probabilities
    )
    assert ws_a.verify(model="m").ok
    ws_a.close()
    ws_b.close()
