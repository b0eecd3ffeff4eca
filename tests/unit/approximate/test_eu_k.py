"""EU-k: the body stays bitwise, the head is trained anew, the standardisation fold is exact."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from obliviate.errors import ConfigError
from obliviate.models import build_model
from obliviate.strategies.approximate import EUk, EUkConfig, LabelledData
from obliviate.strategies.approximate.data import default_loss
from obliviate.strategies.approximate.eu_k import (
    _column_std,
    _with_forget_term,
    fold_standardisation,
    split_head,
)
from obliviate.testing import assert_models_equal, model_parameters
from tests.unit.approximate.helpers import accuracy, trained


def _images(n: int = 90) -> LabelledData:
    generator = torch.Generator().manual_seed(4)
    labels = torch.arange(n) % 3
    features = torch.randn(n, 1, 8, 8, generator=generator) * 0.3
    features[:, 0, :, :] += labels.view(-1, 1, 1).float()  # learnable from any pixel
    return LabelledData(features=features, labels=labels)


def _cnn() -> nn.Module:
    torch.manual_seed(1)
    return build_model("cnn", input_shape=(1, 8, 8), num_classes=3, channels=(4, 8), hidden=16)


def test_the_memorised_forget_set_is_forgotten_and_retain_kept() -> None:
    setup = trained()
    assert accuracy(setup.model, setup.forget) == 1.0
    result = EUk(EUkConfig(layers=1, epochs=40, lr=0.1)).unlearn(
        model=setup.model, forget=setup.forget, retain=setup.retain, seed=0
    )
    assert accuracy(result.model, setup.forget) <= 0.6
    assert accuracy(result.model, setup.retain) >= 0.9


def test_only_the_head_changes_and_the_body_stays_bitwise() -> None:
    data = _images()
    model = _cnn()
    result = EUk(EUkConfig(layers=2, epochs=2)).unlearn(
        model=model, forget=data.subset(torch.arange(9)), retain=data.subset(torch.arange(9, 90))
    )
    before, after = model_parameters(model), model_parameters(result.model)
    _, head = split_head(model, 2)
    head_ids = {id(p) for p in head.parameters()}
    head_names = {n for n, p in model.named_parameters() if id(p) in head_ids}
    assert head_names == {"7.weight", "7.bias", "9.weight", "9.bias"}
    for name in before:
        same = torch.equal(before[name], after[name])
        assert same is (name not in head_names), name
    assert result.evidence["head_parameters"] == sum(before[n].numel() for n in head_names)
    assert result.evidence["standardised"] == 1.0


def test_the_same_seed_gives_the_same_model_and_another_seed_another() -> None:
    setup = trained()
    method = EUk(EUkConfig(layers=1, epochs=3))
    runs = [
        method.unlearn(model=setup.model, forget=setup.forget, retain=setup.retain, seed=s)
        for s in (3, 3, 4)
    ]
    assert_models_equal(runs[0].model, runs[1].model)
    with pytest.raises(AssertionError):
        assert_models_equal(runs[0].model, runs[2].model)


def _forget_probabilities(model: nn.Module, data: LabelledData) -> torch.Tensor:
    with torch.no_grad():
        return torch.softmax(model(data.features), dim=1)


def test_a_zero_forget_weight_is_the_papers_eu_k_bitwise() -> None:
    setup = trained()
    runs = [
        EUk(config).unlearn(model=setup.model, forget=setup.forget, retain=setup.retain, seed=5)
        for config in (
            EUkConfig(layers=1, epochs=3),
            EUkConfig(layers=1, epochs=3, forget_weight=0.0, forget_loss="ascent"),
        )
    ]
    assert_models_equal(runs[0].model, runs[1].model)
    assert runs[1].evidence["forget_weight"] == 0.0


def test_the_entropy_term_flattens_the_forget_predictions_and_keeps_the_retain_set() -> None:
    setup = trained()
    common = {"layers": 1, "epochs": 20, "lr": 0.1}
    plain, flat, again = (
        EUk(EUkConfig(**common, forget_weight=w)).unlearn(  # type: ignore[arg-type]
            model=setup.model, forget=setup.forget, retain=setup.retain, seed=2
        )
        for w in (0.0, 1.0, 1.0)
    )
    entropy = {
        name: float(-(p * p.log()).sum(dim=1).mean())
        for name, p in (
            ("plain", _forget_probabilities(plain.model, setup.forget)),
            ("flat", _forget_probabilities(flat.model, setup.forget)),
        )
    }
    assert entropy["flat"] > entropy["plain"] + 0.1, entropy
    assert accuracy(flat.model, setup.retain) >= 0.9
    assert flat.evidence["forget_weight"] == 1.0
    assert_models_equal(flat.model, again.model)  # the forget batches come from the seed


def test_the_ascent_term_raises_the_forget_loss() -> None:
    setup = trained()
    losses = []
    for weight in (0.0, 0.05):
        result = EUk(
            EUkConfig(layers=1, epochs=20, lr=0.1, forget_weight=weight, forget_loss="ascent")
        ).unlearn(model=setup.model, forget=setup.forget, retain=setup.retain, seed=2)
        with torch.no_grad():
            outputs = result.model(setup.forget.features)
        losses.append(float(nn.functional.cross_entropy(outputs, setup.forget.labels)))
        assert accuracy(result.model, setup.retain) >= 0.9
    assert losses[1] > losses[0] + 0.1, losses


def test_the_forget_term_holds_the_mask() -> None:
    setup = trained()
    mask = {name: torch.ones_like(p) for name, p in setup.model.named_parameters()}
    mask["3.weight"][:, ::2] = 0.0
    result = EUk(EUkConfig(layers=1, epochs=3, forget_weight=0.5)).unlearn(
        model=setup.model, forget=setup.forget, retain=setup.retain, mask=mask
    )
    assert not dict(result.model.named_parameters())["3.weight"][:, ::2].any()


def test_folding_the_standardisation_is_exact() -> None:
    torch.manual_seed(2)
    layer = nn.Linear(5, 3)
    with torch.no_grad():
        layer.weight[0, 1] = 0.0
    x = torch.randn(7, 5, dtype=torch.float64)
    layer = layer.double()
    shift, scale = torch.randn(5, dtype=torch.float64), torch.rand(5, dtype=torch.float64) + 0.5
    expected = layer((x - shift) / scale)
    fold_standardisation(layer, shift=shift, scale=scale)
    torch.testing.assert_close(layer(x), expected, rtol=1e-12, atol=1e-12)
    assert layer.weight[0, 1].item() == 0.0  # a pruned weight stays exactly zero


@pytest.mark.parametrize("rows", [1, 5, 1024, 2500])
def test_the_blockwise_column_std_matches_torch(rows: int) -> None:
    features = torch.randn(rows, 6, generator=torch.Generator().manual_seed(rows)) * 4 + 3
    std = _column_std(features, features.mean(dim=0))
    if rows == 1:  # no spread to measure: zero, which the caller floors, not NaN
        assert torch.equal(std, torch.zeros(6))
    else:
        torch.testing.assert_close(std, features.std(dim=0), rtol=1e-5, atol=1e-6)


def test_a_shift_cannot_be_folded_into_a_layer_without_bias() -> None:
    layer = nn.Linear(2, 2, bias=False)
    with pytest.raises(ConfigError, match="without bias"):
        fold_standardisation(layer, shift=torch.ones(2), scale=torch.ones(2))
    fold_standardisation(layer, shift=torch.zeros(2), scale=torch.full((2,), 2.0))


def test_a_masked_bias_keeps_the_features_uncentred_and_the_mask_holds() -> None:
    setup = trained()
    params = dict(setup.model.named_parameters())
    mask = {name: torch.ones_like(p) for name, p in params.items()}
    mask["3.bias"][0] = 0.0  # the head's first (only) layer is model[3] with layers=1
    mask["3.weight"][:, ::2] = 0.0
    result = EUk(EUkConfig(layers=1, epochs=3)).unlearn(
        model=setup.model, forget=setup.forget, retain=setup.retain, mask=mask
    )
    out = dict(result.model.named_parameters())
    assert out["3.bias"][0].item() == 0.0
    assert not out["3.weight"][:, ::2].any()
    assert result.evidence["mask_repaired_entries"] == 0.0


def test_a_convolutional_head_trains_unstandardised_and_says_so() -> None:
    data = _images()
    result = EUk(EUkConfig(layers=3, epochs=2)).unlearn(
        model=_cnn(), forget=data.subset(torch.arange(9)), retain=data.subset(torch.arange(9, 90))
    )
    assert result.evidence["standardised"] == 0.0
    assert any("not standardised" in line and "Conv2d" in line for line in result.log)


def test_a_model_that_is_not_sequential_is_refused_and_left_untouched() -> None:
    class Wrapped(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x)

    setup = trained()
    model = Wrapped(setup.model)
    before = model_parameters(model)
    with pytest.raises(ConfigError, match=r"nn\.Sequential model.*got Wrapped"):
        EUk().unlearn(model=model, forget=setup.forget, retain=setup.retain)
    after = model_parameters(model)
    assert all(torch.equal(before[n], after[n]) for n in before)


def test_more_layers_than_the_model_has_is_refused() -> None:
    setup = trained()
    with pytest.raises(ConfigError, match="layers=3 but the model has only 2 weight layers"):
        EUk(EUkConfig(layers=3)).unlearn(
            model=setup.model, forget=setup.forget, retain=setup.retain
        )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("layers", 0),
        ("layers", 1.5),
        ("standardise", "yes"),
        ("lr", -1.0),
        ("epochs", 0),
        ("forget_weight", -0.1),
        ("forget_loss", "kl"),
    ],
)
def test_invalid_configs_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"{field} must"):
        EUkConfig(**{field: value})  # type: ignore[arg-type]


def _resnet() -> nn.Module:
    torch.manual_seed(2)
    return build_model("resnet18", input_shape=(3, 8, 8), num_classes=3, width=4, groups=2)


@pytest.mark.parametrize("layers", [1, 2, 9])
def test_resnet_splits_into_a_body_and_head_that_compose_to_the_model(layers: int) -> None:
    model = _resnet().eval()
    body, head = split_head(model, layers)
    x = torch.randn(5, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(head(body(x)), model(x), rtol=0, atol=0)
    ids = {id(p) for p in model.parameters()}
    assert {id(p) for p in [*body.parameters(), *head.parameters()]} == ids  # shared, complete


@pytest.mark.parametrize("layers", [0, 10])
def test_resnet_refuses_a_split_it_does_not_have(layers: int) -> None:
    with pytest.raises(ConfigError, match="8 residual blocks"):
        split_head(_resnet(), layers)


@pytest.mark.parametrize(
    ("layers", "changed", "standardised"), [(1, "fc.", 1.0), (2, "stages.3.1.", 0.0)]
)
def test_eu_k_on_a_resnet_retrains_only_its_head(
    layers: int, changed: str, standardised: float
) -> None:
    data = LabelledData(
        features=torch.randn(40, 3, 8, 8, generator=torch.Generator().manual_seed(1)),
        labels=torch.arange(40) % 3,
    )
    model = _resnet()
    result = EUk(EUkConfig(layers=layers, epochs=2)).unlearn(
        model=model, forget=data.subset(torch.arange(4)), retain=data.subset(torch.arange(4, 40))
    )
    before, after = model_parameters(model), model_parameters(result.model)
    moved = {name for name in before if not torch.equal(before[name], after[name])}
    head = {name for name in before if name.startswith((changed, "fc."))}
    assert moved == head
    assert result.evidence["standardised"] == standardised


@pytest.mark.parametrize("kind", ["entropy", "ascent"])
@pytest.mark.parametrize("rows", ["mixed", "forget only", "retain only"])
def test_the_weighted_forget_term_matches_the_generic_one(kind: str, rows: str) -> None:
    generator = torch.Generator().manual_seed(7)
    outputs = torch.randn(10, 4, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 4, (10,), generator=generator)
    forget = {"mixed": torch.arange(10) % 3 == 0, "forget only": torch.ones(10, dtype=torch.bool)}
    labels = torch.where(forget.get(rows, torch.zeros(10, dtype=torch.bool)), -1 - labels, labels)

    def generic(o: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(o, y)

    fast = _with_forget_term(default_loss, weight=0.3, kind=kind)(outputs, labels)
    slow = _with_forget_term(generic, weight=0.3, kind=kind)(outputs, labels)
    torch.testing.assert_close(fast, slow, rtol=1e-12, atol=1e-12)
