"""Population membership-inference attacks used as unlearning evidence.

* :func:`svc_mia_efficacy` is Jia et al.'s "MIA-Efficacy" exactly as published
  ("Model Sparsity Can Simplify Machine Unlearning", NeurIPS 2023; ``evaluation/SVC_MIA.py``
  and ``main_forget.py`` of OPTML-Group/Unlearn-Sparse, reported in SalUn, ICLR 2024): an
  ``SVC(C=3, gamma="auto", kernel="rbf")`` on one scalar feature, the softmax probability of
  the true label, trained with the first |D_test| retain samples (dataset order) as members
  and the whole test set as non-members; the score is the percentage of forget samples it
  predicts to be non-members (TN / |D_f| x 100). Use it to compare with their tables, never as
  a privacy guarantee: it is a weak population attack.
* :func:`svc_mia_balanced` is the same SVC on a class-stratified, equal-size member and
  non-member sample (the variant of ``torchunlearn``'s ``MIA_SVC``), so the SVC cannot learn
  the retain/test class mix instead of membership.
* :func:`threshold_mia` holds the per-class threshold attacks of Song & Mittal ("Systematic
  Evaluation of Privacy Risks of Machine Learning Models", USENIX Security 2021):
  correctness, confidence, entropy and modified entropy (the latter implemented as defined,
  not as mis-coded in ``SVC_MIA.py``). Thresholds are fitted per class on retain (members)
  against test (non-members) to maximise (TPR + TNR) / 2.

For every attack here the good value is the retrained reference's value, not an extreme: a
model retrained without the forget set still "looks like a member" on easy forget samples
(Retrain's MIA-Efficacy is about 13 in SalUn's CIFAR-10 table, not 100).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.metrics import roc_auc_score
from sklearn.svm import SVC

from obliviate.errors import ConfigError, DataError
from obliviate.evaluation._arrays import check_pair
from obliviate.evaluation.metrics import (
    modified_entropy,
    prediction_entropy,
    true_class_confidence,
)

__all__ = [
    "THRESHOLD_SCORES",
    "ThresholdMIAResult",
    "membership_auc",
    "membership_score",
    "svc_mia_balanced",
    "svc_mia_efficacy",
    "svc_mia_training_privacy",
    "threshold_mia",
]

FloatArray = npt.NDArray[np.float64]


def _neg_entropy(probs: FloatArray, labels: npt.NDArray[np.int64]) -> FloatArray:
    return -prediction_entropy(probabilities=probs)


def _neg_m_entropy(probs: FloatArray, labels: npt.NDArray[np.int64]) -> FloatArray:
    return -modified_entropy(probabilities=probs, labels=labels)


def _confidence(probs: FloatArray, labels: npt.NDArray[np.int64]) -> FloatArray:
    return true_class_confidence(probabilities=probs, labels=labels)


def _correctness(probs: FloatArray, labels: npt.NDArray[np.int64]) -> FloatArray:
    return np.asarray(np.argmax(probs, axis=1) == labels, dtype=np.float64)


#: Membership scores, oriented so that a higher value means "more likely a member".
THRESHOLD_SCORES: dict[str, Callable[[FloatArray, npt.NDArray[np.int64]], FloatArray]] = {
    "confidence": _confidence,
    "correctness": _correctness,
    "entropy": _neg_entropy,
    "modified_entropy": _neg_m_entropy,
}


def membership_score(*, kind: str, probabilities: Any, labels: Any) -> FloatArray:
    """A per-sample membership score (higher = more member-like) of the given ``kind``.

    Raises:
        ConfigError: ``kind`` is not one of :data:`THRESHOLD_SCORES`.
    """
    if kind not in THRESHOLD_SCORES:
        raise ConfigError(f"kind must be one of {sorted(THRESHOLD_SCORES)}; got {kind!r}.")
    probs, labs = check_pair(probabilities, labels, name=kind, allow_empty=True)
    return THRESHOLD_SCORES[kind](probs, labs)


def _svc_non_member_rate(member: FloatArray, non_member: FloatArray, target: FloatArray) -> float:
    features = np.concatenate([member, non_member]).astype(np.float32).reshape(-1, 1)
    targets = np.concatenate([np.ones(len(member)), np.zeros(len(non_member))])
    clf = SVC(C=3, gamma="auto", kernel="rbf")
    clf.fit(features, targets)
    predicted = clf.predict(target.astype(np.float32).reshape(-1, 1))
    return float(np.mean(predicted == 0) * 100.0)


def svc_mia_efficacy(
    *,
    retain_probs: Any,
    retain_labels: Any,
    test_probs: Any,
    test_labels: Any,
    forget_probs: Any,
    forget_labels: Any,
) -> float:
    """Jia et al.'s MIA-Efficacy (percent) exactly as published.

    Members are the first ``len(test)`` retain samples in the order given (pass retain in
    dataset order to match the paper), non-members the whole test set, the feature is the
    true-class probability, the classifier ``SVC(C=3, gamma="auto", kernel="rbf")``, and the
    score the share of forget samples predicted non-member. The one deviation: when the
    retain set is smaller than the test set all of it is used (the published code would fail).

    Good direction: match the retrained reference (higher is *not* better).

    Raises:
        DataError: any pair is malformed or empty, or the class counts disagree.
    """
    retain, r_labels = check_pair(retain_probs, retain_labels, name="retain")
    test, t_labels = check_pair(test_probs, test_labels, name="test")
    forget, f_labels = check_pair(forget_probs, forget_labels, name="forget")
    _same_classes(retain, test, forget)
    n_in = min(len(test), len(retain))
    member = true_class_confidence(probabilities=retain[:n_in], labels=r_labels[:n_in])
    non_member = true_class_confidence(probabilities=test, labels=t_labels)
    target = true_class_confidence(probabilities=forget, labels=f_labels)
    return _svc_non_member_rate(member, non_member, target)


def svc_mia_balanced(
    *,
    retain_probs: Any,
    retain_labels: Any,
    test_probs: Any,
    test_labels: Any,
    forget_probs: Any,
    forget_labels: Any,
    seed: int = 0,
) -> float:
    """The SVC confidence attack on a class-stratified, equal-size member/non-member sample.

    For each class c, ``min(#retain_c, #test_c)`` samples are drawn (seeded, without
    replacement) from both retain and test, so both sides have the same size and class mix.

    Good direction: match the retrained reference.

    Raises:
        DataError: malformed input, or no class occurs in both retain and test.
    """
    retain, r_labels = check_pair(retain_probs, retain_labels, name="retain")
    test, t_labels = check_pair(test_probs, test_labels, name="test")
    forget, f_labels = check_pair(forget_probs, forget_labels, name="forget")
    _same_classes(retain, test, forget)
    rng = np.random.default_rng(seed)
    members: list[npt.NDArray[np.int64]] = []
    non_members: list[npt.NDArray[np.int64]] = []
    for cls in range(retain.shape[1]):
        r_idx = np.flatnonzero(r_labels == cls)
        t_idx = np.flatnonzero(t_labels == cls)
        k = min(len(r_idx), len(t_idx))
        if k:
            members.append(rng.choice(r_idx, size=k, replace=False))
            non_members.append(rng.choice(t_idx, size=k, replace=False))
    if not members:
        raise DataError("svc_mia_balanced: no class occurs in both the retain and test sets.")
    m_idx = np.concatenate(members)
    n_idx = np.concatenate(non_members)
    member = true_class_confidence(probabilities=retain[m_idx], labels=r_labels[m_idx])
    non_member = true_class_confidence(probabilities=test[n_idx], labels=t_labels[n_idx])
    target = true_class_confidence(probabilities=forget, labels=f_labels)
    return _svc_non_member_rate(member, non_member, target)


def svc_mia_training_privacy(
    *, retain_probs: Any, retain_labels: Any, test_probs: Any, test_labels: Any
) -> float:
    """Jia et al.'s second SVC score ("training privacy"): retain-vs-test leakage, percent.

    The same SVC on true-class confidence is trained on the first half of retain (members)
    vs the first half of test (non-members), then scored on the second halves: the mean of
    TPR on members and TNR on non-members (balanced accuracy). It needs no forget set, so the
    gold-standard audit uses it after the forget set's features were purged.

    Good direction: match the retrained reference (50 means no measurable leakage).

    Raises:
        DataError: malformed input, or fewer than two samples in retain or test.
    """
    retain, r_labels = check_pair(retain_probs, retain_labels, name="retain")
    test, t_labels = check_pair(test_probs, test_labels, name="test")
    _same_classes(retain, test)
    if len(retain) < 2 or len(test) < 2:
        raise DataError("svc_mia_training_privacy needs at least two retain and two test samples.")
    r_conf = true_class_confidence(probabilities=retain, labels=r_labels)
    t_conf = true_class_confidence(probabilities=test, labels=t_labels)
    r_half, t_half = len(r_conf) // 2, len(t_conf) // 2
    features = np.concatenate([r_conf[:r_half], t_conf[:t_half]]).astype(np.float32)
    targets = np.concatenate([np.ones(r_half), np.zeros(t_half)])
    clf = SVC(C=3, gamma="auto", kernel="rbf")
    clf.fit(features.reshape(-1, 1), targets)
    tpr = np.mean(clf.predict(r_conf[r_half:].astype(np.float32).reshape(-1, 1)) == 1)
    tnr = np.mean(clf.predict(t_conf[t_half:].astype(np.float32).reshape(-1, 1)) == 0)
    return float(50.0 * (tpr + tnr))


@dataclass(frozen=True)
class ThresholdMIAResult:
    """Outcome of one Song & Mittal threshold attack.

    Attributes:
        kind: the score (correctness, confidence, entropy, modified_entropy).
        forget_non_member_rate: percent of forget samples predicted non-member (the
            MIA-Efficacy analogue). Good: match the retrained reference.
        forget_vs_test_auc: ROC AUC (percent) of the score separating forget (positive)
            from test samples; 50 means forget samples look like unseen data. Good: match
            the reference (about 50 for a model that never saw the forget set).
        shadow_accuracy: balanced accuracy (percent) of the fitted thresholds on retain vs
            test, i.e. how much the model leaks about its training set at all.
        thresholds: the per-class thresholds (NaN where a class fell back to the global one).
    """

    kind: str
    forget_non_member_rate: float
    forget_vs_test_auc: float
    shadow_accuracy: float
    thresholds: tuple[float, ...]


def _best_threshold(member: FloatArray, non_member: FloatArray) -> float:
    candidates = np.unique(np.concatenate([member, non_member]))
    m_sorted = np.sort(member)
    n_sorted = np.sort(non_member)
    tpr = 1.0 - np.searchsorted(m_sorted, candidates, side="left") / len(m_sorted)
    tnr = np.searchsorted(n_sorted, candidates, side="left") / len(n_sorted)
    return float(candidates[int(np.argmax(tpr + tnr))])


def threshold_mia(
    *,
    kind: str,
    retain_probs: Any,
    retain_labels: Any,
    test_probs: Any,
    test_labels: Any,
    forget_probs: Any,
    forget_labels: Any,
) -> ThresholdMIAResult:
    """Song & Mittal's per-class threshold attack with score ``kind``.

    A sample is predicted a member when its score is at least its class's threshold. The
    threshold maximises (TPR + TNR) / 2 on retain vs test; ties go to the smallest
    threshold. Classes missing from retain or test use a threshold fitted on all classes.
    ``correctness`` needs no fitting: correct means member.

    Raises:
        ConfigError: unknown ``kind``.
        DataError: malformed input.
    """
    if kind not in THRESHOLD_SCORES:
        raise ConfigError(f"kind must be one of {sorted(THRESHOLD_SCORES)}; got {kind!r}.")
    retain, r_labels = check_pair(retain_probs, retain_labels, name="retain")
    test, t_labels = check_pair(test_probs, test_labels, name="test")
    forget, f_labels = check_pair(forget_probs, forget_labels, name="forget")
    _same_classes(retain, test, forget)
    score = THRESHOLD_SCORES[kind]
    s_r, s_t, s_f = score(retain, r_labels), score(test, t_labels), score(forget, f_labels)
    classes = retain.shape[1]
    if kind == "correctness":
        per_class = np.full(classes, 1.0)
        fitted = tuple(1.0 for _ in range(classes))
    else:
        fallback = _best_threshold(s_r, s_t)
        per_class = np.full(classes, fallback)
        fitted_list: list[float] = []
        for cls in range(classes):
            in_c, out_c = s_r[r_labels == cls], s_t[t_labels == cls]
            if len(in_c) and len(out_c):
                per_class[cls] = _best_threshold(in_c, out_c)
                fitted_list.append(float(per_class[cls]))
            else:
                fitted_list.append(float("nan"))
        fitted = tuple(fitted_list)
    member_r = s_r >= per_class[r_labels]
    member_t = s_t >= per_class[t_labels]
    member_f = s_f >= per_class[f_labels]
    shadow = 50.0 * (float(np.mean(member_r)) + float(np.mean(~member_t)))
    return ThresholdMIAResult(
        kind=kind,
        forget_non_member_rate=float(np.mean(~member_f) * 100.0),
        forget_vs_test_auc=membership_auc(member_scores=s_f, non_member_scores=s_t),
        shadow_accuracy=shadow,
        thresholds=fitted,
    )


def membership_auc(*, member_scores: Any, non_member_scores: Any) -> float:
    """ROC AUC in percent of scores meant to rank members above non-members (ties count 1/2).

    Raises:
        DataError: either side is empty or not finite.
    """
    pos = np.asarray(member_scores, dtype=np.float64).ravel()
    neg = np.asarray(non_member_scores, dtype=np.float64).ravel()
    if len(pos) == 0 or len(neg) == 0:
        raise DataError("membership_auc needs at least one member and one non-member score.")
    if not (np.all(np.isfinite(pos)) and np.all(np.isfinite(neg))):
        raise DataError("membership_auc: scores must be finite.")
    labels = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    return float(roc_auc_score(labels, np.concatenate([pos, neg])) * 100.0)


def _same_classes(*arrays: FloatArray) -> None:
    widths = {a.shape[1] for a in arrays}
    if len(widths) != 1:
        raise DataError(
            "retain, test and forget probabilities must have the same number of classes; "
            f"got {sorted(widths)}."
        )
