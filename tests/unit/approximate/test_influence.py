"""Influence unlearning: the solvers agree with an exact Hessian solve; the step is Newton's."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional

from obliviate.errors import ConfigError, TrainingError
from obliviate.strategies.approximate import (
    InfluenceUnlearning,
    InfluenceUnlearningConfig,
    LabelledData,
)

DAMPING = 0.5


def _two_layer() -> tuple[nn.Module, LabelledData, LabelledData]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    x = torch.randn(35, 3, dtype=torch.float64)
    y = (x[:, 0] + 0.3 * torch.randn(35, dtype=torch.float64) > 0).long()
    data = LabelledData(features=x, labels=y)
    return model, data.subset(torch.arange(5)), data.subset(torch.arange(5, 35))


def _expected_step(model: nn.Module, forget: LabelledData, retain: LabelledData) -> torch.Tensor:
    """(H_r + λI)^-1 v with H_r from torch.autograd.functional.hessian: independent code."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat0 = torch.cat([p.detach().flatten() for p in model.parameters()])

    def mean_loss(flat: torch.Tensor, data: LabelledData) -> torch.Tensor:
        params, offset = {}, 0
        for name, shape in zip(names, shapes, strict=True):
            size = int(torch.Size(shape).numel())
            params[name] = flat[offset : offset + size].reshape(shape)
            offset += size
        return functional.cross_entropy(
            functional_call(model, params, (data.features,)), data.labels
        )

    n_f, n_r = len(forget), len(retain)
    n = n_f + n_r
    g_f = torch.autograd.functional.jacobian(lambda f: mean_loss(f, forget), flat0) * n_f
    g_r = torch.autograd.functional.jacobian(lambda f: mean_loss(f, retain), flat0) * n_r
    v = g_f / n - n_f / (n * n_r) * g_r
    hessian = torch.autograd.functional.hessian(lambda f: mean_loss(f, retain), flat0)
    matrix = hessian + DAMPING * torch.eye(len(flat0), dtype=torch.float64)
    assert float(torch.linalg.eigvalsh(matrix).min()) > 0  # CG's precondition holds
    return torch.linalg.solve(matrix, v)


@pytest.mark.parametrize(
    ("config", "tolerance"),
    [
        (InfluenceUnlearningConfig(solver="exact", damping=DAMPING), 1e-10),
        (
            InfluenceUnlearningConfig(solver="cg", damping=DAMPING, cg_tol=1e-12, cg_max_iter=200),
            1e-9,
        ),
        (InfluenceUnlearningConfig(solver="lissa", damping=DAMPING, lissa_depth=1500), 1e-7),
    ],
    ids=["exact", "cg", "lissa"],
)
def test_solvers_agree_with_an_exact_hessian_solve(
    config: InfluenceUnlearningConfig, tolerance: float
) -> None:
    model, forget, retain = _two_layer()
    expected = _expected_step(model, forget, retain)
    result = InfluenceUnlearning(config).unlearn(model=model, forget=forget, retain=retain)
    step = torch.cat(
        [
            (a - b).detach().flatten()
            for a, b in zip(result.model.parameters(), model.parameters(), strict=True)
        ]
    )
    assert torch.allclose(step, expected, rtol=0, atol=tolerance * float(expected.abs().max()))
    assert result.evidence["solver_residual"] < 100 * tolerance
    assert result.evidence["negative_curvature"] == 0.0


def test_alpha_scales_the_step() -> None:
    model, forget, retain = _two_layer()
    one = InfluenceUnlearning(InfluenceUnlearningConfig(solver="exact", damping=DAMPING))
    three = InfluenceUnlearning(
        InfluenceUnlearningConfig(solver="exact", damping=DAMPING, alpha=3.0)
    )
    a = one.unlearn(model=model, forget=forget, retain=retain).evidence["step_norm"]
    b = three.unlearn(model=model, forget=forget, retain=retain).evidence["step_norm"]
    assert b == pytest.approx(3 * a, rel=1e-9)


def _fit_l2(model: nn.Module, data: LabelledData, strength: float) -> None:
    optimizer = torch.optim.LBFGS(
        model.parameters(),
        max_iter=500,
        tolerance_grad=1e-12,
        tolerance_change=1e-14,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        penalty = sum((p**2).sum() for p in model.parameters())
        loss = functional.cross_entropy(model(data.features), data.labels) + strength / 2 * penalty
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    optimizer.step(closure)  # type: ignore[no-untyped-call]


def test_on_a_regularised_convex_model_the_step_lands_near_retraining() -> None:
    strength = 0.1
    torch.manual_seed(1)
    x = torch.randn(60, 5, dtype=torch.float64)
    y = (x @ torch.randn(5, 3, dtype=torch.float64)).argmax(dim=1)
    y[:6] = (y[:6] + 1) % 3  # the forget set disagrees with the rest
    data = LabelledData(features=x, labels=y)
    forget, retain = data.subset(torch.arange(6)), data.subset(torch.arange(6, 60))
    original = nn.Linear(5, 3).double()
    _fit_l2(original, data, strength)
    retrained = nn.Linear(5, 3).double()
    _fit_l2(retrained, retain, strength)
    result = InfluenceUnlearning(
        InfluenceUnlearningConfig(solver="exact", damping=strength)
    ).unlearn(model=original, forget=forget, retain=retain)

    def distance(a: nn.Module) -> float:
        return float(
            sum(
                ((p - q).detach() ** 2).sum()
                for p, q in zip(a.parameters(), retrained.parameters(), strict=True)
            )
            ** 0.5
        )

    assert distance(result.model) < 0.2 * distance(original)  # one Newton step: ~7x closer


def test_exact_solver_refuses_large_models() -> None:
    model = nn.Linear(100, 60)
    data = LabelledData(features=torch.randn(8, 100), labels=torch.arange(8) % 60)
    with pytest.raises(ConfigError, match="at most 5000 parameters; this model has 6060"):
        InfluenceUnlearning(InfluenceUnlearningConfig(solver="exact")).unlearn(
            model=model, forget=data.subset(torch.arange(2)), retain=data.subset(torch.arange(2, 8))
        )


def test_a_diverging_lissa_is_an_error_not_a_model() -> None:
    model, forget, retain = _two_layer()
    config = InfluenceUnlearningConfig(
        solver="lissa", damping=DAMPING, lissa_scale=0.01, lissa_depth=200
    )
    with pytest.raises(TrainingError, match="lissa"):
        InfluenceUnlearning(config).unlearn(model=model, forget=forget, retain=retain)


def test_minibatch_lissa_is_seeded_and_logs_its_residual() -> None:
    model, forget, retain = _two_layer()
    config = InfluenceUnlearningConfig(
        solver="lissa", damping=DAMPING, lissa_batch_size=10, lissa_depth=300
    )
    first = InfluenceUnlearning(config).unlearn(model=model, forget=forget, retain=retain, seed=4)
    second = InfluenceUnlearning(config).unlearn(model=model, forget=forget, retain=retain, seed=4)
    assert first.evidence["solver_residual"] == second.evidence["solver_residual"] < 1.0
    assert "lissa_scale" in first.evidence


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("solver", "newton"),
        ("damping", -1.0),
        ("alpha", 0.0),
        ("cg_max_iter", 0),
        ("lissa_scale", -2.0),
    ],
)
def test_config_validation(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        InfluenceUnlearningConfig(**{field: value})  # type: ignore[arg-type]
