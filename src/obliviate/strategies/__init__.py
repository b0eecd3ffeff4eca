"""Unlearning strategies: the Strategy contract and its registered implementations."""

from obliviate.strategies.base import (
    STRATEGIES,
    FitResult,
    ForgetResult,
    Guarantee,
    ModelContext,
    Prediction,
    Strategy,
)
from obliviate.strategies.exact import (
    S3T,
    SISA,
    SISPA,
    EnsembleConfig,
    OnlineEnsemble,
    Retrain,
    RetrainConfig,
    S3TConfig,
    SISAConfig,
    SISPAConfig,
)

__all__ = [
    "S3T",
    "SISA",
    "SISPA",
    "STRATEGIES",
    "EnsembleConfig",
    "FitResult",
    "ForgetResult",
    "Guarantee",
    "ModelContext",
    "OnlineEnsemble",
    "Prediction",
    "Retrain",
    "RetrainConfig",
    "S3TConfig",
    "SISAConfig",
    "SISPAConfig",
    "Strategy",
]
