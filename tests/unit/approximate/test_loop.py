"""MaskedSGD: masked entries stay bitwise unchanged through weight decay and momentum."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.nn import functional

from obliviate.errors import ConfigError, TrainingError
from obliviate.strategies.approximate import LabelledData, MaskedSGD, enforce_mask, masked_sgd
from obliviate.strategies.approximate._loop import _zero_dropped, fused_step_available


def _problem() -> tuple[nn.Module, LabelledData, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    data = LabelledData(features=torch.randn(40, 4), labels=torch.arange(40) % 3)
    generator = torch.Generator().manual_seed(1)
    mask = {
        n: (torch.rand(p.shape, generator=generator) < 0.5).float()
        for n, p in model.named_parameters()
    }
    return model, data, mask


def test_gradient_masking_alone_leaks_through_weight_decay_and_momentum() -> None:
    # The failure SalUn's code had (issue #32): this is why MaskedSGD exists.
    model, data, mask = _problem()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    for _ in range(3):
        optimizer.zero_grad()
        functional.cross_entropy(model(data.features), data.labels).backward()
        for n, p in model.named_parameters():
            assert p.grad is not None
            p.grad.mul_(mask[n])
        optimizer.step()
    leaked = sum(
        int((p.detach() != before[n])[mask[n] == 0].sum()) for n, p in model.named_parameters()
    )
    assert leaked > 0


def test_masked_sgd_holds_masked_entries_bitwise() -> None:
    model, data, mask = _problem()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    passes = masked_sgd(
        model=model,
        data=data,
        epochs=3,
        lr=0.1,
        batch_size=8,
        generator=torch.Generator().manual_seed(0),
        momentum=0.9,
        weight_decay=0.05,
        mask=mask,
    )
    assert passes == 3 * len(data)
    for n, p in model.named_parameters():
        frozen = mask[n] == 0
        assert torch.equal(p.detach()[frozen], before[n][frozen])
        assert bool((p.detach() != before[n])[~frozen].any())


def test_enforce_mask_writes_positive_zeros() -> None:
    model, _, mask = _problem()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(-p.abs() - 1)
    enforce_mask(model, mask)
    for n, p in model.named_parameters():
        zeros = p.detach()[mask[n] == 0]
        assert torch.equal(zeros.view(torch.int32), torch.zeros_like(zeros, dtype=torch.int32))
        assert bool((p.detach()[mask[n] == 1] < 0).all())


def test_options_change_the_objective() -> None:
    model, data, _ = _problem()
    runs = {}
    options = {
        "plain": {},
        "ascent": {"ascent": True},
        "targets": {"targets": lambda x, y: (y + 1) % 3},
        "extra": {"extra_loss": lambda m, e: sum(p.abs().sum() for p in m.parameters())},
        "lr_at": {"lr_at": lambda epoch: 0.0},
    }
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    for key, kw in options.items():
        copy = _problem()[0]
        masked_sgd(
            model=copy,
            data=data,
            epochs=2,
            lr=0.1,
            batch_size=10,
            generator=torch.Generator().manual_seed(0),
            weight_decay=0.0,
            **kw,  # type: ignore[arg-type]
        )
        runs[key] = torch.cat([p.detach().flatten() for p in copy.parameters()])
    assert torch.equal(runs["lr_at"], torch.cat([p.flatten() for p in start.values()]))
    for key in ("ascent", "targets", "extra"):
        assert not torch.equal(runs[key], runs["plain"])


def test_non_finite_loss_raises() -> None:
    model, data, _ = _problem()
    with pytest.raises(TrainingError, match="loss became"):
        masked_sgd(
            model=model,
            data=data,
            epochs=50,
            lr=1e30,
            batch_size=8,
            generator=torch.Generator().manual_seed(0),
            ascent=True,
        )


def test_mask_errors_name_the_parameter() -> None:
    model, data, _ = _problem()
    with pytest.raises(ConfigError, match="'nope'"):
        MaskedSGD(model=model, lr=0.1, mask={"nope": torch.ones(1)})
    with pytest.raises(ConfigError, match="has shape"):
        MaskedSGD(model=model, lr=0.1, mask={"0.weight": torch.ones(3)})


def _step_size(max_grad_norm: float | None, mask: dict[str, torch.Tensor] | None) -> float:
    model, data, _ = _problem()
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    optimiser = MaskedSGD(
        model=model, lr=1.0, momentum=0.0, weight_decay=0.0, mask=mask, max_grad_norm=max_grad_norm
    )
    optimiser.step(functional.cross_entropy(model(data.features * 50), data.labels) * 100)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    return float((after - before).norm())


def test_max_grad_norm_bounds_each_step() -> None:
    # lr 1, no momentum or decay: the step is the gradient, so its norm is the clipped norm.
    assert _step_size(None, None) > 1.0
    assert _step_size(0.25, None) == pytest.approx(0.25, rel=1e-4)


def test_clipping_keeps_masked_entries_bitwise() -> None:
    model, data, mask = _problem()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    masked_sgd(
        model=model,
        data=data,
        epochs=3,
        lr=0.5,
        batch_size=8,
        generator=torch.Generator().manual_seed(0),
        mask=mask,
        ascent=True,
        max_grad_norm=0.1,
    )
    for n, p in model.named_parameters():
        frozen = mask[n] == 0
        assert torch.equal(p.detach()[frozen], before[n][frozen])
        assert not torch.equal(p.detach()[~frozen], before[n][~frozen])


def test_lr_at_step_sets_the_rate_before_every_step_across_epochs() -> None:
    data = LabelledData(features=torch.randn(10, 4), labels=torch.arange(10) % 2)
    model = nn.Linear(4, 2)
    seen: list[int] = []

    def schedule(step: int) -> float:
        seen.append(step)
        return 0.0 if step >= 3 else 0.1

    generator = torch.Generator().manual_seed(0)
    masked_sgd(
        model=model,
        data=data,
        epochs=2,
        lr=5.0,
        batch_size=4,
        generator=generator,
        momentum=0.0,
        weight_decay=0.0,
        lr_at_step=schedule,
    )
    assert seen == [0, 1, 2, 3, 4, 5]  # 3 steps per epoch, counted over both epochs
    frozen = [p.detach().clone() for p in model.parameters()]
    masked_sgd(
        model=model,
        data=data,
        epochs=1,
        lr=5.0,
        batch_size=4,
        generator=generator,
        momentum=0.0,
        weight_decay=0.0,
        lr_at_step=lambda step: 0.0,
    )
    assert all(torch.equal(a, b) for a, b in zip(frozen, model.parameters(), strict=True))


def test_fused_step_is_used_on_the_cpu_and_only_where_it_exists() -> None:
    cpu = [nn.Parameter(torch.zeros(3)), nn.Parameter(torch.zeros(2, dtype=torch.float64))]
    assert fused_step_available(cpu)
    assert not fused_step_available([nn.Parameter(torch.zeros(3, device="meta"))])
    assert not fused_step_available([])
    optimiser = MaskedSGD(model=nn.Linear(4, 2), lr=0.1)
    assert optimiser.optimizer.defaults["fused"] is True


def test_fused_step_matches_the_per_op_sgd_it_replaces() -> None:
    model, data, _ = _problem()
    reference = copy.deepcopy(model)
    start_values = [p.detach().clone() for p in model.parameters()]
    optimiser = MaskedSGD(model=model, lr=0.1, momentum=0.9, weight_decay=5e-3)
    plain = torch.optim.SGD(
        reference.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-3, foreach=False
    )
    for start in range(0, 40, 8):
        x, y = data.features[start : start + 8], data.labels[start : start + 8]
        optimiser.step(functional.cross_entropy(model(x), y))
        plain.zero_grad()
        functional.cross_entropy(reference(x), y).backward()
        plain.step()
    pairs = zip(model.parameters(), reference.parameters(), start_values, strict=True)
    for fused, per_op, start_value in pairs:
        assert not torch.equal(fused, start_value)  # the steps moved every parameter
        torch.testing.assert_close(fused, per_op, rtol=1e-5, atol=1e-6)


def _bits(values: torch.Tensor) -> torch.Tensor:
    return values.contiguous().view(torch.int32)


def test_pruned_entries_stay_positive_zero_without_a_restore() -> None:
    # Masked-out +0.0 entries skip the copy-back (the fast path for pruned models); zero
    # gradients keep them +0.0 through weight decay, momentum, clipping and ascent. A -0.0
    # entry is held by the copy-back, since the update could flip its sign.
    model, data, mask = _problem()
    enforce_mask(model, mask)  # pruned weights are +0.0
    first = model[0].weight
    with torch.no_grad():
        first[mask["0.weight"] == 0] = -0.0  # one layer holds -0.0 instead
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimiser = MaskedSGD(model=model, lr=0.5, momentum=0.9, weight_decay=0.05, mask=mask)
    for _ in range(4):
        optimiser.run_epoch(data=data, batch_size=8, generator=torch.Generator().manual_seed(0))
    optimiser.run_epoch(
        data=data, batch_size=8, generator=torch.Generator().manual_seed(1), ascent=True
    )
    for n, p in model.named_parameters():
        frozen = mask[n] == 0
        assert torch.equal(_bits(p.detach()[frozen]), _bits(before[n][frozen])), n
        assert bool((p.detach() != before[n])[~frozen].any()), n
    assert bool(first.detach()[mask["0.weight"] == 0].signbit().all())


def test_zeroing_a_gradient_survives_inf_and_nan() -> None:
    # The multiply is exact for finite gradients; inf * 0 would be NaN, so non-finite
    # gradients take masked_fill_ and their masked-out entries still become zero.
    keep = torch.tensor([1.0, 0.0, 1.0, 0.0])
    drop = keep == 0
    finite = torch.tensor([2.5, -3.0, -1.0, 4.0])
    _zero_dropped(finite, drop=drop, keep=keep)
    assert finite.tolist() == [2.5, 0.0, -1.0, 0.0]
    for bad in (math.inf, math.nan):
        grad = torch.tensor([2.5, bad, -1.0, -math.inf])
        _zero_dropped(grad, drop=drop, keep=keep)
        assert torch.equal(_bits(grad[drop]), _bits(torch.zeros(2)))
        assert grad[~drop].tolist() == [2.5, -1.0]
