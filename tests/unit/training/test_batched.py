"""The batched (torch.func) trainer: isolation, slot invariance, agreement, refusals."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
import torch
from torch import nn

from obliviate.errors import ConfigError, TrainingError
from obliviate.models import build_model
from obliviate.training import TrainConfig, make_optimizer, make_scheduler, train_epochs
from obliviate.training.batched import SlotRun, train_batched

SGD = TrainConfig(epochs=3, batch_size=8, lr=0.05, momentum=0.9, grad_clip=1.0, scheduler="cosine")
ADAM = TrainConfig(epochs=3, batch_size=8, optimizer="adam", lr=0.01, weight_decay=1e-3)
SHAPES = {"mlp": (12,), "cnn": (1, 8, 8)}
SIZES = (40, 23, 51, 9)


def _slot(
    index: int, n: int, *, kind: str = "mlp", config: TrainConfig = SGD, shift: float = 0.0
) -> SlotRun:
    torch.manual_seed(1000 + index)
    options = {"hidden": (16,)} if kind == "mlp" else {"channels": (4,), "hidden": 16}
    model = build_model(kind, input_shape=SHAPES[kind], num_classes=3, **options)
    optimizer = make_optimizer(config, model)
    scheduler = make_scheduler(config, optimizer, total_epochs=config.epochs)
    gen = torch.Generator().manual_seed(index)
    features = torch.randn(n, *SHAPES[kind], generator=gen) + shift
    labels = torch.randint(0, 3, (n,), generator=gen)
    keys = (np.arange(n, dtype=np.uint64) * np.uint64(2654435761)) ^ np.uint64(index)
    return SlotRun(
        name=f"shard-{index}",
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        features=features,
        labels=labels,
        order_keys=keys,
        stage_sizes=[n],
        first_stage=0,
        last_stage=0,
        order_seed=index,
    )


def _train(slots: Sequence[SlotRun | None], config: TrainConfig = SGD) -> None:
    train_batched(
        slots=slots,
        config=config,
        stage_epochs=[config.epochs],
        on_stage_end=lambda slot, stage, stats: None,
    )


def _params(run: SlotRun) -> list[torch.Tensor]:
    return [p.detach().clone() for p in run.model.parameters()]


def _equal(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_perturbing_one_shard_leaves_every_other_shard_bitwise_unchanged(kind: str) -> None:
    base = [_slot(i, n, kind=kind) for i, n in enumerate(SIZES)]
    _train(base)
    perturbed = [_slot(i, n, kind=kind, shift=5.0 if i == 2 else 0.0) for i, n in enumerate(SIZES)]
    _train(perturbed)
    for i in (0, 1, 3):
        assert _equal(_params(base[i]), _params(perturbed[i])), f"shard {i} moved"
    assert not _equal(_params(base[2]), _params(perturbed[2]))  # the perturbation mattered


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_a_slot_with_idle_neighbours_equals_the_same_slot_in_a_full_group(kind: str) -> None:
    # The fixed slot layout SISA relies on: forget retrains shard 1 with the others idle.
    full = [_slot(i, n, kind=kind) for i, n in enumerate(SIZES)]
    _train(full)
    alone = [None, _slot(1, SIZES[1], kind=kind), None, None]
    _train(alone)
    assert alone[1] is not None
    assert _equal(_params(full[1]), _params(alone[1]))


def test_mlp_slot_in_a_batch_of_four_equals_a_batch_of_one() -> None:
    # Linear layers under vmap give the same bits whatever the number of models.
    full = [_slot(i, n) for i, n in enumerate(SIZES)]
    _train(full)
    single = [_slot(3, SIZES[3])]
    _train(single)
    assert _equal(_params(full[3]), _params(single[0]))


@pytest.mark.parametrize("config", [SGD, ADAM], ids=["sgd", "adam"])
def test_batched_matches_the_sequential_loop_closely(config: TrainConfig) -> None:
    runs = [_slot(i, n, config=config) for i, n in enumerate(SIZES)]
    _train(runs, config)
    for i, n in enumerate(SIZES):
        ref = _slot(i, n, config=config)
        train_epochs(
            model=ref.model,
            optimizer=ref.optimizer,
            scheduler=ref.scheduler,
            features=ref.features,
            labels=ref.labels,
            order_keys=ref.order_keys,
            config=config,
            seed=ref.order_seed,
            first_epoch=0,
            epochs=config.epochs,
        )
        for a, b in zip(_params(runs[i]), _params(ref), strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
        # Optimiser state is written back in torch.optim's own format.
        got, want = runs[i].optimizer.state_dict(), ref.optimizer.state_dict()
        assert got["state"].keys() == want["state"].keys()
        assert runs[i].scheduler.state_dict()["last_epoch"] == config.epochs


def test_an_empty_shard_does_not_move_and_reports_no_passes() -> None:
    empty = _slot(0, 0)
    before = _params(empty)
    stats = {}
    train_batched(
        slots=[_slot(1, 20), empty],
        config=SGD,
        stage_epochs=[SGD.epochs],
        on_stage_end=lambda slot, stage, s: stats.__setitem__(slot, s),
    )
    assert _equal(before, _params(empty))
    assert empty.optimizer.state_dict()["state"] == {}
    assert stats[1].sample_passes == 0 and stats[0].sample_passes == 20 * SGD.epochs


def test_stages_resume_where_each_slot_left_off() -> None:
    # Slot 0 runs stages 0-1 while slot 1 runs only stage 1 (a forget from different slices).
    run = _slot(0, 30)
    two_stage = SlotRun(**{**run.__dict__, "stage_sizes": [15, 30], "last_stage": 1})
    ends: list[tuple[int, int]] = []
    other = _slot(1, 30)
    late = SlotRun(**{**other.__dict__, "stage_sizes": [10, 30], "first_stage": 1, "last_stage": 1})
    train_batched(
        slots=[two_stage, late],
        config=SGD,
        stage_epochs=[2, 2],
        on_stage_end=lambda slot, stage, s: ends.append((slot, stage)),
    )
    assert sorted(ends) == [(0, 0), (0, 1), (1, 1)]


def test_dropout_batchnorm_mismatch_and_empty_are_refused() -> None:
    run = _slot(0, 10)
    with_dropout = SlotRun(
        **{**run.__dict__, "model": nn.Sequential(nn.Linear(12, 3), nn.Dropout(0.5))}
    )
    with pytest.raises(ConfigError, match="dropout"):
        _train([with_dropout])
    with_bn = SlotRun(
        **{**run.__dict__, "model": nn.Sequential(nn.Linear(12, 3), nn.BatchNorm1d(3))}
    )
    with pytest.raises(ConfigError, match="BatchNorm"):
        _train([with_bn])
    other = SlotRun(**{**run.__dict__, "model": nn.Linear(12, 3)})
    with pytest.raises(ConfigError, match="architecture"):
        _train([run, other])
    with pytest.raises(ConfigError, match="at least one slot"):
        _train([None, None])


def test_a_diverging_slot_raises_a_training_error_naming_it() -> None:
    config = TrainConfig(epochs=3, batch_size=8, lr=1e30, momentum=0.0)
    runs = [_slot(0, 20, config=config), _slot(1, 20, config=config)]
    with pytest.raises(TrainingError, match="shard-"):
        _train(runs, config)
