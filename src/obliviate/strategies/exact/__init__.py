"""Exact unlearning strategies: forgetting equals retraining without the samples, bitwise."""

from obliviate.strategies.exact.aggregation import AGGREGATIONS
from obliviate.strategies.exact.retrain import Retrain, RetrainConfig
from obliviate.strategies.exact.sharding import SHARDINGS, Placement
from obliviate.strategies.exact.sisa import SISA
from obliviate.strategies.exact.sisa_config import SISAConfig

__all__ = [
    "AGGREGATIONS",
    "SHARDINGS",
    "SISA",
    "Placement",
    "Retrain",
    "RetrainConfig",
    "SISAConfig",
]
