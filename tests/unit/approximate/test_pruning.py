"""Prune-then-unlearn: OMP, IMP and SynFlow reach the asked sparsity, keep accuracy, and the
mask survives every unlearning method."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from obliviate.errors import ConfigError, DataError
from obliviate.models import build_model
from obliviate.strategies.approximate import METHODS, LabelledData
from obliviate.strategies.approximate.pruning import (
    PRUNERS,
    PruneConfig,
    measure_sparsity,
    prunable_parameters,
    prune,
    synflow_mask,
)
from obliviate.testing import make_blobs

FAST = PruneConfig(epochs=4, rewind_epoch=1, lr=0.05, batch_size=32)


def _data(n: int = 300, seed: int = 0) -> LabelledData:
    return LabelledData.from_sample_set(make_blobs(n=n, classes=3, features=8, seed=seed))


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("mlp", input_shape=(8,), num_classes=3, hidden=(32,))


def _accuracy(model: nn.Module, data: LabelledData) -> float:
    with torch.no_grad():
        return float((model(data.features).argmax(1) == data.labels).float().mean())


@pytest.mark.parametrize("method", ["omp", "imp", "synflow"])
@pytest.mark.parametrize("sparsity", [0.5, 0.9])
def test_measured_sparsity_matches_the_target(method: str, sparsity: float) -> None:
    result = prune(method=method, model=_mlp(), train=_data(), sparsity=sparsity, config=FAST)
    total = sum(p.numel() for p in prunable_parameters(result.model).values())
    assert abs(result.sparsity - sparsity) <= 1 / total
    assert result.sparsity == measure_sparsity(result.model)
    zeros = {n: int((m == 0).sum()) for n, m in result.mask.items()}
    params = dict(result.model.named_parameters())
    assert sum(zeros.values()) == round(sparsity * total)
    for name, mask in result.mask.items():
        assert bool((params[name][mask == 0] == 0).all())
    assert set(result.mask) == {"1.weight", "3.weight"}  # biases are never pruned


def test_imp_prunes_in_rounds_of_twenty_percent() -> None:
    result = prune(method="imp", model=_mlp(), train=_data(), sparsity=0.5, config=FAST)
    assert result.rounds == 4  # 0.8^3 = 0.512 > 0.5 > 0.8^4
    assert result.dense is not None
    # IMP trains dense once, then retrains each round from the rewind epoch.
    assert result.sample_passes == 300 * (4 + 4 * (4 - 1))


def test_omp_keeps_accuracy_near_dense() -> None:
    both = LabelledData.from_sample_set(make_blobs(n=600, classes=3, features=8, seed=0))
    train, test = both.subset(torch.arange(300)), both.subset(torch.arange(300, 600))
    config = PruneConfig(epochs=8, rewind_epoch=1, lr=0.05, batch_size=32)
    result = prune(method="omp", model=_mlp(), train=train, sparsity=0.8, config=config)
    assert result.dense is not None
    dense_acc, sparse_acc = _accuracy(result.dense, test), _accuracy(result.model, test)
    assert dense_acc > 0.9
    assert sparse_acc >= dense_acc - 0.03


def test_prune_is_deterministic_and_leaves_the_input_alone() -> None:
    model = _mlp()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    a = prune(method="omp", model=model, train=_data(), sparsity=0.7, config=FAST, seed=5)
    b = prune(method="omp", model=model, train=_data(), sparsity=0.7, config=FAST, seed=5)
    for name, value in model.named_parameters():
        assert torch.equal(value, before[name])
    for name, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[name])
    assert all(torch.equal(a.mask[n], b.mask[n]) for n in a.mask)


def test_pretrained_with_rewind_state_rewinds_to_it() -> None:
    init = _mlp()
    rewind = {k: v.clone() for k, v in init.state_dict().items()}
    trained = prune(method="omp", model=init, train=_data(), sparsity=0.0, config=FAST).model
    config = PruneConfig(epochs=4, rewind_epoch=3, lr=1e-12, momentum=0.0, weight_decay=0.0)
    result = prune(
        method="omp",
        model=trained,
        train=_data(),
        sparsity=0.6,
        config=config,
        pretrained=True,
        rewind_state=rewind,
    )
    # With a vanishing learning rate the retraining does not move: the survivors are the
    # rewound (initial) weights, chosen by the trained weights' magnitudes.
    weight = dict(result.model.named_parameters())["1.weight"]
    kept = result.mask["1.weight"] == 1
    assert torch.allclose(weight[kept], init.state_dict()["1.weight"][kept], atol=1e-9)
    trained_w = dict(trained.named_parameters())["1.weight"].detach().abs()
    assert trained_w[kept].min() >= trained_w[~kept].max()
    assert result.dense is None


def test_synflow_is_data_free_and_avoids_layer_collapse() -> None:
    torch.manual_seed(0)
    cnn = build_model("cnn", input_shape=(1, 12, 12), num_classes=4, channels=(4, 8), hidden=16)
    mask = synflow_mask(cnn, sample_shape=(1, 12, 12), sparsity=0.98, iterations=50)
    for name, values in mask.items():
        assert int(values.sum()) >= 1, f"layer {name} was pruned away entirely"
    total = sum(m.numel() for m in mask.values())
    assert sum(int((m == 0).sum()) for m in mask.values()) == round(0.98 * total)


@pytest.mark.parametrize("method", sorted(METHODS.names()))
def test_masked_weights_stay_zero_through_every_unlearning_method(method: str) -> None:
    data = _data(200)
    pruned = prune(method="omp", model=_mlp(), train=data, sparsity=0.75, config=FAST)
    cls = METHODS.get(method)
    fields = cls.config_class.__dataclass_fields__
    config = cls.config_class(epochs=2) if "epochs" in fields else None
    result = cls(config).unlearn(
        model=pruned.model,
        forget=data.subset(torch.arange(20)),
        retain=data.subset(torch.arange(20, 200)),
        seed=0,
        mask=pruned.mask,
    )
    params = dict(result.model.named_parameters())
    for name, mask in pruned.mask.items():
        assert torch.equal(params[name][mask == 0], torch.zeros(int((mask == 0).sum())))
    assert measure_sparsity(result.model) >= pruned.sparsity


@pytest.mark.parametrize("sparsity", [1.0, -0.1, 2])
def test_bad_sparsity_is_rejected(sparsity: float) -> None:
    with pytest.raises(ConfigError, match="sparsity"):
        prune(method="omp", model=_mlp(), train=_data(), sparsity=sparsity, config=FAST)


def test_bad_inputs_are_rejected_before_any_work() -> None:
    model = _mlp()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with pytest.raises(DataError, match="empty"):
        prune(method="omp", model=model, train=_data().subset(torch.arange(0)), sparsity=0.5)
    wrong = LabelledData(features=torch.randn(10, 5), labels=torch.zeros(10, dtype=torch.long))
    with pytest.raises(DataError, match="do not fit"):
        prune(method="omp", model=model, train=wrong, sparsity=0.5)
    with pytest.raises(ConfigError, match="no conv weights"):
        prune(
            method="omp",
            model=model,
            train=_data(),
            sparsity=0.5,
            config=PruneConfig(targets="conv"),
        )
    with pytest.raises(ConfigError, match="rewind_state"):
        prune(method="omp", model=model, train=_data(), sparsity=0.5, rewind_state={})
    for name, value in model.named_parameters():
        assert torch.equal(value, before[name])


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"rewind_epoch": 10}, "rewind_epoch"),
        ({"imp_rate": 1.0}, "imp_rate"),
        ({"targets": "all"}, "targets"),
        ({"lr": 0.0}, "lr"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        PruneConfig(**kwargs)  # type: ignore[arg-type]


def test_config_round_trips_and_registry_lists_the_pruners() -> None:
    assert PruneConfig.from_dict(FAST.to_dict()) == FAST
    assert PRUNERS.names() == ["imp", "omp", "synflow"]
