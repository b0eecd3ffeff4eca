"""The front door: :func:`evaluate` measures what a forget did, against a retrained reference.

Utility follows Jia et al. ("Model Sparsity Can Simplify Machine Unlearning", NeurIPS 2023)
and SalUn (Fan et al., ICLR 2024): UA = 100 - forget accuracy, RA, TA, MIA-Efficacy, run time,
each next to the retrained reference's value and the absolute gap, and Avg. Gap (their
"Disparity Ave.") = mean |gap| over UA, RA, TA and MIA-Efficacy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from obliviate.errors import ConfigError, DataError
from obliviate.evaluation.attacks import (
    ATTACKS,
    Attack,
    AttackInputs,
    EnsembleAttack,
    PopulationAttack,
)
from obliviate.evaluation.data import EvalData
from obliviate.evaluation.ensemble import EnsembleOutputs
from obliviate.evaluation.metrics import accuracy, avg_gap, true_class_confidence
from obliviate.evaluation.proba import ProbaFn
from obliviate.evaluation.report import (
    AVG_GAP_METRICS,
    LOWER,
    MATCH,
    EvaluationReport,
    MetricValue,
    metric_value,
)

__all__ = ["DEFAULT_ATTACKS", "evaluate"]

#: Cheap population attacks run by default; add "ulira" and "competition" with an ensemble.
DEFAULT_ATTACKS: tuple[str, ...] = (
    "svc_jia",
    "svc_balanced",
    "svc_training_privacy",
    "threshold_correctness",
    "threshold_confidence",
    "threshold_entropy",
    "threshold_modified_entropy",
)

_DESCRIPTIONS = {
    "UA": "Unlearning accuracy, 100 - accuracy on the forget set (%). Match the reference: "
    "for random forgetting the retrained model's UA is about its test error, not 100.",
    "RA": "Remaining accuracy on the retain set (%). Match the reference.",
    "TA": "Test accuracy (%). Match the reference.",
    "RTE (s)": "Run time of the forget, wall-clock seconds. Lower; the reference is retraining.",
    "Sample passes": "Samples x epochs processed by the forget. Lower; reference is retraining.",
}


def _probs(fn: ProbaFn, data: EvalData, what: str) -> np.ndarray[Any, Any]:
    out = np.asarray(fn(data.features), dtype=np.float32)
    if out.ndim != 2 or out.shape[0] != len(data):
        raise DataError(
            f"the probability function returned shape {out.shape} for {len(data)} {what} "
            "samples; it must return (N, C) probabilities."
        )
    return out


def _resolve(attacks: Sequence[str | Attack]) -> list[Attack]:
    resolved: list[Attack] = []
    for item in attacks:
        resolved.append(item if isinstance(item, Attack) else ATTACKS.get(item)())
    return resolved


def evaluate(
    *,
    model: ProbaFn,
    forget: EvalData | None,
    retain: EvalData,
    test: EvalData,
    reference: ProbaFn | None = None,
    seconds: float | None = None,
    sample_passes: int | None = None,
    reference_seconds: float | None = None,
    reference_sample_passes: int | None = None,
    attacks: Sequence[str | Attack] = DEFAULT_ATTACKS,
    ensemble: EnsembleOutputs | None = None,
    seed: int = 0,
) -> EvaluationReport:
    """Evaluates ``model`` (and ``reference``, the model retrained without ``forget``).

    Args:
        model: the model after the forget, as a probability function.
        forget: the forgotten samples (``None`` when they are no longer available: UA and
            forget-based attacks are then skipped).
        retain: retained training samples; pass them in dataset order, because Jia et al.'s
            SVC takes the first ``len(test)`` of them as members.
        test: held-out samples.
        reference: the retrained reference; without it values have no gap.
        seconds / sample_passes: cost of the forget; ``reference_*`` the cost of retraining.
        attacks: attack names from :data:`ATTACKS` or attack instances.
        ensemble: cached ensemble outputs, needed by "ulira" and "competition".
        seed: the evaluation seed (only randomised attacks use it).

    Raises:
        ConfigError: an ensemble attack without ``ensemble``, or a forget-set attack
            without ``forget``.
        UnknownNameError: an unknown attack name.
        DataError: malformed data or probabilities.
    """
    chosen = _resolve(attacks)
    for attack in chosen:
        if isinstance(attack, EnsembleAttack) and ensemble is None:
            raise ConfigError(
                f"attack {attack.name!r} needs ensemble outputs; build them with "
                "obliviate.evaluation.build_ensemble and pass ensemble=."
            )
        if attack.needs_forget and forget is None:
            raise ConfigError(
                f"attack {attack.name!r} needs the forget set; pass forget= or drop it."
            )
    sides: dict[str, AttackInputs] = {}
    confidences: dict[str, np.ndarray[Any, Any]] = {}
    for side, fn in (("model", model), ("reference", reference)):
        if fn is None:
            continue
        r_probs, t_probs = _probs(fn, retain, "retain"), _probs(fn, test, "test")
        f_probs = _probs(fn, forget, "forget") if forget is not None else None
        sides[side] = AttackInputs(
            retain_probs=r_probs,
            retain_labels=retain.labels,
            test_probs=t_probs,
            test_labels=test.labels,
            forget_probs=f_probs,
            forget_labels=None if forget is None else forget.labels,
        )
        splits = [("retain", r_probs, retain), ("test", t_probs, test)]
        if forget is not None and f_probs is not None:
            splits.insert(0, ("forget", f_probs, forget))
        for split, probs, data in splits:
            confidences[f"{side}/{split}"] = true_class_confidence(
                probabilities=probs, labels=data.labels
            )

    values: dict[str, dict[str, float]] = {side: {} for side in sides}
    for side, inputs in sides.items():
        if inputs.forget_probs is not None:
            values[side]["UA"] = 100.0 - accuracy(
                probabilities=inputs.forget_probs, labels=inputs.forget_labels
            )
        values[side]["RA"] = accuracy(probabilities=inputs.retain_probs, labels=retain.labels)
        values[side]["TA"] = accuracy(probabilities=inputs.test_probs, labels=test.labels)
    descriptions = dict(_DESCRIPTIONS)
    metrics: list[MetricValue] = []

    def add(name: str, value: float, ref: float | None, good: str) -> None:
        metrics.append(
            metric_value(
                name=name, value=value, reference=ref, good=good, description=descriptions[name]
            )
        )

    for name in ("UA", "RA", "TA"):
        if name in values["model"]:
            add(name, values["model"][name], values.get("reference", {}).get(name), MATCH)
    for attack in chosen:
        descriptions.update(attack.metrics)
        if isinstance(attack, PopulationAttack):
            own = attack.run(inputs=sides["model"], seed=seed)
            ref_values = (
                attack.run(inputs=sides["reference"], seed=seed) if "reference" in sides else {}
            )
            for name, value in own.items():
                add(name, value, ref_values.get(name), MATCH)
        elif isinstance(attack, EnsembleAttack) and ensemble is not None:
            nulls = attack.null_reference(ensemble=ensemble)
            for name, value in attack.run_ensemble(ensemble=ensemble, seed=seed).items():
                add(name, value, nulls.get(name, attack.ideal.get(name)), MATCH)
    if seconds is not None:
        add("RTE (s)", float(seconds), reference_seconds, LOWER)
    if sample_passes is not None:
        add("Sample passes", float(sample_passes), reference_sample_passes, LOWER)

    gaps = [m.gap for m in metrics if m.name in AVG_GAP_METRICS and m.gap is not None]
    details: Mapping[str, Any] = {
        "forget": 0 if forget is None else len(forget),
        "retain": len(retain),
        "test": len(test),
        "attacks": [a.name for a in chosen],
        "ensemble_models": None if ensemble is None else int(ensemble.unlearned_probs.shape[0]),
    }
    return EvaluationReport(
        metrics=tuple(metrics),
        avg_gap=avg_gap(gaps) if gaps else None,
        seed=seed,
        confidences=confidences,
        details=details,
    )
