"""Metric functions against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from obliviate.errors import ConfigError, DataError
from obliviate.evaluation import (
    accuracy,
    avg_gap,
    logit_confidence,
    modified_entropy,
    predict_proba,
    prediction_entropy,
    true_class_confidence,
)

P = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.5, 0.25, 0.25]], dtype=np.float32)
Y = np.array([0, 2, 1])


def test_accuracy_is_percent_of_argmax_hits() -> None:
    assert accuracy(probabilities=P, labels=Y) == pytest.approx(100 / 3)
    assert accuracy(probabilities=P, labels=[0, 1, 0]) == 100.0


def test_true_class_confidence_picks_the_label_column() -> None:
    assert true_class_confidence(probabilities=P, labels=Y) == pytest.approx([0.7, 0.3, 0.25])


def test_entropy_by_hand() -> None:
    out = prediction_entropy(probabilities=[[0.5, 0.5], [1.0, 0.0]])
    assert out == pytest.approx([math.log(2), 0.0])


def test_modified_entropy_by_hand() -> None:
    # row [0.7, 0.2, 0.1], y = 0: -(0.3) ln 0.7 - 0.2 ln 0.8 - 0.1 ln 0.9
    expected = -0.3 * math.log(0.7) - 0.2 * math.log(0.8) - 0.1 * math.log(0.9)
    got = modified_entropy(probabilities=P[:1], labels=[0])
    assert got == pytest.approx([expected], rel=1e-6)
    # a confidently wrong prediction has large modified entropy (unlike plain entropy)
    wrong = modified_entropy(probabilities=[[0.99, 0.01]], labels=[1])[0]
    right = modified_entropy(probabilities=[[0.99, 0.01]], labels=[0])[0]
    assert wrong > 4.0 > 0.1 > right


def test_logit_confidence_by_hand() -> None:
    got = logit_confidence(probabilities=[[0.8, 0.1, 0.1]], labels=[0])
    assert got == pytest.approx([math.log(4.0)])
    assert np.isfinite(logit_confidence(probabilities=[[1.0, 0.0]], labels=[0])).all()


def test_avg_gap_matches_jia_table() -> None:
    # FT class-wise dense in Jia et al.: (77.47 + 25.00 + 0.13 + 0.52) / 4 = 25.78
    assert avg_gap([77.47, -25.00, 0.13, 0.52]) == pytest.approx(25.78, abs=0.005)
    with pytest.raises(DataError):
        avg_gap([])


@pytest.mark.parametrize(
    ("probs", "labels", "match"),
    [
        (np.ones((2, 3)) / 3, [0, 3], "in \\[0, 2\\]"),
        (np.ones((2, 3)) / 3, [0], "2 probability rows but 1 labels"),
        (np.ones(3), [0], "\\(N, C\\)"),
        (np.array([[2.0, -1.0]]), [0], "logits"),
        (np.array([[np.nan, 1.0]]), [0], "NaN"),
        (np.ones((2, 2)) / 2, [0.5, 1.0], "integer"),
        (np.zeros((0, 2)), [], "empty"),
    ],
)
def test_bad_input_names_the_problem(probs: object, labels: object, match: str) -> None:
    with pytest.raises(DataError, match=match):
        accuracy(probabilities=probs, labels=labels)


def test_predict_proba_softmax_eval_mode_and_restores_training() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 3))
    model.train()
    x = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    a = predict_proba(model, x, batch_size=3)
    b = predict_proba(model, torch.from_numpy(x), batch_size=3)
    assert a.dtype == np.float32 and a.shape == (10, 3)
    assert np.allclose(a.sum(axis=1), 1.0, atol=1e-6)
    assert np.array_equal(a, b)  # dropout off: deterministic
    assert np.allclose(a, predict_proba(model, x), atol=1e-6)  # batching does not matter
    assert model.training
    with pytest.raises(ConfigError, match="batch_size"):
        predict_proba(model, x, batch_size=0)
