"""Certified removal (Guo et al. 2020): the bound holds, removal tracks retraining, the budget
forces a retrain, and bad requests change nothing."""

from __future__ import annotations

import math

import pytest
import torch

from obliviate.errors import (
    AlreadyDeletedError,
    ConfigError,
    DataError,
    NotFittedError,
    ObliviateError,
    UnknownSampleError,
)
from obliviate.strategies.approximate.certified import (
    CertifiedLinearModel,
    CertifiedRemovalConfig,
    certified_c,
)


def _binary(n: int = 300, d: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen)
    y = (x[:, 0] - 0.5 * x[:, 1] + 0.5 * torch.randn(n, generator=gen) > 0).long()
    return x, y


def _ids(n: int) -> list[str]:
    return [f"s{i}" for i in range(n)]


def _fitted(config: CertifiedRemovalConfig, n: int = 300) -> CertifiedLinearModel:
    x, y = _binary(n)
    return CertifiedLinearModel(config).fit(features=x, labels=y, ids=_ids(n), seed=3)


def test_config_derives_budget_from_sigma_and_back() -> None:
    by_sigma = CertifiedRemovalConfig(sigma=10.0, epsilon=1.0, delta=1e-4)
    assert by_sigma.residual_budget == pytest.approx(10.0 / certified_c(1e-4))
    by_budget = CertifiedRemovalConfig(budget=by_sigma.residual_budget, delta=1e-4)
    assert by_budget.noise_std == pytest.approx(10.0)
    assert certified_c(1e-4) == pytest.approx(math.sqrt(2 * math.log(1.5e4)))
    assert CertifiedRemovalConfig.from_dict(by_sigma.to_dict()) == by_sigma


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"lam": 0.0}, "lam"),
        ({"delta": 1.0}, "delta"),
        ({"sigma": 1.0, "budget": 1.0}, "not both"),
        ({"mode": "multi"}, "mode"),
        ({"epsilon": -1.0}, "epsilon"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        CertifiedRemovalConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("classes", [2, 3])
def test_true_residual_stays_under_the_accumulated_bound(classes: int) -> None:
    gen = torch.Generator().manual_seed(1)
    n = 240
    labels = torch.randint(0, classes, (n,), generator=gen)
    features = torch.randn(n, 6, generator=gen) + labels[:, None].float()
    model = CertifiedLinearModel(CertifiedRemovalConfig(lam=1e-2, sigma=1.0, epsilon=100.0))
    model.fit(features=features, labels=labels, ids=_ids(n), seed=0)
    previous = model.evidence()["budget_used"]
    for i in range(0, 40, 2):
        result = model.remove(ids=[f"s{i}", f"s{i + 1}"])
        assert not result.retrained
        assert result.true_residual <= result.bound
        assert result.true_residual == pytest.approx(model.true_residual())
        assert result.bound >= previous  # bounds only accumulate until a retrain
        assert result.budget_left == pytest.approx(result.budget - result.bound)
        previous = result.bound
    assert len(model.history) == 20
    assert len(model.remaining_ids) == n - 40


def test_removal_agrees_closely_with_retraining() -> None:
    config = CertifiedRemovalConfig(lam=1e-2, sigma=1.0)
    x, y = _binary()
    original = CertifiedLinearModel(config).fit(features=x, labels=y, ids=_ids(300), seed=3)
    removed = original.weights
    model = CertifiedLinearModel(config).fit(features=x, labels=y, ids=_ids(300), seed=3)
    forget = [f"s{i}" for i in range(5)]
    result = model.remove(ids=forget)
    assert not result.retrained
    # Retraining on the rest with the same seed uses the same noise b: the Newton step
    # should land much closer to it than the original model is.
    retrained = CertifiedLinearModel(config).fit(
        features=x[5:], labels=y[5:], ids=_ids(300)[5:], seed=3
    )
    gap_after = float((model.weights - retrained.weights).norm())
    gap_before = float((removed - retrained.weights).norm())
    assert gap_before > 0
    assert gap_after < 0.05 * gap_before
    assert (model.predict(x) == retrained.predict(x)).mean() > 0.99


def test_budget_exhaustion_forces_a_retrain() -> None:
    model = _fitted(CertifiedRemovalConfig(lam=1e-2, budget=0.02))
    seen_retrain = False
    for i in range(40):
        before = model.evidence()["budget_used"]
        result = model.remove(ids=[f"s{i}"])
        if result.retrained:
            seen_retrain = True
            # It retrained because the step would have gone over the budget ...
            assert before + result.step_bound > result.budget
            # ... and the fresh model starts with (almost) the whole budget again.
            assert result.bound < 1e-3 * result.budget
            assert result.true_residual <= result.bound
            assert model.evidence()["refits"] >= 1
        else:
            assert result.bound <= result.budget
        assert model.evidence()["certified"]
    assert seen_retrain
    assert "s0" not in model.remaining_ids


def test_evidence_is_approximate_with_epsilon_and_delta() -> None:
    model = _fitted(CertifiedRemovalConfig(epsilon=0.5, delta=1e-5, sigma=2.0))
    evidence = model.evidence()
    assert evidence["guarantee"] == "approximate"
    assert (evidence["epsilon"], evidence["delta"], evidence["sigma"]) == (0.5, 1e-5, 2.0)
    assert evidence["budget"] == pytest.approx(2.0 * 0.5 / certified_c(1e-5))


def test_state_round_trip_continues_identically() -> None:
    model = _fitted(CertifiedRemovalConfig(lam=1e-2, sigma=5.0))
    model.remove(ids=["s0"])
    state = model.state_dict()
    assert (state["kind"], state["format_version"]) == ("certified_linear", 1)
    clone = CertifiedLinearModel.from_state_dict(state)
    a, b = model.remove(ids=["s1", "s2"]), clone.remove(ids=["s1", "s2"])
    assert torch.allclose(model.weights, clone.weights, rtol=0, atol=1e-12)
    assert a.bound == pytest.approx(b.bound, rel=1e-9)
    with pytest.raises(ConfigError, match="kind"):
        CertifiedLinearModel.from_state_dict({**state, "kind": "other"})


def _snapshot(model: CertifiedLinearModel) -> tuple[torch.Tensor, int, list[str], float]:
    return (
        model.weights,
        len(model.history),
        model.remaining_ids,
        float(model.evidence()["budget_used"]),
    )


@pytest.mark.parametrize(
    ("ids", "error", "match"),
    [
        (["nope"], UnknownSampleError, "not in the training set"),
        (["s0"], AlreadyDeletedError, "already removed"),
        (["s1", "s1"], DataError, "unique"),
        ([], DataError, "at least one"),
        ([f"s{i}" for i in range(1, 60)], DataError, "no training data"),
    ],
)
def test_bad_removal_requests_change_nothing(
    ids: list[str], error: type[ObliviateError], match: str
) -> None:
    model = _fitted(CertifiedRemovalConfig(lam=1e-2), n=60)
    model.remove(ids=["s0"])
    before = _snapshot(model)
    with pytest.raises(error, match=match):
        model.remove(ids=ids)
    after = _snapshot(model)
    assert torch.equal(before[0], after[0])
    assert before[1:] == after[1:]


@pytest.mark.parametrize(
    ("features", "labels", "ids", "match"),
    [
        (torch.randn(10, 3), torch.zeros(9, dtype=torch.long), _ids(10), "same length"),
        (torch.randn(10), torch.zeros(10, dtype=torch.long), _ids(10), r"shape \(n, d\)"),
        (torch.randn(4, 3), torch.tensor([0, 1, 0, 1]), ["a", "a", "b", "c"], "unique"),
        (torch.full((4, 3), float("nan")), torch.tensor([0, 1, 0, 1]), _ids(4), "NaN"),
        (torch.randn(4, 3), torch.tensor([0, 1, 0, -1]), _ids(4), "labels must lie"),
    ],
)
def test_bad_training_data_is_rejected(
    features: torch.Tensor, labels: torch.Tensor, ids: list[str], match: str
) -> None:
    model = CertifiedLinearModel()
    with pytest.raises(DataError, match=match):
        model.fit(features=features, labels=labels, ids=ids)
    with pytest.raises(NotFittedError):
        model.remove(ids=["s0"])


def test_predict_checks_the_feature_width() -> None:
    model = _fitted(CertifiedRemovalConfig())
    probs = model.predict_proba(torch.randn(5, 8))
    assert probs.shape == (5, 2)
    assert probs.sum(axis=1) == pytest.approx(1.0)
    with pytest.raises(DataError, match="expected 8 features"):
        model.predict(torch.randn(5, 7))


def test_rows_are_projected_into_the_unit_ball() -> None:
    # Scaling every row by 100 changes nothing: the bound needs |x| <= 1, so rows are
    # projected, and a row already longer than 1 ends up with the same direction.
    x, y = _binary(120)
    config = CertifiedRemovalConfig(lam=1e-2)
    big = x / x.norm(dim=1, keepdim=True) * 100
    unit = x / x.norm(dim=1, keepdim=True)
    a = CertifiedLinearModel(config).fit(features=big, labels=y, ids=_ids(120))
    b = CertifiedLinearModel(config).fit(features=unit, labels=y, ids=_ids(120))
    assert torch.allclose(a.weights, b.weights, atol=1e-8)
