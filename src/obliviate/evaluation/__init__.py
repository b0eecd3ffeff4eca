"""Evidence that a model forgot: utility metrics, membership inference, gold-standard checks.

Every metric is reported next to the retrained reference's value and the absolute gap,
because the target of unlearning is "behave like a model that never saw the data", not
"drive forget accuracy or an attack score to an extreme".
"""

from obliviate.evaluation.attacks import (
    ATTACKS,
    Attack,
    AttackInputs,
    EnsembleAttack,
    PopulationAttack,
)
from obliviate.evaluation.audit import (
    AuditCheck,
    AuditOutcome,
    GoldStandardTolerances,
    audit_due,
    audit_records,
    run_gold_standard_audit,
)
from obliviate.evaluation.competition import (
    CompetitionScore,
    competition_score,
    forgetting_quality,
)
from obliviate.evaluation.data import EvalData, load_eval_npz, workspace_data
from obliviate.evaluation.ensemble import EnsembleConfig, EnsembleOutputs, build_ensemble
from obliviate.evaluation.evaluate import DEFAULT_ATTACKS, evaluate
from obliviate.evaluation.gold import GOLD_PREFIX, GoldReference, ensure_reference
from obliviate.evaluation.lira import ULiraResult, ulira
from obliviate.evaluation.metrics import (
    accuracy,
    avg_gap,
    logit_confidence,
    modified_entropy,
    predict_proba,
    prediction_entropy,
    true_class_confidence,
)
from obliviate.evaluation.mia import (
    ThresholdMIAResult,
    membership_auc,
    svc_mia_balanced,
    svc_mia_efficacy,
    svc_mia_training_privacy,
    threshold_mia,
)
from obliviate.evaluation.proba import ProbaFn, from_module, from_strategy
from obliviate.evaluation.render import ReportPaths, write_report
from obliviate.evaluation.report import (
    AggregateMetric,
    AggregateReport,
    EvaluationReport,
    MetricValue,
    aggregate,
)

__all__ = [
    "ATTACKS",
    "DEFAULT_ATTACKS",
    "GOLD_PREFIX",
    "AggregateMetric",
    "AggregateReport",
    "Attack",
    "AttackInputs",
    "AuditCheck",
    "AuditOutcome",
    "CompetitionScore",
    "EnsembleAttack",
    "EnsembleConfig",
    "EnsembleOutputs",
    "EvalData",
    "EvaluationReport",
    "GoldReference",
    "GoldStandardTolerances",
    "MetricValue",
    "PopulationAttack",
    "ProbaFn",
    "ReportPaths",
    "ThresholdMIAResult",
    "ULiraResult",
    "accuracy",
    "aggregate",
    "audit_due",
    "audit_records",
    "avg_gap",
    "build_ensemble",
    "competition_score",
    "ensure_reference",
    "evaluate",
    "forgetting_quality",
    "from_module",
    "from_strategy",
    "load_eval_npz",
    "logit_confidence",
    "membership_auc",
    "modified_entropy",
    "predict_proba",
    "prediction_entropy",
    "run_gold_standard_audit",
    "svc_mia_balanced",
    "svc_mia_efficacy",
    "svc_mia_training_privacy",
    "threshold_mia",
    "true_class_confidence",
    "ulira",
    "workspace_data",
    "write_report",
]
