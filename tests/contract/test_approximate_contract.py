"""The contract every registered approximate unlearning method must honour.

Parametrised over ``METHODS.names()``, so a newly registered method is held to it too.
"""

from __future__ import annotations

import math

import pytest
import torch

from obliviate.errors import ConfigError, DataError, ObliviateError
from obliviate.strategies.approximate import METHODS, LabelledData, UnlearningMethod
from obliviate.strategies.base import Guarantee
from obliviate.testing import assert_models_equal, model_parameters
from tests.unit.approximate.helpers import CLASSES, FAST, FEATURES, Setup, half_mask, trained

NAMES = METHODS.names()


def _method(name: str) -> UnlearningMethod:
    cls = METHODS.get(name)
    return cls(FAST.get(name))


@pytest.fixture
def setup() -> Setup:
    return trained()


def test_every_method_family_is_registered() -> None:
    expected = {
        "retrain",
        "finetune",
        "gradient_ascent",
        "random_label",
        "fisher",
        "influence",
        "l1_sparse",
        "salun",
        "boundary_shrink",
        "eu_k",
        "neggrad_eu_k",
    }
    assert expected <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_result_is_labelled_approximate_with_evidence(name: str, setup: Setup) -> None:
    result = _method(name).unlearn(model=setup.model, forget=setup.forget, retain=setup.retain)
    assert result.guarantee is Guarantee.APPROXIMATE
    assert result.method == name
    assert not result.noop
    assert result.sample_passes > 0
    assert result.seconds >= 0
    assert result.model is not setup.model
    for key in ("forget_loss_before", "forget_loss_after", "param_distance"):
        assert key in result.evidence
    assert all(isinstance(v, float) and math.isfinite(v) for v in result.evidence.values())
    assert result.evidence["param_distance"] > 0


@pytest.mark.parametrize("name", NAMES)
def test_empty_forget_set_changes_nothing(name: str, setup: Setup) -> None:
    empty = LabelledData(
        features=torch.zeros(0, FEATURES), labels=torch.zeros(0, dtype=torch.int64)
    )
    result = _method(name).unlearn(model=setup.model, forget=empty, retain=setup.retain)
    assert result.noop
    assert result.sample_passes == 0
    assert result.evidence["forget_size"] == 0.0
    assert result.model is not setup.model
    assert_models_equal(result.model, setup.model)


@pytest.mark.parametrize("name", NAMES)
def test_inputs_are_never_modified(name: str, setup: Setup) -> None:
    before = model_parameters(setup.model)
    training = setup.model.training
    data = [t.clone() for t in (*_tensors(setup.forget), *_tensors(setup.retain))]
    _method(name).unlearn(model=setup.model, forget=setup.forget, retain=setup.retain)
    after = model_parameters(setup.model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert setup.model.training == training
    now = (*_tensors(setup.forget), *_tensors(setup.retain))
    assert all(torch.equal(a, b) for a, b in zip(data, now, strict=True))


def _tensors(data: LabelledData) -> tuple[torch.Tensor, torch.Tensor]:
    return data.features, data.labels


@pytest.mark.parametrize("name", NAMES)
def test_masked_entries_stay_exactly_zero(name: str, setup: Setup) -> None:
    mask = half_mask(setup.model)
    result = _method(name).unlearn(
        model=setup.model, forget=setup.forget, retain=setup.retain, mask=mask
    )
    params = dict(result.model.named_parameters())
    for key, kept in mask.items():
        pruned = params[key].detach()[kept == 0]
        # bitwise +0.0: the int view of +0.0 is 0
        assert torch.equal(pruned.view(torch.int32), torch.zeros_like(pruned, dtype=torch.int32))
    assert result.evidence["mask_repaired_entries"] == 0.0  # the method honoured it itself
    changed = sum(
        int((params[k].detach() != p)[mask[k] == 1].sum())
        for k, p in model_parameters(setup.model).items()
    )
    assert changed > 0


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_model(name: str, setup: Setup) -> None:
    method = _method(name)
    first = method.unlearn(model=setup.model, forget=setup.forget, retain=setup.retain, seed=3)
    second = method.unlearn(model=setup.model, forget=setup.forget, retain=setup.retain, seed=3)
    assert_models_equal(first.model, second.model)


@pytest.mark.parametrize("name", NAMES)
def test_config_round_trips(name: str) -> None:
    cls = METHODS.get(name)
    config = FAST.get(name) or cls.config_class()
    assert cls.config_class.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError):
        cls.config_class.from_dict({**config.to_dict(), "kind": "something_else"})
    assert cls.paper and cls.__module__.startswith("obliviate.")


def _bad_cases(setup: Setup) -> dict[str, tuple[LabelledData, LabelledData]]:
    wide = LabelledData(
        features=torch.randn(4, FEATURES + 3), labels=torch.zeros(4, dtype=torch.int64)
    )
    out_of_range = LabelledData(
        features=setup.forget.features, labels=torch.full((len(setup.forget),), CLASSES)
    )
    empty_retain = LabelledData(
        features=torch.zeros(0, FEATURES), labels=torch.zeros(0, dtype=torch.int64)
    )
    return {
        "shape": (
            wide,
            LabelledData(
                features=torch.randn(9, FEATURES + 3), labels=torch.zeros(9, dtype=torch.int64)
            ),
        ),
        "labels": (out_of_range, setup.retain),
        "whole training set": (setup.forget, empty_retain),
        "forget vs retain shape": (setup.forget, wide),
    }


@pytest.mark.parametrize(
    "case", ["shape", "labels", "whole training set", "forget vs retain shape"]
)
@pytest.mark.parametrize("name", NAMES)
def test_bad_data_raise_and_leave_the_model_untouched(name: str, case: str, setup: Setup) -> None:
    forget, retain = _bad_cases(setup)[case]
    before = model_parameters(setup.model)
    with pytest.raises(DataError) as info:
        _method(name).unlearn(model=setup.model, forget=forget, retain=retain)
    assert isinstance(info.value, ObliviateError)
    hint = {
        "shape": "do not fit the model",
        "labels": "labels must lie in",
        "whole training set": "whole training set",
        "forget vs retain shape": "same training set",
    }[case]
    assert hint in str(info.value)
    after = model_parameters(setup.model)
    assert all(torch.equal(before[k], after[k]) for k in before)
