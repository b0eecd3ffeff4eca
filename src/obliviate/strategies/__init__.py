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
from obliviate.strategies.exact import SISA, Retrain, RetrainConfig, SISAConfig

__all__ = [
    "SISA",
    "STRATEGIES",
    "FitResult",
    "ForgetResult",
    "Guarantee",
    "ModelContext",
    "Prediction",
    "Retrain",
    "RetrainConfig",
    "SISAConfig",
    "Strategy",
]
