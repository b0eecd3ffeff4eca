"""Training state survives pack -> store -> unpack well enough to resume bit-for-bit."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import fsspec
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from obliviate.errors import StorageError
from obliviate.storage import (
    RNG_KEY,
    CheckpointStore,
    pack_training_state,
    unpack_training_state,
)

Batches = list[tuple[torch.Tensor, torch.Tensor]]
Parts = tuple[nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]


def _decay(step: int) -> float:
    return 0.9**step


def _sgd(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3
    )


def _adam(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.8, 0.99))


def _build(make_optimizer: Callable[[nn.Module], torch.optim.Optimizer]) -> Parts:
    model = nn.Sequential(
        nn.Linear(6, 16),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Linear(16, 16),
        nn.GroupNorm(4, 16),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(16, 3),
    )
    optimizer = make_optimizer(model)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.95**step)
    return model, optimizer, scheduler


def _batches(count: int) -> Batches:
    generator = torch.Generator().manual_seed(1234)
    return [
        (torch.randn(8, 6, generator=generator), torch.randint(0, 3, (8,), generator=generator))
        for _ in range(count)
    ]


def _train(parts: Parts, batches: Batches) -> None:
    model, optimizer, scheduler = parts
    model.train()
    for features, labels in batches:
        optimizer.zero_grad()
        F.cross_entropy(model(features), labels).backward()
        optimizer.step()
        scheduler.step()


def _assert_same_parameters(left: nn.Module, right: nn.Module) -> None:
    left_state, right_state = left.state_dict(), right.state_dict()
    assert list(left_state) == list(right_state)
    for name in left_state:
        assert torch.equal(left_state[name], right_state[name]), name


@pytest.fixture
def store() -> Iterator[CheckpointStore]:
    name = f"obliviate-resume-{uuid.uuid4().hex}"
    yield CheckpointStore(f"memory://{name}")
    fs = fsspec.filesystem("memory")
    if fs.exists(f"/{name}"):
        fs.rm(f"/{name}", recursive=True)


@pytest.mark.parametrize("make_optimizer", [_sgd, _adam], ids=["sgd_momentum", "adam"])
def test_resume_is_bitwise_equal_to_an_uninterrupted_run(
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer], store: CheckpointStore
) -> None:
    first, second = 5, 7
    batches = _batches(first + second)

    torch.manual_seed(0)
    reference = _build(make_optimizer)
    _train(reference, batches)

    torch.manual_seed(0)
    interrupted = _build(make_optimizer)
    _train(interrupted, batches[:first])
    tensors, meta = pack_training_state(
        model=interrupted[0],
        optimizer=interrupted[1],
        scheduler=interrupted[2],
        rng_state=torch.get_rng_state(),
        extra={"step": first},
    )
    ref = store.put(tensors=tensors, meta=meta)
    del interrupted, tensors, meta

    torch.manual_seed(999)  # fresh objects start from other weights and another RNG position
    resumed = _build(make_optimizer)
    checkpoint = store.get(ref.checkpoint_id)
    rng = unpack_training_state(
        checkpoint.tensors,
        checkpoint.meta,
        model=resumed[0],
        optimizer=resumed[1],
        scheduler=resumed[2],
    )
    assert rng is not None
    assert checkpoint.meta["extra"] == {"step": first}
    torch.set_rng_state(rng)
    _train(resumed, batches[first:])

    _assert_same_parameters(reference[0], resumed[0])
    assert resumed[2].get_last_lr() == reference[2].get_last_lr()
    reference_state = reference[1].state_dict()
    resumed_state = resumed[1].state_dict()
    assert resumed_state["param_groups"] == reference_state["param_groups"]
    for index, entry in reference_state["state"].items():
        for key, value in entry.items():
            assert torch.equal(resumed_state["state"][index][key], value), (index, key)


def test_resume_without_the_rng_state_diverges(store: CheckpointStore) -> None:
    """Guards the test above: it would pass vacuously if dropout drew no random numbers."""
    batches = _batches(6)
    torch.manual_seed(0)
    reference = _build(_sgd)
    _train(reference, batches)

    torch.manual_seed(0)
    interrupted = _build(_sgd)
    _train(interrupted, batches[:3])
    tensors, meta = pack_training_state(
        model=interrupted[0], optimizer=interrupted[1], scheduler=interrupted[2], rng_state=None
    )
    torch.manual_seed(999)
    resumed = _build(_sgd)
    assert (
        unpack_training_state(
            tensors, meta, model=resumed[0], optimizer=resumed[1], scheduler=resumed[2]
        )
        is None
    )
    _train(resumed, batches[3:])
    assert not torch.equal(
        reference[0].state_dict()["7.weight"], resumed[0].state_dict()["7.weight"]
    )


def test_layout_of_packed_tensors_and_meta() -> None:
    model, optimizer, scheduler = _build(_adam)
    _train((model, optimizer, scheduler), _batches(2))
    model.register_buffer("counter", torch.tensor([3], dtype=torch.int64))
    tensors, meta = pack_training_state(
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        rng_state=torch.get_rng_state(),
        extra={"epoch": 1},
    )
    assert "model/0.weight" in tensors
    assert tensors["model/counter"].dtype == torch.int64
    assert tensors["optimizer/state/0/exp_avg"].shape == (16, 6)
    step = tensors["optimizer/state/0/step"]
    assert step.dim() == 0 and step.dtype == torch.float32
    assert torch.equal(tensors[RNG_KEY], torch.get_rng_state())
    assert meta["optimizer"]["param_groups"][0]["betas"] == [0.8, 0.99]
    assert meta["scheduler"]["lr_lambdas"] == [None]
    assert meta["extra"] == {"epoch": 1}
    # Packed tensors are copies: training further must not change them.
    before = tensors["model/0.weight"].clone()
    _train((model, optimizer, scheduler), _batches(1))
    assert torch.equal(tensors["model/0.weight"], before)


def test_unpack_restores_tuples_and_does_not_alias_the_checkpoint() -> None:
    torch.manual_seed(0)
    model, optimizer, scheduler = _build(_adam)
    _train((model, optimizer, scheduler), _batches(2))
    tensors, meta = pack_training_state(
        model=model, optimizer=optimizer, scheduler=scheduler, rng_state=None
    )
    snapshot = {k: v.clone() for k, v in tensors.items()}
    fresh = _build(_adam)
    unpack_training_state(tensors, meta, model=fresh[0], optimizer=fresh[1], scheduler=fresh[2])
    assert fresh[1].state_dict()["param_groups"][0]["betas"] == (0.8, 0.99)
    _train(fresh, _batches(2))
    for key, value in snapshot.items():
        assert torch.equal(tensors[key], value), key


def test_plateau_scheduler_with_infinity_round_trips(store: CheckpointStore) -> None:
    model = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=0)
    tensors, meta = pack_training_state(
        model=model, optimizer=optimizer, scheduler=plateau, rng_state=None
    )
    checkpoint = store.get(store.put(tensors=tensors, meta=meta).checkpoint_id)
    fresh_model = nn.Linear(2, 2)
    fresh_optimizer = torch.optim.SGD(fresh_model.parameters(), lr=0.5)
    fresh = torch.optim.lr_scheduler.ReduceLROnPlateau(fresh_optimizer, patience=3)
    unpack_training_state(
        checkpoint.tensors,
        checkpoint.meta,
        model=fresh_model,
        optimizer=fresh_optimizer,
        scheduler=fresh,
    )
    assert fresh.state_dict() == plateau.state_dict()
    assert fresh.best == float("inf")


class _Warmup:
    """A callable lr lambda with state; PyTorch saves its __dict__, which holds a function."""

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.after = _decay

    def __call__(self, step: int) -> float:
        return (step + 1) / self.steps if step < self.steps else self.after(step - self.steps)


def test_callables_in_scheduler_state_are_dropped_not_pickled() -> None:
    model = nn.Linear(2, 2)

    def groups() -> list[dict[str, Any]]:
        return [{"params": [model.weight]}, {"params": [model.bias]}]

    optimizer = torch.optim.SGD(groups(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, [_Warmup(3), _decay])
    for _ in range(2):
        optimizer.step()
        scheduler.step()
    tensors, meta = pack_training_state(
        model=model, optimizer=optimizer, scheduler=scheduler, rng_state=None
    )
    assert meta["scheduler"]["lr_lambdas"] == [{"steps": 3}, None]
    fresh_optimizer = torch.optim.SGD(groups(), lr=0.1)
    warmup = _Warmup(10)
    fresh = torch.optim.lr_scheduler.LambdaLR(fresh_optimizer, [warmup, _decay])
    unpack_training_state(tensors, meta, model=model, optimizer=fresh_optimizer, scheduler=fresh)
    assert warmup.steps == 3
    assert warmup.after is _decay
    assert fresh.last_epoch == 2


def test_model_only_and_mismatches() -> None:
    model = nn.Linear(3, 2)
    tensors, meta = pack_training_state(model=model, optimizer=None, scheduler=None, rng_state=None)
    assert set(tensors) == {"model/weight", "model/bias"}
    other = nn.Linear(3, 2)
    unpack_training_state(tensors, meta, model=other)
    assert torch.equal(other.weight, model.weight)
    with pytest.raises(StorageError, match="does not fit this model"):
        unpack_training_state(tensors, meta, model=nn.Linear(4, 2))
    with pytest.raises(StorageError, match="no optimizer state"):
        unpack_training_state(
            tensors, meta, model=other, optimizer=torch.optim.SGD(other.parameters(), lr=0.1)
        )
    with pytest.raises(StorageError, match="training-state"):
        unpack_training_state(tensors, {"kind": "checkpoint"}, model=other)


def test_unstorable_values_are_refused() -> None:
    model = nn.Linear(2, 2)
    with pytest.raises(StorageError, match="rng_state"):
        pack_training_state(model=model, optimizer=None, scheduler=None, rng_state=torch.zeros(3))
    with pytest.raises(StorageError, match="NaN"):
        pack_training_state(
            model=model,
            optimizer=None,
            scheduler=None,
            rng_state=None,
            extra={"loss": float("nan")},
        )
