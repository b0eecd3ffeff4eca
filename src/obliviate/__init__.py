"""obliviate: make trained PyTorch models forget.

The front door is :class:`Workspace`: register samples with stable ids, train a model with
an unlearning strategy, forget samples or data subjects (exactly, or approximately with a
named method), verify that no served component has seen a deleted sample, and check the
signed receipt every forget leaves in the audit ledger. ``obliviate.evaluation`` measures
what a forget did; ``obliviate.service`` serves it over HTTP.
"""

from obliviate.data import load_dataset
from obliviate.data.sample_set import SampleSet
from obliviate.errors import ObliviateError
from obliviate.ledger import Ledger, verify_receipt
from obliviate.registry import Registry
from obliviate.strategies import (
    S3T,
    SISA,
    SISPA,
    STRATEGIES,
    EnsembleConfig,
    FitResult,
    ForgetResult,
    Guarantee,
    OnlineEnsemble,
    Prediction,
    Retrain,
    RetrainConfig,
    S3TConfig,
    SISAConfig,
    SISPAConfig,
    Strategy,
)
from obliviate.strategies.approximate import (
    METHODS,
    LabelledData,
    UnlearningMethod,
    UnlearnResult,
    unlearn,
)
from obliviate.training import TrainConfig
from obliviate.workspace import Workspace

__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "S3T",
    "SISA",
    "SISPA",
    "STRATEGIES",
    "EnsembleConfig",
    "FitResult",
    "ForgetResult",
    "Guarantee",
    "LabelledData",
    "Ledger",
    "ObliviateError",
    "OnlineEnsemble",
    "Prediction",
    "Registry",
    "Retrain",
    "RetrainConfig",
    "S3TConfig",
    "SISAConfig",
    "SISPAConfig",
    "SampleSet",
    "Strategy",
    "TrainConfig",
    "UnlearnResult",
    "UnlearningMethod",
    "Workspace",
    "load_dataset",
    "unlearn",
    "verify_receipt",
]
