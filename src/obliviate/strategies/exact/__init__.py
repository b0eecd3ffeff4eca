"""Exact unlearning strategies: forgetting equals retraining without the samples, bitwise."""

from obliviate.strategies.exact.aggregation import AGGREGATIONS
from obliviate.strategies.exact.aggregator import AGGREGATORS
from obliviate.strategies.exact.ensemble import OnlineEnsemble, TooFewModelsError
from obliviate.strategies.exact.ensemble_config import EnsembleConfig
from obliviate.strategies.exact.retrain import Retrain, RetrainConfig
from obliviate.strategies.exact.s3t import S3T, S3TConfig
from obliviate.strategies.exact.sharding import SHARDINGS, Placement
from obliviate.strategies.exact.sisa import SISA, ResumeResult
from obliviate.strategies.exact.sisa_config import SISAConfig
from obliviate.strategies.exact.sispa import SISPA
from obliviate.strategies.exact.sispa_config import SISPAConfig

__all__ = [
    "AGGREGATIONS",
    "AGGREGATORS",
    "S3T",
    "SHARDINGS",
    "SISA",
    "SISPA",
    "EnsembleConfig",
    "OnlineEnsemble",
    "Placement",
    "ResumeResult",
    "Retrain",
    "RetrainConfig",
    "S3TConfig",
    "SISAConfig",
    "SISPAConfig",
    "TooFewModelsError",
]
