"""BadNets poisoning: the trigger lands where asked, poisoning is exact and seeded, ASR counts
only victims, and bad input is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from obliviate.data.backdoor import add_trigger, attack_success_rate, poison
from obliviate.errors import ConfigError, DataError


def _images(n: int = 20) -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 0.5, size=(n, 1, 8, 8)).astype(np.float32)


@pytest.mark.parametrize(
    ("corner", "rows", "cols"),
    [
        ("bottom_right", slice(5, 8), slice(5, 8)),
        ("top_left", slice(0, 3), slice(0, 3)),
        ("bottom_left", slice(5, 8), slice(0, 3)),
        ("top_right", slice(0, 3), slice(5, 8)),
    ],
)
def test_trigger_is_a_white_square_in_the_corner(corner: str, rows: slice, cols: slice) -> None:
    x = _images()
    out = add_trigger(x, patch=3, corner=corner)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert (out[:, :, rows, cols] == 1.0).all()
    untouched = np.ones((8, 8), dtype=bool)
    untouched[rows, cols] = False
    assert np.array_equal(out[:, 0][:, untouched], x[:, 0][:, untouched])
    assert (x <= 0.5).all()  # the input was not modified


def test_flat_rows_and_tensors_keep_their_shape_and_type() -> None:
    x = torch.from_numpy(_images().reshape(20, 64))
    out = add_trigger(x, image_shape=(8, 8))
    assert isinstance(out, torch.Tensor) and out.shape == (20, 64)
    assert bool((out.reshape(20, 8, 8)[:, -3:, -3:] == 1).all())
    with pytest.raises(DataError, match="image_shape"):
        add_trigger(x)


def test_poison_relabels_exactly_the_chosen_non_target_samples() -> None:
    x = _images(100)
    y = np.arange(100) % 4
    result = poison(features=x, labels=y, fraction=0.1, target_label=2, seed=7)
    index = result.poisoned_index
    assert len(index) == 10 and np.all(np.diff(index) > 0)
    assert (y[index] != 2).all()
    assert (result.labels[index] == 2).all()
    clean = np.setdiff1d(np.arange(100), index)
    assert np.array_equal(result.labels[clean], y[clean])
    assert np.array_equal(result.features[clean], x[clean])
    assert (result.features[index][:, :, -3:, -3:] == 1).all()
    assert np.array_equal(result.original_labels, y)
    again = poison(features=x, labels=y, fraction=0.1, target_label=2, seed=7)
    assert np.array_equal(again.poisoned_index, index)
    other = poison(features=x, labels=y, fraction=0.1, target_label=2, seed=8)
    assert not np.array_equal(other.poisoned_index, index)


def test_attack_success_rate_counts_only_non_target_images() -> None:
    labels = np.array([0, 1, 2, 2, 1])
    probs = np.eye(3)[[2, 2, 2, 0, 1]]  # images 0,1 go to the target 2; image 4 does not
    assert attack_success_rate(probabilities=probs, labels=labels, target_label=2) == (
        pytest.approx(100 * 2 / 3)
    )

    def says_target_if_triggered(features: np.ndarray) -> np.ndarray:
        hit = (features[:, 0, -3:, -3:] == 1).all(axis=(1, 2))
        return np.eye(3)[np.where(hit, 2, 0)]

    x = _images(5)
    assert attack_success_rate(
        predict_proba=says_target_if_triggered, features=x, labels=labels, target_label=2
    ) == pytest.approx(100.0)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"fraction": 0.0}, DataError, "fraction"),
        ({"fraction": 0.9}, DataError, "possible"),
        ({"target_label": -1}, DataError, "target_label"),
        ({"labels": np.zeros(3, dtype=np.int64)}, DataError, "one label per sample"),
        ({"patch": 9}, DataError, "does not fit"),
        ({"corner": "middle"}, ConfigError, "corner"),
    ],
)
def test_bad_poisoning_requests_are_refused(
    kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    args: dict[str, object] = {
        "features": _images(20),
        "labels": np.arange(20) % 2,
        "fraction": 0.2,
        "target_label": 0,
        "seed": 0,
        **kwargs,
    }
    with pytest.raises(error, match=match):
        poison(**args)  # type: ignore[arg-type]


def test_attack_success_rate_rejects_ambiguous_or_undefined_input() -> None:
    probs = np.eye(2)[[0, 1]]
    with pytest.raises(ConfigError, match="not both"):
        attack_success_rate(labels=[0, 1], target_label=1)
    with pytest.raises(DataError, match="undefined"):
        attack_success_rate(probabilities=probs, labels=[1, 1], target_label=1)
    with pytest.raises(DataError, match="probabilities must be"):
        attack_success_rate(probabilities=probs, labels=[0, 1, 0], target_label=1)
