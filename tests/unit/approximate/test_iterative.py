"""FT, GA, RL, ℓ1-sparse, SalUn, boundary shrink and retrain: each moves the right way."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from obliviate.errors import ConfigError, DataError, TrainingError
from obliviate.models import build_model
from obliviate.strategies.approximate import (
    BoundaryShrink,
    BoundaryShrinkConfig,
    FineTune,
    FineTuneConfig,
    GradientAscent,
    GradientAscentConfig,
    L1Sparse,
    L1SparseConfig,
    LabelledData,
    RandomLabel,
    RandomLabelConfig,
    RetrainReference,
    RetrainReferenceConfig,
    SalUn,
    SalUnConfig,
    masked_sgd,
)
from obliviate.strategies.approximate._loop import cosine_lr, enforce_mask
from obliviate.strategies.approximate.base import MASK_NOTE
from obliviate.strategies.approximate.boundary_shrink import neighbour_labels
from obliviate.strategies.approximate.data import default_loss
from obliviate.strategies.approximate.eu_k import split_head
from obliviate.strategies.approximate.l1_sparse import l1_strength
from obliviate.strategies.approximate.random_label import random_other_labels
from obliviate.strategies.approximate.retrain import reinitialise
from obliviate.strategies.approximate.salun import saliency_mask
from obliviate.testing import model_parameters
from tests.unit.approximate.helpers import CLASSES, accuracy, half_mask, trained

# The forget set is mislabelled and memorised (accuracy 1.0 against its given labels), so
# forgetting must lower that accuracy while the retain accuracy stays high.
FORGETTING = [
    FineTune(FineTuneConfig(epochs=10, lr=0.02)),
    GradientAscent(GradientAscentConfig(epochs=5, lr=0.02)),
    RandomLabel(RandomLabelConfig(epochs=3)),
    L1Sparse(L1SparseConfig(epochs=10, lr=0.02)),
    SalUn(SalUnConfig(epochs=3)),
    BoundaryShrink(BoundaryShrinkConfig(epochs=3)),
    RetrainReference(RetrainReferenceConfig(epochs=20)),
]


@pytest.mark.parametrize("method", FORGETTING, ids=lambda m: m.name)
def test_forgetting_lowers_forget_accuracy_and_keeps_retain_accuracy(method: object) -> None:
    setup = trained()
    assert accuracy(setup.model, setup.forget) == 1.0
    result = method.unlearn(model=setup.model, forget=setup.forget, retain=setup.retain)  # type: ignore[attr-defined]
    assert accuracy(result.model, setup.forget) <= 0.6
    assert accuracy(result.model, setup.retain) >= 0.9


def test_random_labels_are_wrong_and_cover_the_other_classes() -> None:
    labels = torch.arange(3000) % 4
    drawn = random_other_labels(labels, num_classes=4, generator=torch.Generator().manual_seed(0))
    assert not bool((drawn == labels).any())
    for y in range(4):
        others = drawn[labels == y]
        counts = torch.bincount(others, minlength=4)
        assert counts[y] == 0 and bool((counts[torch.arange(4) != y] > 200).all())
    compat = random_other_labels(
        labels, num_classes=4, generator=torch.Generator().manual_seed(0), allow_true=True
    )
    assert bool((compat == labels).any())
    with pytest.raises(DataError, match="at least 2 classes"):
        random_other_labels(labels[:3] * 0, num_classes=1, generator=torch.Generator())


def test_l1_strength_decays_linearly_to_zero() -> None:
    values = [l1_strength(gamma=1.0, epoch=t, epochs=10, no_l1_epochs=0) for t in range(10)]
    assert values[0] == 1.0 and values[5] == 0.5
    assert all(a > b for a, b in zip(values, values[1:], strict=False))
    assert l1_strength(gamma=1.0, epoch=8, epochs=10, no_l1_epochs=2) == 0.0
    assert l1_strength(gamma=1.0, epoch=4, epochs=10, no_l1_epochs=2) == 0.5


def test_l1_penalty_shrinks_the_weights() -> None:
    setup = trained()
    plain = L1Sparse(L1SparseConfig(gamma=0.0, epochs=3)).unlearn(
        model=setup.model, forget=setup.forget, retain=setup.retain
    )
    sparse = L1Sparse(L1SparseConfig(gamma=1e-3, epochs=3)).unlearn(
        model=setup.model, forget=setup.forget, retain=setup.retain
    )
    assert sparse.evidence["l1_norm_after"] < plain.evidence["l1_norm_after"]
    assert plain.evidence["l1_norm_before"] == sparse.evidence["l1_norm_before"]


def test_salun_only_moves_the_salient_weights() -> None:
    setup = trained()
    config = SalUnConfig(rho=0.3, epochs=2, weight_decay=0.05)
    salient, _ = saliency_mask(
        model=setup.model, forget=setup.forget, loss_fn=default_loss, rho=0.3
    )
    result = SalUn(config).unlearn(model=setup.model, forget=setup.forget, retain=setup.retain)
    before = model_parameters(setup.model)
    moved = 0
    for name, param in result.model.named_parameters():
        frozen = salient[name] == 0
        assert torch.equal(param.detach()[frozen], before[name][frozen])  # bitwise, despite wd
        moved += int((param.detach() != before[name]).sum())
    total = sum(m.numel() for m in salient.values())
    assert result.evidence["mask_density"] == pytest.approx(0.3, abs=1 / total)
    assert 0 < moved <= round(0.3 * total)


def test_saliency_mask_keeps_the_largest_forget_gradients() -> None:
    setup = trained()
    salient, threshold = saliency_mask(
        model=setup.model, forget=setup.forget, loss_fn=default_loss, rho=0.1
    )
    params = list(setup.model.parameters())
    grads = torch.autograd.grad(
        default_loss(setup.model(setup.forget.features), setup.forget.labels), params
    )
    scores = torch.cat([g.abs().flatten() for g in grads])
    chosen = torch.cat([m.flatten() for m in salient.values()]).bool()
    assert float(scores[chosen].min()) >= float(scores[~chosen].max()) - 1e-9
    assert threshold == pytest.approx(float(scores[chosen].min()), rel=1e-5)


def test_boundary_labels_are_neighbouring_wrong_classes() -> None:
    setup = trained()
    labels, crossed = neighbour_labels(
        model=setup.model, data=setup.forget, loss_fn=default_loss, epsilon=0.1
    )
    assert not bool((labels == setup.forget.labels).any())
    assert bool(((labels >= 0) & (labels < CLASSES)).all())
    assert 0.0 <= crossed <= 1.0
    compat, _ = neighbour_labels(
        model=setup.model, data=setup.forget, loss_fn=default_loss, epsilon=1e-6, allow_true=True
    )
    assert torch.equal(compat, setup.forget.labels)  # a tiny step crosses nothing


def test_reinitialise_is_seeded_and_complete() -> None:
    setup = trained()
    copies = []
    for _ in range(2):
        model = trained().model
        torch.manual_seed(5)
        reinitialise(model)
        copies.append(model_parameters(model))
    trained_params = model_parameters(setup.model)
    for name in trained_params:
        assert torch.equal(copies[0][name], copies[1][name])
        assert not torch.equal(copies[0][name], trained_params[name])


def _he_std(conv: nn.Conv2d) -> float:
    fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
    return float((2.0 / fan_out) ** 0.5)


def test_reinitialise_lets_a_resnet_re_apply_its_he_init() -> None:
    # PyTorch's default conv init has std 1/sqrt(3 fan_in), 1.7-2.4x below He's sqrt(2/fan_out)
    # here; a retrained ResNet must start from the distribution the original did.
    torch.manual_seed(0)
    model = build_model("resnet18", input_shape=(3, 8, 8), num_classes=3, width=16, groups=4)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.weight.numel() > 20000]
    before = [c.weight.detach().clone() for c in convs]
    torch.manual_seed(1)
    reinitialise(model)
    for conv, old in zip(convs, before, strict=True):
        assert not torch.equal(conv.weight, old)
        assert abs(float(conv.weight.detach().std()) / _he_std(conv) - 1) < 0.1
    # A head cut from the ResNet (EU-k, k = 2) re-applies it too, through its BasicBlock.
    _, head = split_head(model, 2)
    reinitialise(head)
    block_convs = [m for m in head.modules() if isinstance(m, nn.Conv2d)]
    assert block_convs
    for conv in block_convs:
        assert abs(float(conv.weight.detach().std()) / _he_std(conv) - 1) < 0.1


def test_reinitialise_refuses_parameters_it_cannot_reset() -> None:
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(2, 2)
            self.scale = nn.Parameter(torch.ones(2))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(x) * self.scale

    data = LabelledData(features=torch.randn(6, 2), labels=torch.arange(6) % 2)
    model = Scaled()
    with pytest.raises(ConfigError, match=r"\['scale'\]"):
        RetrainReference().unlearn(
            model=model, forget=data.subset(torch.arange(2)), retain=data.subset(torch.arange(2, 6))
        )


def test_a_masked_result_says_the_mask_was_not_unlearned() -> None:
    setup = trained()
    method = FineTune(FineTuneConfig(epochs=1))
    common = {"model": setup.model, "forget": setup.forget, "retain": setup.retain}
    masked = method.unlearn(**common, mask=half_mask(setup.model))
    dense = method.unlearn(**common)
    assert MASK_NOTE in masked.log
    assert MASK_NOTE not in dense.log


def test_retrain_without_reinitialising_trains_the_given_weights_under_the_mask() -> None:
    # Jia et al.'s Retrain re-seeds with the original's training seed: it starts from the
    # original's own initialisation, passed here as the model.
    setup = trained()
    mask = half_mask(setup.model)
    init = build_model("mlp", input_shape=(32,), num_classes=CLASSES, hidden=(32,))
    config = RetrainReferenceConfig(epochs=3, lr=0.05, reinitialise=False)
    result = RetrainReference(config).unlearn(
        model=init, forget=setup.forget, retain=setup.retain, mask=mask, seed=7
    )
    expected = copy.deepcopy(init)
    enforce_mask(expected, mask)
    masked_sgd(
        model=expected,
        data=setup.retain,
        epochs=3,
        lr=config.lr,
        batch_size=config.batch_size,
        generator=torch.Generator().manual_seed(7),
        mask=mask,
        lr_at=lambda epoch: cosine_lr(config.lr, epoch, 3),
    )
    got, want = model_parameters(result.model), model_parameters(expected)
    assert all(torch.equal(got[name], want[name]) for name in want)
    assert all(torch.all(got[name][mask[name] == 0] == 0) for name in mask)
    fresh = RetrainReference(RetrainReferenceConfig(epochs=3, lr=0.05)).unlearn(
        model=init, forget=setup.forget, retain=setup.retain, mask=mask, seed=7
    )
    other = model_parameters(fresh.model)
    assert not all(torch.equal(other[name], got[name]) for name in got)


CONFIG_ERRORS = [
    (FineTuneConfig, "lr", 0.0),
    (FineTuneConfig, "epochs", 0),
    (FineTuneConfig, "batch_size", 1.5),
    (FineTuneConfig, "momentum", 1.0),
    (FineTuneConfig, "weight_decay", -1.0),
    (GradientAscentConfig, "lr", float("nan")),
    (GradientAscentConfig, "max_grad_norm", 0.0),
    (RandomLabelConfig, "allow_true_label", "yes"),
    (L1SparseConfig, "gamma", -1e-4),
    (L1SparseConfig, "no_l1_epochs", 10),
    (SalUnConfig, "rho", 0.0),
    (SalUnConfig, "rho", 1.5),
    (BoundaryShrinkConfig, "epsilon", 0.0),
    (BoundaryShrinkConfig, "clamp", (1.0, 0.0)),
    (RetrainReferenceConfig, "schedule", "step"),
    (RetrainReferenceConfig, "reinitialise", "no"),
]


@pytest.mark.parametrize(("cls", "field", "value"), CONFIG_ERRORS)
def test_invalid_configs_name_the_field(cls: type, field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"{field} must"):
        cls(**{field: value})


def test_gradient_ascent_clipping_is_on_by_default_and_can_be_turned_off() -> None:
    # A learning rate that overflows unclipped ascent stays finite with the default clip.
    setup = trained()
    fast = GradientAscentConfig(lr=1e4, epochs=5)
    assert fast.max_grad_norm == 5.0
    result = GradientAscent(fast).unlearn(
        model=setup.model, forget=setup.forget, retain=setup.retain
    )
    assert all(torch.isfinite(p).all() for p in result.model.parameters())
    unclipped = GradientAscentConfig.from_dict({**fast.to_dict(), "max_grad_norm": None})
    assert unclipped.max_grad_norm is None
    with pytest.raises(TrainingError, match="lower the learning rate"):
        GradientAscent(unclipped).unlearn(
            model=setup.model, forget=setup.forget, retain=setup.retain
        )
