"""NegGrad+ then EU-k: each loss term does what its weight says, the body moves, bad input."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from obliviate.errors import ConfigError, TrainingError
from obliviate.strategies.approximate import (
    EUk,
    EUkConfig,
    LabelledData,
    NegGradEUk,
    NegGradEUkConfig,
)
from obliviate.strategies.approximate.eu_k import split_head
from obliviate.testing import assert_models_equal, model_parameters
from tests.unit.approximate.helpers import CLASSES, accuracy, trained


def _phase_one(config: NegGradEUkConfig, forget: LabelledData, retain: LabelledData) -> nn.Module:
    """The model after the NegGrad+ phase alone (no head retraining), from the trained setup."""
    model = trained().model
    NegGradEUk(config)._neggrad_plus(
        model=model,
        forget=forget,
        retain=retain,
        loss_fn=nn.functional.cross_entropy,
        generator=torch.Generator().manual_seed(0),
        mask=None,
    )
    return model


def _relabelled(data: LabelledData) -> LabelledData:
    return LabelledData(features=data.features, labels=(data.labels + 1) % CLASSES)


def _loss(model: nn.Module, data: LabelledData) -> float:
    model.eval()
    with torch.no_grad():
        return float(nn.functional.cross_entropy(model(data.features), data.labels))


def test_the_memorised_forget_set_is_forgotten_and_retain_kept() -> None:
    setup = trained()
    assert accuracy(setup.model, setup.forget) == 1.0
    result = NegGradEUk(NegGradEUkConfig(layers=1, head_epochs=40, head_lr=0.1)).unlearn(
        model=setup.model, forget=setup.forget, retain=setup.retain, seed=0
    )
    assert accuracy(result.model, setup.forget) <= 0.6
    assert accuracy(result.model, setup.retain) >= 0.9
    assert result.evidence["neggrad_steps"] == 1.0  # 12 forget samples, batch 32, 1 epoch
    assert math.isfinite(result.evidence["neggrad_last_forget_loss"])


def test_unlike_eu_k_the_body_moves_and_the_head_is_retrained() -> None:
    setup = trained()
    config = NegGradEUkConfig(layers=1, head_epochs=3, epochs=2)
    ours = NegGradEUk(config).unlearn(
        model=setup.model, forget=setup.forget, retain=setup.retain, seed=5
    )
    theirs = EUk(config.head()).unlearn(
        model=setup.model, forget=setup.forget, retain=setup.retain, seed=5
    )
    body, _ = split_head(setup.model, 1)
    body_names = {
        n for n, p in setup.model.named_parameters() if any(p is q for q in body.parameters())
    }
    assert body_names == {"1.weight", "1.bias"}
    before = model_parameters(setup.model)
    ours_after, theirs_after = model_parameters(ours.model), model_parameters(theirs.model)
    for name in body_names:
        assert torch.equal(theirs_after[name], before[name])
        assert not torch.equal(ours_after[name], before[name])
    for name in set(before) - body_names:
        assert not torch.equal(ours_after[name], before[name])


def test_with_retain_weight_1_the_forget_labels_play_no_part() -> None:
    setup = trained()
    config = NegGradEUkConfig(retain_weight=1.0, epochs=3, batch_size=4, lr=0.05)
    plain = _phase_one(config, setup.forget, setup.retain)
    relabelled = _phase_one(config, _relabelled(setup.forget), setup.retain)
    assert_models_equal(plain, relabelled)
    assert _loss(plain, setup.retain) < _loss(trained().model, setup.retain)


def test_with_retain_weight_0_the_retain_labels_play_no_part_and_forget_loss_rises() -> None:
    setup = trained()
    config = NegGradEUkConfig(retain_weight=0.0, epochs=3, batch_size=4, lr=0.05)
    plain = _phase_one(config, setup.forget, setup.retain)
    relabelled = _phase_one(config, setup.forget, _relabelled(setup.retain))
    assert_models_equal(plain, relabelled)
    assert _loss(plain, setup.forget) > _loss(trained().model, setup.forget) + 0.5


def test_between_the_two_the_retain_term_holds_the_retain_set() -> None:
    setup = trained()
    ascent = _phase_one(
        NegGradEUkConfig(retain_weight=0.0, epochs=3, batch_size=4), setup.forget, setup.retain
    )
    anchored = _phase_one(
        NegGradEUkConfig(retain_weight=0.7, epochs=3, batch_size=4), setup.forget, setup.retain
    )
    assert _loss(anchored, setup.retain) < _loss(ascent, setup.retain)


def test_the_same_seed_gives_the_same_model_and_another_seed_another() -> None:
    setup = trained()
    method = NegGradEUk(NegGradEUkConfig(layers=1, head_epochs=2))
    runs = [
        method.unlearn(model=setup.model, forget=setup.forget, retain=setup.retain, seed=s)
        for s in (3, 3, 4)
    ]
    assert_models_equal(runs[0].model, runs[1].model)
    with pytest.raises(AssertionError):
        assert_models_equal(runs[0].model, runs[2].model)


def test_a_nan_loss_is_an_error_naming_the_phase_and_the_model_is_untouched() -> None:
    setup = trained()
    before = model_parameters(setup.model)

    def nan_loss(outputs: Tensor, labels: Tensor) -> Tensor:
        return nn.functional.cross_entropy(outputs, labels) * math.nan

    with pytest.raises(TrainingError, match=r"NegGrad\+ loss became non-finite \(forget nan"):
        NegGradEUk(NegGradEUkConfig(layers=1)).unlearn(
            model=setup.model, forget=setup.forget, retain=setup.retain, loss_fn=nan_loss
        )
    after = model_parameters(setup.model)
    assert all(torch.equal(before[n], after[n]) for n in before)


def test_a_model_eu_k_cannot_split_is_refused_before_any_update() -> None:
    setup = trained()
    before = model_parameters(setup.model)
    with pytest.raises(ConfigError, match="layers=3 but the model has only 2 weight layers"):
        NegGradEUk(NegGradEUkConfig(layers=3)).unlearn(
            model=setup.model, forget=setup.forget, retain=setup.retain
        )
    after = model_parameters(setup.model)
    assert all(torch.equal(before[n], after[n]) for n in before)


def test_the_head_config_carries_every_head_field() -> None:
    config = NegGradEUkConfig(
        layers=3,
        head_lr=0.2,
        head_epochs=7,
        head_batch_size=64,
        head_momentum=0.5,
        head_weight_decay=0.0,
        standardise=False,
        head_forget_weight=0.25,
        head_forget_loss="ascent",
    )
    assert config.head() == EUkConfig(
        layers=3,
        lr=0.2,
        epochs=7,
        batch_size=64,
        momentum=0.5,
        weight_decay=0.0,
        standardise=False,
        forget_weight=0.25,
        forget_loss="ascent",
    )


def test_the_head_forget_term_reaches_the_forget_set_and_is_off_at_weight_0() -> None:
    setup = trained()
    common = {"layers": 1, "head_epochs": 20, "head_lr": 0.1, "head_forget_loss": "ascent"}
    plain, off, ascended = (
        NegGradEUk(NegGradEUkConfig(**common, head_forget_weight=w)).unlearn(  # type: ignore[arg-type]
            model=setup.model, forget=setup.forget, retain=setup.retain, seed=2
        )
        for w in (0.0, 0.0, 0.05)
    )
    assert_models_equal(plain.model, off.model)
    assert _loss(ascended.model, setup.forget) > _loss(plain.model, setup.forget) + 0.1
    assert accuracy(ascended.model, setup.retain) >= 0.9
    assert ascended.evidence["forget_weight"] == 0.05


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("retain_weight", 1.5),
        ("retain_weight", -0.1),
        ("retain_weight", math.nan),
        ("retain_weight", True),
        ("max_grad_norm", 0.0),
        ("layers", 0),
        ("head_lr", 0.0),
        ("head_epochs", 0),
        ("head_batch_size", 2.5),
        ("head_momentum", 1.0),
        ("head_weight_decay", -1.0),
        ("standardise", "yes"),
        ("head_forget_weight", -0.1),
        ("head_forget_loss", "hinge"),
        ("lr", -1.0),
        ("epochs", 0),
    ],
)
def test_invalid_configs_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"{field} must"):
        NegGradEUkConfig(**{field: value})  # type: ignore[arg-type]
