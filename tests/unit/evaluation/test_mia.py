"""Population MIAs: the published SVC protocol, the balanced variant, threshold attacks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from obliviate.errors import ConfigError, DataError
from obliviate.evaluation import (
    membership_auc,
    predict_proba,
    svc_mia_balanced,
    svc_mia_efficacy,
    svc_mia_training_privacy,
    threshold_mia,
)


def _probs(conf: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Two-class probabilities whose true-class (label 0) confidence is ``conf``."""
    c = np.asarray(conf, dtype=np.float32)
    return np.stack([c, 1 - c], axis=1), np.zeros(len(c), dtype=np.int64)


def test_svc_efficacy_counts_forget_samples_predicted_non_member() -> None:
    retain, r_y = _probs([0.95] * 40)
    test, t_y = _probs([0.40] * 40)
    members, m_y = _probs([0.95] * 10)
    outsiders, o_y = _probs([0.40] * 10)
    kw = {"retain_probs": retain, "retain_labels": r_y, "test_probs": test, "test_labels": t_y}
    assert svc_mia_efficacy(**kw, forget_probs=members, forget_labels=m_y) == 0.0
    assert svc_mia_efficacy(**kw, forget_probs=outsiders, forget_labels=o_y) == 100.0
    mixed, x_y = _probs([0.95] * 3 + [0.40])
    assert svc_mia_efficacy(**kw, forget_probs=mixed, forget_labels=x_y) == 25.0


def test_svc_efficacy_uses_only_the_first_len_test_retain_samples() -> None:
    # first 30 retain samples are confident members; the 90 after them look like 0.2.
    retain, r_y = _probs([0.95] * 30 + [0.2] * 90)
    test, t_y = _probs([0.5] * 30)
    forget, f_y = _probs([0.2] * 5)
    got = svc_mia_efficacy(
        retain_probs=retain,
        retain_labels=r_y,
        test_probs=test,
        test_labels=t_y,
        forget_probs=forget,
        forget_labels=f_y,
    )
    assert got == 100.0  # with all retain samples, 0.2 would have been "member"
    balanced = svc_mia_balanced(
        retain_probs=retain,
        retain_labels=r_y,
        test_probs=test,
        test_labels=t_y,
        forget_probs=forget,
        forget_labels=f_y,
        seed=0,
    )
    assert 0.0 <= balanced <= 100.0


def test_svc_rejects_mismatched_classes() -> None:
    retain, r_y = _probs([0.9] * 4)
    with pytest.raises(DataError, match="same number of classes"):
        svc_mia_efficacy(
            retain_probs=retain,
            retain_labels=r_y,
            test_probs=np.ones((4, 3)) / 3,
            test_labels=[0, 1, 2, 0],
            forget_probs=retain,
            forget_labels=r_y,
        )


def test_threshold_correctness_equals_ua_and_thresholds_are_fitted_per_class() -> None:
    retain = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.2, 0.8]])
    r_y = np.array([0, 0, 1, 1])
    test = np.array([[0.6, 0.4], [0.55, 0.45], [0.3, 0.7], [0.45, 0.55]])
    t_y = np.array([0, 0, 1, 1])
    forget = np.array([[0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    f_y = np.array([0, 0, 0])
    kw = dict(retain_probs=retain, retain_labels=r_y, test_probs=test, test_labels=t_y)
    corr = threshold_mia(kind="correctness", **kw, forget_probs=forget, forget_labels=f_y)
    assert corr.forget_non_member_rate == pytest.approx(100 / 3)  # one of three is wrong
    conf = threshold_mia(kind="confidence", **kw, forget_probs=forget, forget_labels=f_y)
    # class 0: members {0.9, 0.8}, non-members {0.6, 0.55} -> threshold 0.8 separates them
    assert conf.thresholds[0] == pytest.approx(0.8)
    assert conf.thresholds[1] == pytest.approx(0.8)
    assert conf.shadow_accuracy == 100.0
    assert conf.forget_non_member_rate == pytest.approx(200 / 3)  # 0.6 and 0.4 are below
    with pytest.raises(ConfigError, match="kind"):
        threshold_mia(kind="loss", **kw, forget_probs=forget, forget_labels=f_y)


def test_membership_auc() -> None:
    assert membership_auc(member_scores=[2, 3], non_member_scores=[0, 1]) == 100.0
    assert membership_auc(member_scores=[1, 1], non_member_scores=[1, 1]) == 50.0
    with pytest.raises(DataError):
        membership_auc(member_scores=[], non_member_scores=[1])


def _data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 20, generator=g)
    y = ((x[:, 0] + 1.5 * torch.randn(n, generator=g)) > 0).long()  # noisy labels
    return x, y


def _fit(x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 128), nn.ReLU(), nn.Linear(128, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model


def test_mia_auc_is_chance_for_unseen_data_and_detects_training_on_forget() -> None:
    retain_x, retain_y = _data(300, 1)
    forget_x, forget_y = _data(100, 2)
    test_x, test_y = _data(300, 3)
    never_saw = _fit(retain_x, retain_y)
    saw = _fit(torch.cat([retain_x, forget_x]), torch.cat([retain_y, forget_y]))
    results = {}
    for name, model in (("never", never_saw), ("saw", saw)):
        probs = {k: predict_proba(model, v) for k, v in (("r", retain_x), ("t", test_x))}
        probs["f"] = predict_proba(model, forget_x)
        kw = dict(
            retain_probs=probs["r"],
            retain_labels=retain_y.numpy(),
            test_probs=probs["t"],
            test_labels=test_y.numpy(),
            forget_probs=probs["f"],
            forget_labels=forget_y.numpy(),
        )
        results[name] = (
            threshold_mia(kind="modified_entropy", **kw).forget_vs_test_auc,
            svc_mia_efficacy(**kw),
            svc_mia_training_privacy(
                retain_probs=probs["r"],
                retain_labels=retain_y.numpy(),
                test_probs=probs["t"],
                test_labels=test_y.numpy(),
            ),
        )
    never_auc, never_eff, leak = results["never"]
    saw_auc, saw_eff, _ = results["saw"]
    assert abs(never_auc - 50.0) < 10.0
    assert saw_auc > 62.0
    assert saw_eff < never_eff - 30.0  # the SVC calls the memorised forget set "member"
    assert leak > 60.0  # the overfitted model leaks retain membership
