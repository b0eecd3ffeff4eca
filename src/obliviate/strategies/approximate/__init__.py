"""Approximate unlearning: methods that update a trained model given forget and retain data.

Every method is a ``<Name>Config`` + ``<Name>`` registered in :data:`METHODS`; every result
is labelled ``Guarantee.APPROXIMATE`` and carries its evidence. Start with :func:`unlearn`.
"""

from obliviate.strategies.approximate._loop import MaskedSGD, enforce_mask, masked_sgd
from obliviate.strategies.approximate.base import (
    METHODS,
    LabelledData,
    UnlearningMethod,
    UnlearnResult,
    unlearn,
)
from obliviate.strategies.approximate.boundary_shrink import BoundaryShrink, BoundaryShrinkConfig
from obliviate.strategies.approximate.certified import (
    CertifiedLinearModel,
    CertifiedRemovalConfig,
    RemovalResult,
)
from obliviate.strategies.approximate.eu_k import EUk, EUkConfig
from obliviate.strategies.approximate.finetune import FineTune, FineTuneConfig
from obliviate.strategies.approximate.fisher import FisherForgetting, FisherForgettingConfig
from obliviate.strategies.approximate.gradient_ascent import (
    GradientAscent,
    GradientAscentConfig,
)
from obliviate.strategies.approximate.influence import (
    InfluenceUnlearning,
    InfluenceUnlearningConfig,
)
from obliviate.strategies.approximate.l1_sparse import L1Sparse, L1SparseConfig
from obliviate.strategies.approximate.neggrad_eu_k import NegGradEUk, NegGradEUkConfig
from obliviate.strategies.approximate.pruning import (
    PRUNERS,
    PruneConfig,
    Pruner,
    PruneResult,
    prune,
)
from obliviate.strategies.approximate.random_label import RandomLabel, RandomLabelConfig
from obliviate.strategies.approximate.retrain import RetrainReference, RetrainReferenceConfig
from obliviate.strategies.approximate.salun import SalUn, SalUnConfig

__all__ = [
    "METHODS",
    "PRUNERS",
    "BoundaryShrink",
    "BoundaryShrinkConfig",
    "CertifiedLinearModel",
    "CertifiedRemovalConfig",
    "EUk",
    "EUkConfig",
    "FineTune",
    "FineTuneConfig",
    "FisherForgetting",
    "FisherForgettingConfig",
    "GradientAscent",
    "GradientAscentConfig",
    "InfluenceUnlearning",
    "InfluenceUnlearningConfig",
    "L1Sparse",
    "L1SparseConfig",
    "LabelledData",
    "MaskedSGD",
    "NegGradEUk",
    "NegGradEUkConfig",
    "PruneConfig",
    "PruneResult",
    "Pruner",
    "RandomLabel",
    "RandomLabelConfig",
    "RemovalResult",
    "RetrainReference",
    "RetrainReferenceConfig",
    "SalUn",
    "SalUnConfig",
    "UnlearnResult",
    "UnlearningMethod",
    "enforce_mask",
    "masked_sgd",
    "prune",
    "unlearn",
]
