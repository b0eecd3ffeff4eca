"""Fisher forgetting: the Fisher matches its definition; noise goes where retain data don't look."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional

from obliviate.errors import ConfigError
from obliviate.strategies.approximate import (
    FisherForgetting,
    FisherForgettingConfig,
    LabelledData,
)
from obliviate.strategies.approximate.fisher import fisher_diagonal
from tests.unit.approximate.helpers import trained


def _net() -> tuple[nn.Module, LabelledData]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))
    data = LabelledData(features=torch.randn(40, 4), labels=torch.arange(40) % 3)
    return model, data


def _brute_force(
    model: nn.Module, data: LabelledData, batch: int | None
) -> dict[str, torch.Tensor]:
    names = [n for n, _ in model.named_parameters()]
    out = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    if batch is None:  # Σ_i Σ_c p_ic g_ic² / n, one sample at a time
        for i in range(len(data)):
            x = data.features[i : i + 1]
            probs = functional.softmax(model(x), dim=1).detach()[0]
            for c in range(3):
                grads = torch.autograd.grad(
                    functional.cross_entropy(model(x), torch.tensor([c])), list(model.parameters())
                )
                for n, g in zip(names, grads, strict=True):
                    out[n] += probs[c] * g**2
        return {n: f / len(data) for n, f in out.items()}
    batches = 0
    for start in range(0, len(data), batch):
        x = data.features[start : start + batch]
        probs = functional.softmax(model(x), dim=1).detach()
        batches += 1
        for c in range(3):
            target = torch.full((len(x),), c)
            grads = torch.autograd.grad(
                functional.cross_entropy(model(x), target), list(model.parameters())
            )
            for n, g in zip(names, grads, strict=True):
                out[n] += probs[:, c].mean() * g**2
    return {n: f / batches for n, f in out.items()}


@pytest.mark.parametrize(("kind", "batch"), [("per_sample", None), ("batch_mean", 32)])
def test_fisher_matches_its_definition(kind: str, batch: int | None) -> None:
    model, data = _net()
    got = fisher_diagonal(model=model, data=data, num_classes=3, kind=kind)
    expected = _brute_force(model, data, batch)
    for name in expected:
        assert torch.allclose(got[name], expected[name], rtol=1e-4, atol=1e-8)


def test_per_sample_fisher_is_larger_than_the_batch_mean_one() -> None:
    model, data = _net()
    per_sample = fisher_diagonal(model=model, data=data, num_classes=3)
    batch_mean = fisher_diagonal(model=model, data=data, num_classes=3, kind="batch_mean")
    # mean of squares >= square of means: the code's batch-mean Fisher under-estimates
    assert sum(float(f.sum()) for f in per_sample.values()) > 1.5 * sum(
        float(f.sum()) for f in batch_mean.values()
    )


def test_noise_lands_on_weights_the_retain_set_does_not_use() -> None:
    model, data = _net()
    retain_x = data.features.clone()
    retain_x[:, 3] = 0.0  # no retain sample ever uses input 3
    retain = LabelledData(features=retain_x, labels=data.labels)
    forget = LabelledData(features=torch.randn(5, 4), labels=torch.zeros(5, dtype=torch.int64))
    result = FisherForgetting(FisherForgettingConfig(alpha=1e-4, average_inputs=False)).unlearn(
        model=model, forget=forget, retain=retain
    )
    delta = (result.model[0].weight - model[0].weight).detach().abs()
    assert float(delta[:, 3].mean()) > 2.5 * float(delta[:, :3].mean())


def test_fisher_forgetting_raises_the_forget_loss() -> None:
    setup = trained()
    result = FisherForgetting().unlearn(model=setup.model, forget=setup.forget, retain=setup.retain)
    assert result.evidence["forget_loss_after"] > result.evidence["forget_loss_before"]
    assert result.evidence["noise_norm"] == pytest.approx(
        result.evidence["param_distance"], rel=1e-6
    )


def test_a_larger_alpha_adds_more_noise() -> None:
    setup = trained()
    small = FisherForgetting(FisherForgettingConfig(alpha=1e-6))
    large = FisherForgetting(FisherForgettingConfig(alpha=1e-4))
    a = small.unlearn(model=setup.model, forget=setup.forget, retain=setup.retain).evidence
    b = large.unlearn(model=setup.model, forget=setup.forget, retain=setup.retain).evidence
    assert b["noise_norm"] == pytest.approx(10 * a["noise_norm"], rel=1e-4)


@pytest.mark.parametrize(
    ("field", "value"), [("alpha", 0.0), ("fisher", "empirical"), ("average_inputs", 1)]
)
def test_config_validation(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        FisherForgettingConfig(**{field: value})  # type: ignore[arg-type]
