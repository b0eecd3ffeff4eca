"""obliviate: make trained PyTorch models forget.

The front door is :class:`Workspace`: register samples with stable ids, train a model with
an unlearning strategy, forget samples or data subjects, and verify that no served component
has seen a deleted sample.
"""

from obliviate.data import load_dataset
from obliviate.data.sample_set import SampleSet
from obliviate.errors import ObliviateError
from obliviate.registry import Registry
from obliviate.strategies import (
    SISA,
    STRATEGIES,
    FitResult,
    ForgetResult,
    Guarantee,
    Prediction,
    Retrain,
    RetrainConfig,
    SISAConfig,
    Strategy,
)
from obliviate.training import TrainConfig
from obliviate.workspace import Workspace

__version__ = "0.1.0"

__all__ = [
    "SISA",
    "STRATEGIES",
    "FitResult",
    "ForgetResult",
    "Guarantee",
    "ObliviateError",
    "Prediction",
    "Registry",
    "Retrain",
    "RetrainConfig",
    "SISAConfig",
    "SampleSet",
    "Strategy",
    "TrainConfig",
    "Workspace",
    "load_dataset",
]
