"""The attack registry: every membership-inference attack as ``<Name>Config`` + class.

Population attacks (:class:`PopulationAttack`) read one model's probabilities on the forget,
retain and test sets and are run on both the evaluated model and its retrained reference.
Ensemble attacks (:class:`EnsembleAttack`) read cached per-model outputs of a retrained and
an unlearned ensemble and judge the *method*; their target is the value two retrained
ensembles would give (50 for an AUC, 1 for the competition's forgetting quality).

For every metric the good value is the reference's, not an extreme.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy.typing as npt

from obliviate.errors import ConfigError
from obliviate.evaluation.competition import competition_score, forgetting_quality
from obliviate.evaluation.ensemble import EnsembleOutputs
from obliviate.evaluation.lira import ulira
from obliviate.evaluation.mia import (
    svc_mia_balanced,
    svc_mia_efficacy,
    svc_mia_training_privacy,
    threshold_mia,
)
from obliviate.registry import Registry

__all__ = [
    "ATTACKS",
    "Attack",
    "AttackInputs",
    "CompetitionAttack",
    "CompetitionConfig",
    "EnsembleAttack",
    "NoConfig",
    "PopulationAttack",
    "SVCBalanced",
    "SVCJia",
    "SVCTrainingPrivacy",
    "ThresholdAttack",
    "ThresholdConfig",
    "ULira",
    "ULiraConfig",
]

Array = npt.NDArray[Any]


@dataclass(frozen=True, eq=False)
class AttackInputs:
    """One model's probabilities and labels on the three splits (forget may be absent)."""

    retain_probs: Array
    retain_labels: Array
    test_probs: Array
    test_labels: Array
    forget_probs: Array | None = None
    forget_labels: Array | None = None


@dataclass(frozen=True)
class NoConfig:
    """Configuration of an attack without options."""

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (empty)."""
        return {}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NoConfig:
        """Inverse of :meth:`to_dict`; any key is a ConfigError."""
        if data:
            raise ConfigError(f"this attack takes no options; got {sorted(data)}.")
        return cls()


class Attack(ABC):
    """Base of every attack; ``metrics`` maps each reported metric to its description."""

    name: ClassVar[str]
    config_class: ClassVar[type[Any]] = NoConfig
    metrics: ClassVar[Mapping[str, str]]
    needs_forget: ClassVar[bool] = True

    def __init__(self, config: Any = None) -> None:
        config = self.config_class() if config is None else config
        if not isinstance(config, self.config_class):
            raise ConfigError(
                f"attack {self.name!r} needs a {self.config_class.__name__}; "
                f"got {type(config).__name__}."
            )
        self.config = config


class PopulationAttack(Attack):
    """An attack on one model's outputs; run on the model and on its reference."""

    @abstractmethod
    def run(self, *, inputs: AttackInputs, seed: int) -> dict[str, float]:
        """Metric name -> value (percent)."""


class EnsembleAttack(Attack):
    """An attack on cached ensembles; ``ideal`` holds each metric's retrain-vs-retrain value."""

    ideal: ClassVar[Mapping[str, float]]

    @abstractmethod
    def run_ensemble(self, *, ensemble: EnsembleOutputs, seed: int) -> dict[str, float]:
        """Metric name -> value."""

    def null_reference(self, *, ensemble: EnsembleOutputs) -> dict[str, float]:
        """Reference values measured from the retrained ensemble (default: none, use
        :attr:`ideal`)."""
        return {}


ATTACKS: Registry[type[Attack]] = Registry("attack")


def _forget(inputs: AttackInputs) -> tuple[Array, Array]:
    if inputs.forget_probs is None or inputs.forget_labels is None:
        raise ConfigError("this attack needs a forget set; pass forget= to evaluate().")
    return inputs.forget_probs, inputs.forget_labels


@ATTACKS.register("svc_jia")
class SVCJia(PopulationAttack):
    """Jia et al.'s MIA-Efficacy exactly as published (see :func:`svc_mia_efficacy`)."""

    name = "svc_jia"
    metrics: ClassVar[Mapping[str, str]] = {
        "MIA-Efficacy": "Jia et al.'s SVC confidence attack as published: % of forget "
        "samples predicted non-member. Match the reference (higher is not better)."
    }

    def run(self, *, inputs: AttackInputs, seed: int) -> dict[str, float]:
        f_probs, f_labels = _forget(inputs)
        value = svc_mia_efficacy(
            retain_probs=inputs.retain_probs,
            retain_labels=inputs.retain_labels,
            test_probs=inputs.test_probs,
            test_labels=inputs.test_labels,
            forget_probs=f_probs,
            forget_labels=f_labels,
        )
        return {"MIA-Efficacy": value}


