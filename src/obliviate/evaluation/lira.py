"""A U-LiRA-style per-example attack: can a likelihood ratio tell unlearned from retrained?

After Hayes, Shumailov, Triantafillou, Khalifa and Papernot, "Inexact Unlearning Needs More
Careful Evaluations to Avoid a False Sense of Privacy" (SaTML 2025, arXiv 2403.01218), with
LiRA's Gaussian fit (Carlini et al., "Membership Inference Attacks From First Principles",
S&P 2022). For each forget example, Gaussians are fitted to its logit-scaled confidence under
the unlearned models (the example was trained on, then unlearned) and under the retrained
models (never seen). Each model is then scored leave-one-out, with Gaussians fitted on all
*other* models, by the log likelihood ratio; the attack's ROC AUC over all (model, example)
pairs is reported. 50 means indistinguishable, which is the retrained reference's value.

Power grows with the ensemble: the Gaussians' means and variances are estimated from N - 1
models, so small N adds estimation noise that hides real differences. Below 16 models per
side a single variance shared by all examples is used (LiRA's "fixed variance" variant for
few shadow models), as per-example variances from a handful of models are unstable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.metrics import roc_auc_score

from obliviate.errors import DataError

__all__ = ["ULiraResult", "ulira"]

_GLOBAL_BELOW = 16
_MIN_VAR = 1e-6


@dataclass(frozen=True)
class ULiraResult:
    """Outcome of the leave-one-out U-LiRA attack.

    Attributes:
        auc: ROC AUC in percent over all (model, example) pairs; target 50.
        accuracy: balanced accuracy in percent of "log ratio > 0 means unlearned"; target 50.
        per_example_auc: AUC in percent per forget example (vulnerability varies widely).
        models: models per side.
        global_variance: whether one shared variance was used.
    """

    auc: float
    accuracy: float
    per_example_auc: npt.NDArray[np.float64]
    models: int
    global_variance: bool


def _loo_stats(
    conf: npt.NDArray[np.float64], global_variance: bool
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    n = conf.shape[0]
    total = conf.sum(axis=0, keepdims=True)
    squares = (conf**2).sum(axis=0, keepdims=True)
    mean = (total - conf) / (n - 1)
    var = ((squares - conf**2) - (n - 1) * mean**2) / max(n - 2, 1)
    var = np.maximum(var, 0.0)
    if global_variance:
        var = np.broadcast_to(var.mean(axis=1, keepdims=True), var.shape)
    return mean, np.maximum(var, _MIN_VAR)


def _log_normal(x: npt.NDArray[np.float64], mean: Any, var: Any) -> npt.NDArray[np.float64]:
    out = -0.5 * (np.log(2 * np.pi * var) + (x - mean) ** 2 / var)
    return np.asarray(out, dtype=np.float64)


def ulira(
    *, unlearned_conf: Any, retrained_conf: Any, global_variance: bool | None = None
) -> ULiraResult:
    """Runs the attack on (models, examples) logit-confidence arrays of both ensembles.

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
    if min(u.shape[0], r.shape[0]) < 3:
        raise DataError(f"each ensemble needs at least 3 models; got {u.shape[0]}, {r.shape[0]}.")
    if not (np.all(np.isfinite(u)) and np.all(np.isfinite(r))):
        raise DataError("confidences must be finite.")
    use_global = (
        min(u.shape[0], r.shape[0]) < _GLOBAL_BELOW if global_variance is None else global_variance
    )
    mu_u_loo, var_u_loo = _loo_stats(u, use_global)
    mu_r_loo, var_r_loo = _loo_stats(r, use_global)
    mu_u, var_u = u.mean(axis=0), np.maximum(u.var(axis=0, ddof=1), _MIN_VAR)
    mu_r, var_r = r.mean(axis=0), np.maximum(r.var(axis=0, ddof=1), _MIN_VAR)
    if use_global:
        var_u = np.full_like(var_u, var_u.mean())
        var_r = np.full_like(var_r, var_r.mean())
    # an unlearned model is held out of the unlearned fit; a retrained one out of its own
    score_u = _log_normal(u, mu_u_loo, var_u_loo) - _log_normal(u, mu_r, var_r)
    score_r = _log_normal(r, mu_u, var_u) - _log_normal(r, mu_r_loo, var_r_loo)
    labels = np.concatenate([np.ones(score_u.size), np.zeros(score_r.size)])
    auc = float(roc_auc_score(labels, np.concatenate([score_u.ravel(), score_r.ravel()])) * 100)
    accuracy = 50.0 * (float(np.mean(score_u > 0)) + float(np.mean(score_r <= 0)))
    per_labels = np.concatenate([np.ones(u.shape[0]), np.zeros(r.shape[0])])
    per_example = np.array(
        [
            roc_auc_score(per_labels, np.concatenate([score_u[:, i], score_r[:, i]])) * 100
            for i in range(u.shape[1])
        ]
    )
    return ULiraResult(
        auc=auc,
        accuracy=accuracy,
        per_example_auc=per_example,
        models=int(min(u.shape[0], r.shape[0])),
        global_variance=bool(use_global),
    )
