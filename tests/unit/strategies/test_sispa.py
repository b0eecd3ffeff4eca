"""SISPA behaviour beyond the oracle: refits, rollback, lineage, cache hygiene, config."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from obliviate import TrainConfig, Workspace
from obliviate.errors import ConfigError, UnknownNameError
from obliviate.strategies.exact.aggregator import RidgeAggregator, build_aggregator
from obliviate.strategies.exact.sispa import AGGREGATOR, SISPA
from obliviate.strategies.exact.sispa_config import SISPAConfig
from obliviate.testing import make_blobs

FAST = TrainConfig(epochs=2, batch_size=8, lr=0.05)
AGG = TrainConfig(epochs=10, batch_size=16, optimizer="adam", lr=0.01)


def _config(**kw: object) -> SISPAConfig:
    base: dict[str, object] = {
        "shards": 3,
        "slices": 2,
        "model_options": {"hidden": (8,)},
        "train": FAST,
        "aggregator_options": {"hidden": 8},
        "aggregator_train": AGG,
    }
    base.update(kw)
    return SISPAConfig(**base)  # type: ignore[arg-type]


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = Workspace.init(tmp_path / "ws")
    workspace.register(make_blobs(n=60), dataset="d")
    workspace.register(make_blobs(n=20, seed=3, id_prefix="h"), dataset="held", deletable=False)
    return workspace


def _train(ws: Workspace, **kw: object) -> SISPA:
    model = ws.train(name="m", dataset="d", strategy="sispa", config=_config(**kw))
    assert isinstance(model, SISPA)
    return model


def _active(ws: Workspace) -> dict[str, str | None]:
    version = ws.provenance.active_version("m")
    assert version is not None
    return dict(version.components)


def test_fit_serves_shards_and_an_aggregator_that_saw_every_sample(ws: Workspace) -> None:
    model = _train(ws)
    components = _active(ws)
    assert sorted(components) == [AGGREGATOR, "shard-0", "shard-1", "shard-2"]
    record = ws.provenance.checkpoint(str(components[AGGREGATOR]))
    assert record.num_samples_seen == 60 and record.parent_id is None
    prediction = model.predict(make_blobs(n=60).features)
    assert not prediction.degraded and prediction.components_used == 4
    assert (prediction.labels == make_blobs(n=60).labels).mean() > 0.8


def test_forget_refits_the_aggregator_and_reuses_unaffected_embeddings(ws: Workspace) -> None:
    model = _train(ws)
    before = _active(ws)
    result = model.forget(sample_ids=["s4"])
    after = _active(ws)
    assert len(result.affected_components) == 1
    assert after[AGGREGATOR] != before[AGGREGATOR]
    changed = {k for k in after if after[k] != before[k]}
    assert changed == {AGGREGATOR, *result.affected_components}
    timings = model.last_timings
    assert timings is not None
    assert timings.embeddings_computed == 59 and timings.embeddings_reused == 2 * 59
    assert ws.verify(model="m").ok


def test_rolled_back_version_excludes_the_aggregator_and_falls_back(ws: Workspace) -> None:
    model = _train(ws)
    result = model.forget(sample_ids=["s10"])
    rolled = ws.provenance.version(model="m", number=int(result.rolled_back_version or 0))
    assert rolled.components[AGGREGATOR] is None
    prediction = model.predict(make_blobs(n=60).features[:5], version=rolled.number)
    assert prediction.degraded and prediction.components_total == 4
    assert ws.provenance.verify_version(model="m", number=rolled.number).ok


@pytest.mark.parametrize("mode", ["train", "heldout"])
def test_a_version_with_the_old_aggregator_fails_verification(ws: Workspace, mode: str) -> None:
    # In held-out mode the aggregator's own samples are never deleted: only its recorded
    # inputs (the shard checkpoints it was fitted on) tie it to the deleted sample.
    heldout = {"aggregator_data": "heldout", "heldout_dataset": "held"} if mode == "heldout" else {}
    model = _train(ws, **heldout)
    stale = _active(ws)[AGGREGATOR]
    model.forget(sample_ids=["s1"])
    mixed = {**_active(ws), AGGREGATOR: stale}
    version = ws.provenance.create_version(
        model="m", components=mixed, kind="manual", details=None, activate=False
    )
    report = ws.provenance.verify_version(model="m", number=version.number)
    assert not report.ok and AGGREGATOR in report.components_with_deleted


def test_deleted_samples_leave_the_embedding_cache(ws: Workspace) -> None:
    model = _train(ws)
    pk = int(ws.provenance.resolve(dataset="d", sample_ids=["s9"]).active_pks[0])
    model.forget(sample_ids=["s9"])
    served = {c for k, c in _active(ws).items() if k != AGGREGATOR}
    files = {p.stem for p in model.cache.root.glob("*.npz")}
    assert files == served
    for checkpoint in files:
        keys = model.cache.keys(checkpoint)
        assert pk not in keys and len(keys) == 59


def test_cached_rows_equal_fresh_embeddings_after_a_forget(ws: Workspace) -> None:
    from obliviate._hashing import id_hash64
    from obliviate.models.embedding import EMBED_BATCH, embed

    model = _train(ws)
    model.forget(sample_ids=["s2", "s30"])
    table = ws.provenance.samples(dataset="d", status="active")
    features = ws.features.read("d", table.chunks, table.rows)
    import torch

    for name, checkpoint in _active(ws).items():
        if name == AGGREGATOR:
            continue
        assert checkpoint is not None
        slots = (id_hash64(table.sample_ids, "0:slot") % np.uint64(EMBED_BATCH)).astype(int)
        shard = model._model_for(checkpoint, name)[0]
        fresh = embed(shard, torch.from_numpy(features), slots=slots)
        rows, computed = model.cache.get(
            checkpoint_id=checkpoint, pks=table.pk[::-1].copy(), compute=lambda p: 1 / 0
        )
        assert computed == 0
        assert np.array_equal(rows, fresh.numpy()[::-1])


def test_heldout_mode_trains_the_aggregator_on_the_heldout_set(ws: Workspace) -> None:
    model = _train(ws, aggregator_data="heldout", heldout_dataset="held")
    record = ws.provenance.checkpoint(str(_active(ws)[AGGREGATOR]))
    assert record.meta["data"] == "held" and record.meta["samples"] == 20
    assert record.num_samples_seen == 80  # its inputs came from shards that saw all 60
    before = _active(ws)[AGGREGATOR]
    model.forget(sample_ids=["s0"])
    assert _active(ws)[AGGREGATOR] != before  # refitted: keeping it would not be exact
    assert ws.verify(model="m").ok


def test_a_deletable_heldout_dataset_is_refused_before_training(ws: Workspace) -> None:
    ws.register(make_blobs(n=10, seed=4, id_prefix="x"), dataset="open")
    with pytest.raises(ConfigError, match="deletable=False"):
        _train(ws, aggregator_data="heldout", heldout_dataset="open")
    assert ws.provenance.active_version("m") is None


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"aggregator": "nope"}, "aggregator must be one of"),
        ({"aggregator_data": "heldout"}, "needs heldout_dataset"),
        ({"heldout_dataset": "held"}, "only used with"),
        ({"aggregator_data": "test"}, "aggregator_data must be one of"),
        ({"aggregator_input": "probs"}, "aggregator_input must be one of"),
        ({"fallback_aggregation": "max"}, "fallback_aggregation"),
        ({"shards": 0}, "shards must be"),
    ],
)
def test_bad_config_names_the_field(kw: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        _config(**kw)


def test_config_round_trips_and_the_model_reopens(ws: Workspace) -> None:
    config = _config(aggregator="linear", aggregator_options={})
    assert SISPAConfig.from_dict(config.to_dict()) == config
    ws.train(name="m", dataset="d", strategy="sispa", config=config)
    reopened = ws.model("m")
    assert isinstance(reopened, SISPA)
    assert reopened.sispa_config.to_dict() == json.loads(json.dumps(config.to_dict()))
    assert reopened.predict(make_blobs(n=4).features).labels.shape == (4,)


def test_aggregator_family_rejects_unknown_names_and_options() -> None:
    with pytest.raises(UnknownNameError):
        build_aggregator("nope", shards=2, embedding_dim=3, num_classes=2, options={})
    with pytest.raises(ConfigError, match="no options"):
        build_aggregator("mlp", shards=2, embedding_dim=3, num_classes=2, options={"depth": 2})


def test_ridge_rejects_a_bad_penalty_and_unknown_options() -> None:
    with pytest.raises(ConfigError, match="l2 must be a number > 0"):
        build_aggregator("ridge", shards=2, embedding_dim=3, num_classes=2, options={"l2": 0})
    with pytest.raises(ConfigError, match="no options"):
        build_aggregator("ridge", shards=2, embedding_dim=3, num_classes=2, options={"lr": 1})


def test_ridge_solves_the_penalised_least_squares_problem() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(200, 6, generator=generator)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long() + (x[:, 2] > 1).long()
    head = build_aggregator("ridge", shards=3, embedding_dim=2, num_classes=3, options={"l2": 0.1})
    assert isinstance(head, RidgeAggregator)
    head.fit_closed_form(x, y)
    # The normal equations hold at the solution: A^T (A w - Y) + l2 * n * w = 0.
    a = torch.cat([x.double(), torch.ones(200, 1, dtype=torch.float64)], dim=1)
    w = torch.cat([head.linear.weight.T, head.linear.bias[None]], dim=0).double()
    target = torch.nn.functional.one_hot(y, 3).double()
    residual = a.T @ (a @ w - target) + 0.1 * 200 * w
    assert residual.abs().max().item() < 1e-3
    assert (head(x).argmax(dim=1) == y).float().mean().item() > 0.8


def test_logits_input_feeds_the_shards_class_scores_to_the_aggregator(ws: Workspace) -> None:
    model = _train(ws, aggregator="ridge", aggregator_input="logits", aggregator_options={})
    timings = model.last_timings
    assert timings is not None
    version = ws.provenance.active_version("m")
    assert version is not None
    shards = {k: v for k, v in version.components.items() if k != AGGREGATOR}
    # Width is shards x classes: one class score per shard and class.
    checkpoint = model.cache.keys(str(shards["shard-0"]))
    assert len(checkpoint) == len(make_blobs(n=60).labels)
    head = model._load_aggregator(str(version.components[AGGREGATOR]), len(shards), 3)
    assert isinstance(head, RidgeAggregator) and head.linear.in_features == len(shards) * 3
    probe = make_blobs(n=60).features[:10]
    got = model.predict(probe).probabilities
    with torch.inference_mode():
        x = torch.from_numpy(probe)
        scores = torch.cat(
            [model._model_for(str(shards[f"shard-{i}"]), f"shard-{i}")[0](x) for i in range(3)],
            dim=1,
        )
        expected = torch.softmax(head(scores), dim=1).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_approximate_forgetting_is_refused_and_changes_nothing(ws: Workspace) -> None:
    model = _train(ws)
    before = ws.provenance.active_version("m")
    with pytest.raises(ConfigError, match="does not support approximate"):
        model.forget(sample_ids=["s1"], method="finetune")
    assert ws.provenance.active_version("m") == before