@ATTACKS.register("svc_balanced")
class SVCBalanced(PopulationAttack):
    """The SVC attack on a class-stratified, balanced member/non-member sample."""

    name = "svc_balanced"
    metrics: ClassVar[Mapping[str, str]] = {
        "MIA-Efficacy (balanced)": "SVC confidence attack on class-stratified equal-size "
        "retain/test samples: % of forget predicted non-member. Match the reference."
    }

    def run(self, *, inputs: AttackInputs, seed: int) -> dict[str, float]:
        f_probs, f_labels = _forget(inputs)
        value = svc_mia_balanced(
            retain_probs=inputs.retain_probs,
            retain_labels=inputs.retain_labels,
            test_probs=inputs.test_probs,
            test_labels=inputs.test_labels,
            forget_probs=f_probs,
            forget_labels=f_labels,
            seed=seed,
        )
        return {"MIA-Efficacy (balanced)": value}


@ATTACKS.register("svc_training_privacy")
class SVCTrainingPrivacy(PopulationAttack):
    """Jia et al.'s retain-vs-test SVC ("training privacy"); needs no forget set."""

    name = "svc_training_privacy"
    needs_forget = False
    metrics: ClassVar[Mapping[str, str]] = {
        "MIA retain-vs-test": "Balanced accuracy (%) of the SVC telling retain from test "
        "samples; how much the model leaks about its training data. Match the reference."
    }

    def run(self, *, inputs: AttackInputs, seed: int) -> dict[str, float]:
        value = svc_mia_training_privacy(
            retain_probs=inputs.retain_probs,
            retain_labels=inputs.retain_labels,
            test_probs=inputs.test_probs,
            test_labels=inputs.test_labels,
        )
        return {"MIA retain-vs-test": value}


@dataclass(frozen=True)
class ThresholdConfig:
    """Which Song & Mittal score the threshold attack uses."""

    kind: str = "confidence"

    def __post_init__(self) -> None:
        kinds = ("confidence", "correctness", "entropy", "modified_entropy")
        if self.kind not in kinds:
            raise ConfigError(f"ThresholdConfig.kind must be one of {kinds}; got {self.kind!r}.")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ThresholdConfig:
        """Inverse of :meth:`to_dict`."""
        unknown = sorted(set(data) - {"kind"})
        if unknown:
            raise ConfigError(f"unknown ThresholdConfig fields {unknown}; valid: ['kind'].")
        return cls(**data)


class ThresholdAttack(PopulationAttack):
    """Song & Mittal's per-class threshold attack (see :func:`threshold_mia`)."""

    config_class = ThresholdConfig
    metrics: ClassVar[Mapping[str, str]] = {}

    def run(self, *, inputs: AttackInputs, seed: int) -> dict[str, float]:
        f_probs, f_labels = _forget(inputs)
        kind = self.config.kind
        result = threshold_mia(
            kind=kind,
            retain_probs=inputs.retain_probs,
            retain_labels=inputs.retain_labels,
            test_probs=inputs.test_probs,
            test_labels=inputs.test_labels,
            forget_probs=f_probs,
            forget_labels=f_labels,
        )
        return {
            f"MIA {kind} (non-member %)": result.forget_non_member_rate,
            f"MIA {kind} (forget-vs-test AUC)": result.forget_vs_test_auc,
        }


def _threshold_variant(kind: str) -> type[ThresholdAttack]:
    def __init__(self: ThresholdAttack, config: Any = None) -> None:
        ThresholdAttack.__init__(self, ThresholdConfig(kind=kind) if config is None else config)

    metrics = {
        f"MIA {kind} (non-member %)": f"Song & Mittal per-class {kind} threshold: % of "
        "forget samples predicted non-member. Match the reference.",
        f"MIA {kind} (forget-vs-test AUC)": f"ROC AUC (%) of the {kind} score ranking "
        "forget above test samples; about 50 for a model that never saw them. Match "
        "the reference.",
    }
    cls = type(
        f"Threshold{kind.title().replace('_', '')}",
        (ThresholdAttack,),
        {"name": f"threshold_{kind}", "metrics": metrics, "__init__": __init__},
    )
    return ATTACKS.add(f"threshold_{kind}", cls)  # type: ignore[return-value]


for _kind in ("correctness", "confidence", "entropy", "modified_entropy"):
    _threshold_variant(_kind)


