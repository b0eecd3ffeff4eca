"""The NeurIPS 2023 Machine Unlearning competition's forgetting score.

After Triantafillou et al. (``google-deepmind/unlearning_evaluation``, ``metric.py``; the
findings paper is arXiv 2406.09073). For every forget example, the logit-scaled confidence
``log p_y - log sum_{c!=y} p_c`` under N unlearned models and N retrained-from-scratch models
forms two empirical distributions. Threshold rules that try to tell them apart give false
positive and negative rates; the best rule's (epsilon, delta) lower bound

    eps = max( ln(1 - delta - FPR) - ln FNR , ln(1 - delta - FNR) - ln FPR )

is bucketed into points 2^-floor(eps / 0.5) (0 beyond ceil(ln(N - 1))), and the forgetting
quality F is their mean over forget examples, in [0, 1]; 1 means no example's unlearned
distribution can be told from the retrained one. The final score multiplies F by the
retain- and test-accuracy ratios (unlearned / retrained).

Attack power grows with N: with N models per side the smallest non-zero rate is 1/N, so a
finite epsilon can never exceed about ln(N - 1). With 8 models every imperfectly separated
example still earns at least 2^-3 points; with 512 the published scale reaches 2^-13. A
score computed with a small ensemble is therefore an *upper bound* on what a large one would
give (see ``docs/evaluation.md`` and the power test).

The threshold grid (100 thresholds per unit of confidence over the pooled range, at most
2,000) and the two-sided interval rules (an interval as wide as the narrower distribution's
range, slid over the same grid) are our reading of the published algorithm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from obliviate.errors import ConfigError, DataError

__all__ = [
    "CompetitionScore",
    "competition_score",
    "epsilon_points",
    "forgetting_quality",
    "per_example_epsilon",
]

EPSILON_CAP = 50.0
_MAX_GRID = 2000


def _rates_eps(fpr: npt.NDArray[np.float64], fnr: npt.NDArray[np.float64], delta: float) -> float:
    both_zero = (fpr == 0) & (fnr == 0)
    if np.any(both_zero):
        return math.inf
    keep = (fpr > 0) & (fnr > 0)
    if not np.any(keep):
        return 0.0
    f, n = fpr[keep], fnr[keep]
    with np.errstate(divide="ignore", invalid="ignore"):
        eps1 = np.log(np.clip(1.0 - delta - f, 0.0, None)) - np.log(n)
        eps2 = np.log(np.clip(1.0 - delta - n, 0.0, None)) - np.log(f)
    best = np.nanmax(np.maximum(eps1, eps2))
    return float(max(best, 0.0)) if np.isfinite(best) else 0.0


def per_example_epsilon(
    *, unlearned: Any, retrained: Any, delta: float = 1e-5, resolution: int = 100
) -> float:
    """The empirical epsilon for one example from its confidences under both ensembles.

    Raises:
        DataError: either side has fewer than two values, or values are not finite.
    """
    u = np.asarray(unlearned, dtype=np.float64).ravel()
    r = np.asarray(retrained, dtype=np.float64).ravel()
    if len(u) < 2 or len(r) < 2 or not (np.all(np.isfinite(u)) and np.all(np.isfinite(r))):
        raise DataError("per_example_epsilon needs at least two finite values per ensemble.")
    pos, neg = (u, r) if np.median(u) >= np.median(r) else (r, u)
    range_u, range_r = np.ptp(u), np.ptp(r)
    narrow, wide = min(range_u, range_r), max(range_u, range_r)
    if wide == 0.0:
        return 0.0 if u[0] == r[0] else EPSILON_CAP
    if narrow / wide < 0.01:
        return EPSILON_CAP
    lo, hi = min(u.min(), r.min()), max(u.max(), r.max())
    count = int(min(max(math.ceil((hi - lo) * resolution), 2), _MAX_GRID))
    grid = np.linspace(lo, hi, count)
    pos_s, neg_s = np.sort(pos), np.sort(neg)
    # single threshold: predict "pos" when conf >= t
    fnr = np.searchsorted(pos_s, grid, side="left") / len(pos_s)
    fpr = 1.0 - np.searchsorted(neg_s, grid, side="left") / len(neg_s)
    eps_single = _rates_eps(fpr, fnr, delta)
    # two thresholds: predict the narrower distribution's side inside [t, t + width]
    inner, outer = (u, r) if range_u <= range_r else (r, u)
    inner_s, outer_s = np.sort(inner), np.sort(outer)
    left, right = grid, grid + narrow
    inside_inner = (
        np.searchsorted(inner_s, right, side="right") - np.searchsorted(inner_s, left, side="left")
    ) / len(inner_s)
    inside_outer = (
        np.searchsorted(outer_s, right, side="right") - np.searchsorted(outer_s, left, side="left")
    ) / len(outer_s)
    eps_double = _rates_eps(inside_outer, 1.0 - inside_inner, delta)
    return float(min(max(eps_single, eps_double), EPSILON_CAP))


def epsilon_points(epsilon: float, *, models: int) -> float:
    """2^-floor(eps / 0.5) below ceil(ln(models - 1)), else 0 (the competition's buckets)."""
    if models < 3:
        raise ConfigError(f"models must be >= 3 to bucket epsilons; got {models!r}.")
    max_eps = math.ceil(math.log(models - 1))
    if not math.isfinite(epsilon) or epsilon >= max_eps:
        return 0.0
    return float(2.0 ** (-math.floor(epsilon / 0.5)))


def forgetting_quality(
    *, unlearned_conf: Any, retrained_conf: Any, delta: float = 1e-5
) -> tuple[float, npt.NDArray[np.float64]]:
    """F in [0, 1] and the per-example epsilons, from (models, examples) confidence arrays.

    Good direction: higher, up to the value two independent retrained ensembles give (1 in
    expectation for large ensembles).

    Raises:
        DataError: shapes disagree or an ensemble has fewer than three models.
    """
    u = np.asarray(unlearned_conf, dtype=np.float64)
    r = np.asarray(retrained_conf, dtype=np.float64)
    if u.ndim != 2 or r.ndim != 2 or u.shape[1] != r.shape[1] or u.shape[1] == 0:
        raise DataError(
            "confidences must be (models, examples) arrays over the same examples; "
            f"got {u.shape} and {r.shape}."
        )
    models = min(u.shape[0], r.shape[0])
    if models < 3:
        raise DataError(f"each ensemble needs at least 3 models; got {u.shape[0]}, {r.shape[0]}.")
    eps = np.array(
        [
            per_example_epsilon(unlearned=u[:, i], retrained=r[:, i], delta=delta)
            for i in range(u.shape[1])
        ]
    )
    points = np.array([epsilon_points(e, models=models) for e in eps])
    return float(points.mean()), eps


@dataclass(frozen=True)
class CompetitionScore:
    """The competition's score and its parts.

    Attributes:
        forgetting_quality: F in [0, 1] (higher is better, 1 = indistinguishable).
        retain_ratio: mean RA of unlearned / mean RA of retrained models.
        test_ratio: mean TA of unlearned / mean TA of retrained models.
        score: F x retain_ratio x test_ratio.
        models: ensemble size per side (bounds the attack's power, see module docs).
    """

    forgetting_quality: float
    retain_ratio: float
    test_ratio: float
    score: float
    models: int


def competition_score(
    *,
    unlearned_conf: Any,
    retrained_conf: Any,
    unlearned_ra: Any,
    retrained_ra: Any,
    unlearned_ta: Any,
    retrained_ta: Any,
    delta: float = 1e-5,
) -> CompetitionScore:
    """The full NeurIPS 2023 score from per-model forget confidences and accuracies.

    Raises:
        DataError: malformed arrays or a retrained mean accuracy of zero.
    """
    f, _ = forgetting_quality(
        unlearned_conf=unlearned_conf, retrained_conf=retrained_conf, delta=delta
    )
    ra_r, ta_r = float(np.mean(retrained_ra)), float(np.mean(retrained_ta))
    if ra_r <= 0 or ta_r <= 0:
        raise DataError("the retrained ensemble's mean accuracies must be positive.")
    retain_ratio = float(np.mean(unlearned_ra)) / ra_r
    test_ratio = float(np.mean(unlearned_ta)) / ta_r
    models = min(np.asarray(unlearned_conf).shape[0], np.asarray(retrained_conf).shape[0])
    return CompetitionScore(
        forgetting_quality=f,
        retain_ratio=retain_ratio,
        test_ratio=test_ratio,
        score=f * retain_ratio * test_ratio,
        models=int(models),
    )
