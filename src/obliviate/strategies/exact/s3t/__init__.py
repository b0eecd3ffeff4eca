"""S3T: sequence-aware sharded sliced training with LoRA stages (Chowdhury et al., ICLR 2025).

Layout: ``config`` (S3TConfig), ``sequences`` (cyclic and bipartite-matching selection),
``trie`` (each distinct prefix trained once), ``stages`` (peft LoRA stages on a frozen
backbone), ``budget`` (cut-back semantics and the remaining deletion budget), ``strategy``.
"""

from obliviate.strategies.exact.s3t.budget import (
    DeletionBudget,
    ShardBudget,
    cut,
    served,
    simulate_absorbed,
)
from obliviate.strategies.exact.s3t.config import RETRAIN_POLICIES, S3TConfig
from obliviate.strategies.exact.s3t.sequences import SELECTIONS, cyclic, matching, select
from obliviate.strategies.exact.s3t.strategy import S3T, NonDeletableError
from obliviate.strategies.exact.s3t.trie import PrefixTrie, prefix_key

__all__ = [
    "RETRAIN_POLICIES",
    "S3T",
    "SELECTIONS",
    "DeletionBudget",
    "NonDeletableError",
    "PrefixTrie",
    "S3TConfig",
    "ShardBudget",
    "cut",
    "cyclic",
    "matching",
    "prefix_key",
    "select",
    "served",
    "simulate_absorbed",
]