@dataclass(frozen=True)
class ULiraConfig:
    """Options of the U-LiRA attack: ``global_variance`` None picks it by ensemble size."""

    global_variance: bool | None = None

    def __post_init__(self) -> None:
        if self.global_variance is not None and not isinstance(self.global_variance, bool):
            raise ConfigError(
                f"ULiraConfig.global_variance must be true, false or null; "
                f"got {self.global_variance!r}."
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ULiraConfig:
        """Inverse of :meth:`to_dict`."""
        unknown = sorted(set(data) - {"global_variance"})
        if unknown:
            raise ConfigError(f"unknown ULiraConfig fields {unknown}.")
        return cls(**data)


@ATTACKS.register("ulira")
class ULira(EnsembleAttack):
    """The per-example likelihood-ratio attack (see :mod:`obliviate.evaluation.lira`)."""

    name = "ulira"
    config_class = ULiraConfig
    metrics: ClassVar[Mapping[str, str]] = {
        "U-LiRA AUC": "ROC AUC (%) of the leave-one-out per-example likelihood ratio telling "
        "unlearned from retrained models; 50 = indistinguishable (the target).",
    }
    ideal: ClassVar[Mapping[str, float]] = {"U-LiRA AUC": 50.0}

    def run_ensemble(self, *, ensemble: EnsembleOutputs, seed: int) -> dict[str, float]:
        result = ulira(
            unlearned_conf=ensemble.confidences("unlearned"),
            retrained_conf=ensemble.confidences("retrained"),
            global_variance=self.config.global_variance,
        )
        return {"U-LiRA AUC": result.auc}


@dataclass(frozen=True)
class CompetitionConfig:
    """The competition metric's delta."""

    delta: float = 1e-5

    def __post_init__(self) -> None:
        if not isinstance(self.delta, int | float) or not 0 <= self.delta < 1:
            raise ConfigError(f"CompetitionConfig.delta must lie in [0, 1); got {self.delta!r}.")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CompetitionConfig:
        """Inverse of :meth:`to_dict`."""
        unknown = sorted(set(data) - {"delta"})
        if unknown:
            raise ConfigError(f"unknown CompetitionConfig fields {unknown}.")
        return cls(**data)


@ATTACKS.register("competition")
class CompetitionAttack(EnsembleAttack):
    """The NeurIPS 2023 competition score (see :mod:`obliviate.evaluation.competition`)."""

    name = "competition"
    config_class = CompetitionConfig
    metrics: ClassVar[Mapping[str, str]] = {
        "Forgetting quality F": "NeurIPS 2023 per-example epsilon buckets averaged over the "
        "forget set, in [0, 1], computed on half of each ensemble; the reference is the "
        "same statistic for the other half of the retrained ensemble against the first "
        "(retrain vs retrain, the noise floor of a small ensemble). Match the reference.",
        "Competition score": "F (all models) x (RA_U / RA_R) x (TA_U / TA_R) as published; "
        "ideal 1, bounded by ensemble size.",
    }
    ideal: ClassVar[Mapping[str, float]] = {"Forgetting quality F": 1.0, "Competition score": 1.0}

    def null_reference(self, *, ensemble: EnsembleOutputs) -> dict[str, float]:
        """Retrain-vs-retrain values at the same size the attack's value uses."""
        _, half_r, null_r = self._halves(ensemble)
        f, _ = forgetting_quality(
            unlearned_conf=null_r, retrained_conf=half_r, delta=self.config.delta
        )
        return {"Forgetting quality F": f}

    @staticmethod
    def _halves(
        ensemble: EnsembleOutputs,
    ) -> tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any]]:
        u, r = ensemble.confidences("unlearned"), ensemble.confidences("retrained")
        h = min(len(u), len(r) // 2)
        if h < 3:
            raise ConfigError(
                "the competition attack needs at least 6 retrained models (two halves of 3) "
                f"to measure its retrain-vs-retrain reference; got {len(r)}."
            )
        return u[:h], r[:h], r[h : 2 * h]

    def run_ensemble(self, *, ensemble: EnsembleOutputs, seed: int) -> dict[str, float]:
        score = competition_score(
            unlearned_conf=ensemble.confidences("unlearned"),
            retrained_conf=ensemble.confidences("retrained"),
            unlearned_ra=ensemble.unlearned_ra,
            retrained_ra=ensemble.retrained_ra,
            unlearned_ta=ensemble.unlearned_ta,
            retrained_ta=ensemble.retrained_ta,
            delta=self.config.delta,
        )
        half_u, half_r, _ = self._halves(ensemble)
        half_f, _ = forgetting_quality(
            unlearned_conf=half_u, retrained_conf=half_r, delta=self.config.delta
        )
        return {"Forgetting quality F": half_f, "Competition score": score.score}
