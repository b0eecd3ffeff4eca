"""The S3T strategy: prefix sharing, cut-back deletion, budget, policies, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from obliviate.data.sample_set import SampleSet
from obliviate.errors import ConfigError, DataError, NotFittedError, UnknownSampleError
from obliviate.models.backbone import build_backbone_mlp
from obliviate.strategies.exact.plan import Plan
from obliviate.strategies.exact.s3t import NonDeletableError, S3TConfig, cut
from obliviate.strategies.exact.s3t.stages import StageModel, stage_layout, train_stage
from obliviate.training import TrainConfig
from tests.unit.strategies.s3t._helpers import OPTIONS, config, data, fit, workspace


def _slice_of(ws_root: Path, ws_prov: object, sample_id: str) -> tuple[int, int]:
    plan = Plan.load(ws_root / "models" / "m")
    table = ws_prov.samples(dataset="d", status=None)  # type: ignore[attr-defined]
    pk = table.pk[list(table.sample_ids).index(sample_id)]
    pos = plan.lookup(np.asarray([pk]))[0]
    return int(plan.shard[pos]), int(plan.slice[pos])


def _stage_checkpoints(ws: object, component: str) -> list[object]:
    return ws.provenance.checkpoints(model="m", component=component)  # type: ignore[attr-defined]


def test_stage_layout_goes_top_down_and_only_stage_adapters_train() -> None:
    module = build_backbone_mlp(input_shape=(6,), num_classes=3, **OPTIONS)
    layout = stage_layout(
        module, slices=2, layers=None, target_modules=None, head=None, layers_per_stage=None
    )
    assert layout.head == "head"
    assert layout.stages == (
        ("blocks.3.fc1", "blocks.3.fc2", "blocks.2.fc1", "blocks.2.fc2"),
        ("blocks.1.fc1", "blocks.1.fc2", "blocks.0.fc1", "blocks.0.fc2"),
    )
    only_fc1 = stage_layout(
        module, slices=4, layers=None, target_modules=("fc1",), head=None, layers_per_stage=1
    )
    assert only_fc1.stages[0] == ("blocks.3.fc1",)
    with pytest.raises(ConfigError, match="4 adaptable layers"):
        stage_layout(
            module, slices=5, layers=None, target_modules=None, head=None, layers_per_stage=None
        )
    with pytest.raises(ConfigError, match="no submodule"):
        stage_layout(
            module, slices=2, layers="nope", target_modules=None, head=None, layers_per_stage=None
        )

    frozen = {k: v.clone() for k, v in module.state_dict().items()}
    x = torch.randn(8, 6)
    before = module(x).detach()
    model = StageModel(module, layout, rank=2, alpha=4.0, dropout=0.0, rslora=False)
    model.load(None)
    assert torch.equal(model.logits(x), before)  # zero adapters add exactly nothing
    state, _ = train_stage(
        model,
        stage=0,
        parent=None,
        features=x,
        labels=torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]),
        order_keys=np.arange(8, dtype=np.uint64),
        train=TrainConfig(epochs=1, batch_size=4),
        init_seed=1,
        rng_seed=2,
        order_seed=3,
    )
    assert all(".lora_" in k or k.startswith("head.") for k in state)
    assert not any("blocks.1" in k or "blocks.0" in k for k in state)
    after = {k.replace(".base_layer", ""): v for k, v in module.state_dict().items()}
    for key, value in frozen.items():
        if not key.startswith("head."):
            assert torch.equal(after[key], value), key


def test_fit_trains_each_distinct_prefix_once_and_records_pretraining_lineage(
    tmp_path: Path,
) -> None:
    ws, bb = workspace(tmp_path, data())
    model = fit(ws, config(bb, slices=3, sequences=4, selection="cyclic"))
    assert len(model.trie) < model.trie.naive_trainings()
    for shard in range(2):
        assert len(_stage_checkpoints(ws, f"shard-{shard}")) == len(model.trie)
    active = ws.provenance.active_version("m")
    assert active is not None and all(active.components.values())
    influence = set(ws.provenance.influence_sample_ids(model="m", number=active.number))
    assert {f"p{i}" for i in range(60)} <= influence  # pretraining data in every lineage
    budget = model.budget()
    assert budget.served_fraction == 1.0 and budget.shards_exhausted == 0
    assert budget.worst_case_remaining == 2 * 3  # 3 distinct leaders per shard
    prediction = model.predict(data().features)
    assert not prediction.degraded and prediction.components_used == 2
    assert (prediction.labels == data().labels).mean() > 0.8
    reopened = ws.model("m")
    np.testing.assert_array_equal(
        reopened.predict(data().features).probabilities, prediction.probabilities
    )
    with pytest.raises(ConfigError, match="already fitted"):
        model.fit()
    ws.close()


def test_forget_cuts_sequences_back_without_training(tmp_path: Path) -> None:
    ws, bb = workspace(tmp_path, data())
    model = fit(ws, config(bb, slices=3, sequences=3))
    before = {s: len(_stage_checkpoints(ws, f"shard-{s}")) for s in range(2)}
    shard, slice_ = _slice_of(ws.root, ws.provenance, "s4")
    result = model.forget(sample_ids=["s4"])
    assert {s: len(_stage_checkpoints(ws, f"shard-{s}")) for s in range(2)} == before
    lengths = ws.provenance.active_version("m").details["shards"][f"shard-{shard}"]["lengths"]
    assert lengths == cut([3, 3, 3], model.sequences, {slice_})
    assert result.affected_components == (f"shard-{shard}",)
    assert result.earliest_slices == {f"shard-{shard}": max(lengths)}
    assert result.version == result.rolled_back_version and result.samples_retrained == 0
    assert result.forgotten_sample_ids == ("s4",)
    assert result.evidence["budget_worst_case_remaining"] == 5.0
    assert ws.verify(model="m").ok
    assert model.predict(data().features).degraded
    again = model.forget(sample_ids=["s4"])
    assert again.noop and again.already_deleted_ids == ("s4",)
    ws.close()


def test_policy_never_excludes_an_exhausted_shard(tmp_path: Path) -> None:
    ws, bb = workspace(tmp_path, data())
    model = fit(ws, config(bb, shards=2, slices=2, sequences=2, retrain_when="never"))
    table = ws.provenance.samples(dataset="d")
    plan = Plan.load(ws.root / "models" / "m")
    pos = plan.lookup(table.pk)
    victims = [
        str(table.sample_ids[np.flatnonzero((plan.shard[pos] == 0) & (plan.slice[pos] == s))[0]])
        for s in (0, 1)
    ]
    result = model.forget(sample_ids=victims)
    assert result.version == result.rolled_back_version and result.pending is None
    active = ws.provenance.active_version("m")
    assert active.components["shard-0"] is None
    prediction = model.predict(data().features)
    assert prediction.components_used == 1 and prediction.degraded
    assert model.budget().shards_exhausted == 1
    ws.close()


@pytest.mark.parametrize("background", [False, True])
def test_policy_exhausted_retrains_the_shard(tmp_path: Path, background: bool) -> None:
    ws, bb = workspace(tmp_path, data())
    model = fit(ws, config(bb, retrain_when="exhausted"))
    table = ws.provenance.samples(dataset="d")
    plan = Plan.load(ws.root / "models" / "m")
    pos = plan.lookup(table.pk)
    victims = [
        str(table.sample_ids[np.flatnonzero((plan.shard[pos] == 1) & (plan.slice[pos] == s))[0]])
        for s in (0, 1)
    ]
    result = model.forget(sample_ids=victims, background=background)
    assert (result.pending is not None) == background
    done = result.wait(timeout=120)
    assert done.version is not None and done.version > done.rolled_back_version
    assert done.samples_retrained > 0
    assert model.budget().served_fraction == 1.0
    rolled = ws.provenance.version(model="m", number=done.rolled_back_version)
    assert rolled.components["shard-1"] is None
    assert ws.verify(model="m").ok
    assert ws.provenance.deletion(done.deletion_id).status == "completed"
    ws.close()


def test_policy_below_floor_retrains_a_weak_shard(tmp_path: Path) -> None:
    ws, bb = workspace(tmp_path, data())
    val = data(30)
    # Validation labels the model cannot match: every shard scores below the floor.
    wrong = SampleSet.from_arrays(
        features=val.features,
        labels=(val.labels + 1) % 3,
        sample_ids=[f"v{i}" for i in range(30)],
        num_classes=3,
        name="val",
    )
    ws.register(wrong, dataset="val", deletable=False)
    cfg = config(bb, retrain_when="below_floor", accuracy_floor=0.5, validation_dataset="val")
    model = fit(ws, cfg)
    result = model.forget(sample_ids=["s3"])
    assert result.samples_retrained > 0
    assert result.version is not None and result.version > result.rolled_back_version
    with pytest.raises(NonDeletableError, match="val"):
        model.forget(sample_ids=["v1"])
    ws.close()


def test_non_deletable_samples_are_refused_and_nothing_changes(tmp_path: Path) -> None:
    ws, bb = workspace(tmp_path, data())
    model = fit(ws, config(bb))
    version = ws.provenance.active_version("m").number
    with pytest.raises(NonDeletableError, match="public"):
        model.forget(sample_ids=["p3"])
    with pytest.raises(UnknownSampleError, match="nothing was deleted"):
        model.forget(sample_ids=["nope"])
    with pytest.raises(DataError):
        model.forget()
    assert ws.provenance.active_version("m").number == version
    assert ws.provenance.dataset("public").num_deleted == 0
    assert ws.provenance.dataset("d").num_deleted == 0
    ws.close()


def test_bad_datasets_and_configs_are_refused(tmp_path: Path) -> None:
    ws, bb = workspace(tmp_path, data())
    ws.register(
        data(20).__class__.from_arrays(
            features=data(20).features,
            labels=data(20).labels,
            sample_ids=[f"q{i}" for i in range(20)],
            num_classes=3,
            name="q",
        ),
        dataset="q",
    )
    with pytest.raises(ConfigError, match="deletable"):
        fit(ws, config(bb, pretraining_dataset="q"), name="a")
    model = ws.create(name="b", dataset="d", strategy="s3t", config=config(bb))
    with pytest.raises(NotFittedError):
        model.predict(data().features)
    with pytest.raises(ConfigError, match="slices"):
        S3TConfig(slices=0)
    with pytest.raises(ConfigError) as info:
        S3TConfig(
            sequences=9,
            selection="matching",
            slices=3,
            retrain_when="sometimes",
            rank=0,
            deletion_priors=(1.0,),
        )
    message = str(info.value)
    for field in ("sequences", "retrain_when", "rank", "deletion_priors"):
        assert field in message
    with pytest.raises(ConfigError, match="pretraining_dataset"):
        S3TConfig(backbone_checkpoint="a" * 64)
    with pytest.raises(ConfigError, match="below_floor"):
        S3TConfig(retrain_when="below_floor")
    cfg = config(bb, deletion_priors=(0.5, 0.5), selection="matching")
    assert S3TConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="s3t_config"):
        S3TConfig.from_dict({**cfg.to_dict(), "kind": "sisa_config"})
    ws.close()
