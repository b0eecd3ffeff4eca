"""The shared contract machinery: LabelledData, the front door, validation and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from obliviate.errors import ConfigError, DataError, TrainingError, UnknownNameError
from obliviate.strategies.approximate import (
    FineTune,
    FineTuneConfig,
    GradientAscent,
    GradientAscentConfig,
    LabelledData,
    unlearn,
)
from obliviate.strategies.approximate.data import all_finite
from obliviate.testing import make_blobs, model_parameters
from tests.unit.approximate.helpers import CLASSES, trained


@pytest.mark.parametrize(
    ("features", "labels", "message"),
    [
        (torch.zeros(3), torch.zeros(3, dtype=torch.int64), "floating-point tensor of shape"),
        (torch.zeros(3, 2, dtype=torch.int64), torch.zeros(3, dtype=torch.int64), "floating"),
        (torch.zeros(3, 2), torch.zeros(3, dtype=torch.int32), "1-D int64"),
        (torch.zeros(3, 2), torch.zeros(3, 1, dtype=torch.int64), "1-D int64"),
        (torch.zeros(3, 2), torch.zeros(4, dtype=torch.int64), "3 rows but labels have 4"),
        (
            torch.tensor([[0.0, float("nan")], [1.0, 1.0]]),
            torch.zeros(2, dtype=torch.int64),
            "1 sample",
        ),
        (
            torch.tensor([[float("inf")], [1.0]]),
            torch.zeros(2, dtype=torch.int64),
            "NaN or infinite",
        ),
        (np.zeros((2, 2)), torch.zeros(2, dtype=torch.int64), "torch tensors"),
    ],
)
def test_labelled_data_rejects_malformed_input(
    features: object, labels: object, message: str
) -> None:
    with pytest.raises(DataError, match=message):
        LabelledData(features=features, labels=labels)  # type: ignore[arg-type]


def test_finite_features_whose_sum_overflows_are_accepted() -> None:
    # The finiteness check sums first; a sum that overflows must fall back to the exact check.
    big = torch.full((4, 3), 3e38)
    assert not bool(torch.isfinite(big.sum()))
    assert all_finite(big)
    assert len(LabelledData(features=big, labels=torch.zeros(4, dtype=torch.int64))) == 4
    big[2, 1] = float("-inf")
    assert not all_finite(big)
    with pytest.raises(DataError, match="1 sample"):
        LabelledData(features=big, labels=torch.zeros(4, dtype=torch.int64))


def test_labelled_data_from_arrays_and_sample_sets() -> None:
    data = LabelledData.from_arrays(features=np.ones((4, 3), dtype=np.int32), labels=[0, 1, 2, 0])
    assert data.features.dtype == torch.float32 and data.labels.dtype == torch.int64
    assert len(data) == 4 and data.sample_shape == (3,)
    samples = make_blobs(n=10, classes=2, features=5)
    from_set = LabelledData.from_sample_set(samples)
    assert len(from_set) == 10 and from_set.sample_shape == (5,)
    assert torch.equal(from_set.labels, torch.from_numpy(samples.labels))
    assert len(from_set.subset(torch.tensor([1, 3]))) == 2


def test_front_door_accepts_a_config_mapping_and_rejects_unknown_names() -> None:
    setup = trained()
    by_dict = unlearn(
        method="finetune",
        model=setup.model,
        forget=setup.forget,
        retain=setup.retain,
        config={"epochs": 1, "lr": 0.02},
    )
    by_object = FineTune(FineTuneConfig(epochs=1, lr=0.02)).unlearn(
        model=setup.model, forget=setup.forget, retain=setup.retain
    )
    assert all(
        torch.equal(a, b)
        for a, b in zip(by_dict.model.parameters(), by_object.model.parameters(), strict=True)
    )
    with pytest.raises(UnknownNameError, match="finetune"):
        unlearn(
            method="no_such_method", model=setup.model, forget=setup.forget, retain=setup.retain
        )


def test_a_config_of_the_wrong_class_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="needs a FineTuneConfig"):
        FineTune(GradientAscentConfig())


def test_num_classes_is_inferred_and_checked() -> None:
    setup = trained()
    with pytest.raises(DataError, match="outputs 3 scores per sample but num_classes is 5"):
        FineTune().unlearn(
            model=setup.model, forget=setup.forget, retain=setup.retain, num_classes=5
        )
    with pytest.raises(ConfigError, match="num_classes must be an integer"):
        FineTune().unlearn(
            model=setup.model, forget=setup.forget, retain=setup.retain, num_classes=0
        )


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"nope.weight": torch.ones(1)}, "does not have"),
        ({"net.0.weight": torch.ones(2, 2)}, "must be a tensor of shape"),
        ("not a mapping", "must map parameter names"),
    ],
)
def test_bad_masks_are_config_errors(bad: object, message: str) -> None:
    setup = trained()
    name, param = next(iter(setup.model.named_parameters()))
    if isinstance(bad, dict) and "net.0.weight" in bad:
        bad = {name: torch.ones(2, 2)}
    with pytest.raises(ConfigError, match=message):
        FineTune().unlearn(model=setup.model, forget=setup.forget, retain=setup.retain, mask=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="only 0 and 1"):
        FineTune().unlearn(
            model=setup.model,
            forget=setup.forget,
            retain=setup.retain,
            mask={name: torch.full_like(param, 0.5)},
        )


def test_bad_model_seed_and_loss_are_config_errors() -> None:
    setup = trained()
    with pytest.raises(ConfigError, match="torch.nn.Module"):
        FineTune().unlearn(model="model", forget=setup.forget, retain=setup.retain)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="seed must be an integer"):
        FineTune().unlearn(model=setup.model, forget=setup.forget, retain=setup.retain, seed=1.5)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="loss_fn must be callable"):
        FineTune().unlearn(model=setup.model, forget=setup.forget, retain=setup.retain, loss_fn=3)  # type: ignore[arg-type]
    frozen = nn.Linear(2, 2).requires_grad_(False)
    data = LabelledData(features=torch.zeros(2, 2), labels=torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ConfigError, match="no trainable parameters"):
        FineTune().unlearn(model=frozen, forget=data, retain=data)


def test_a_diverging_loss_is_a_training_error_and_the_input_model_is_untouched() -> None:
    setup = trained()
    before = model_parameters(setup.model)
    with pytest.raises(TrainingError, match="lower the learning rate"):
        GradientAscent(GradientAscentConfig(lr=1e30, epochs=5)).unlearn(
            model=setup.model, forget=setup.forget, retain=setup.retain
        )
    after = model_parameters(setup.model)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_non_finite_loss_from_the_loss_function_is_caught() -> None:
    setup = trained()

    def broken(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return outputs.sum() * float("nan")

    with pytest.raises(TrainingError, match="nan"):
        FineTune(FineTuneConfig(epochs=1)).unlearn(
            model=setup.model, forget=setup.forget, retain=setup.retain, loss_fn=broken
        )


def test_evidence_records_the_forget_set_before_and_after() -> None:
    setup = trained()
    result = GradientAscent(GradientAscentConfig(lr=0.05, epochs=5)).unlearn(
        model=setup.model, forget=setup.forget, retain=setup.retain, num_classes=CLASSES
    )
    ev = result.evidence
    assert ev["forget_size"] == len(setup.forget) and ev["retain_size"] == len(setup.retain)
    assert ev["forget_accuracy_before"] == 1.0
    assert ev["forget_loss_after"] > ev["forget_loss_before"]
    assert ev["forget_accuracy_after"] < ev["forget_accuracy_before"]
