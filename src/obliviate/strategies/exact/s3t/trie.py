"""The prefix trie of a shard's sequences: each distinct prefix is trained once.

S3T's reference code trains every (sequence, stage) pair separately, even when two
sequences share a prefix; stage ``i`` of a sequence depends only on its first ``i`` slices,
so sequences that share a prefix can share its training. With all L! orderings of L = 4
slices that is 64 stage trainings instead of 96.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from obliviate.strategies.exact.s3t.sequences import SliceSequence

__all__ = ["PrefixTrie", "prefix_key"]


def prefix_key(prefix: Sequence[int]) -> str:
    """The text key of a prefix, e.g. ``(2, 0, 1) -> "2.0.1"`` (JSON-safe, unambiguous)."""
    return ".".join(str(s) for s in prefix)


@dataclass(frozen=True)
class PrefixTrie:
    """The distinct non-empty prefixes of a set of sequences, parents before children."""

    sequences: tuple[SliceSequence, ...]

    def nodes(self) -> Iterator[SliceSequence]:
        """Every distinct prefix once, depth-first in sequence order (parents first)."""
        seen: set[SliceSequence] = set()
        for sequence in self.sequences:
            for depth in range(1, len(sequence) + 1):
                prefix = sequence[:depth]
                if prefix not in seen:
                    seen.add(prefix)
                    yield prefix

    def __len__(self) -> int:
        """Stage trainings the trie needs (distinct prefixes)."""
        return sum(1 for _ in self.nodes())

    def naive_trainings(self) -> int:
        """Stage trainings without sharing: one per (sequence, stage)."""
        return sum(len(s) for s in self.sequences)
