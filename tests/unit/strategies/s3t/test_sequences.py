"""Sequence selection (cyclic, bipartite matching), the prefix trie and budget accounting."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from obliviate.errors import ConfigError
from obliviate.strategies.exact.s3t import (
    PrefixTrie,
    cut,
    cyclic,
    matching,
    prefix_key,
    select,
    served,
    simulate_absorbed,
)
from obliviate.strategies.exact.s3t.budget import shard_budget


def test_cyclic_gives_rotations_up_to_l() -> None:
    assert cyclic(slices=4, budget=4) == [(0, 1, 2, 3), (1, 2, 3, 0), (2, 3, 0, 1), (3, 0, 1, 2)]
    assert cyclic(slices=4, budget=2) == [(0, 1, 2, 3), (1, 2, 3, 0)]


def test_cyclic_beyond_l_spreads_over_leaders_and_stays_distinct() -> None:
    seqs = cyclic(slices=4, budget=6)
    assert len(set(seqs)) == 6
    assert all(sorted(s) == [0, 1, 2, 3] for s in seqs)
    leaders = [s[0] for s in seqs]
    assert sorted(leaders) == [0, 0, 1, 1, 2, 3]
    assert len(set(cyclic(slices=4, budget=24))) == 24


def test_matching_is_a_latin_square_and_pushes_risky_slices_deep() -> None:
    seqs = matching(slices=5, budget=5)
    for position in range(5):
        assert sorted(s[position] for s in seqs) == list(range(5))
    risky = matching(slices=4, budget=2, priors=[0.1, 0.1, 0.1, 0.7])
    # The B kept sequences are led by the safest slices, and the risky slice sits deep (a
    # Latin square lets it be last in only one sequence).
    assert {s[0] for s in risky} <= {0, 1, 2}
    assert all(s.index(3) >= 2 for s in risky)
    cyc = cyclic(slices=4, budget=2)
    assert any(s.index(3) < 3 for s in cyc)  # rotation ignores priors


def test_matching_keeps_more_budget_than_cyclic_under_skewed_priors() -> None:
    # A shard is exhausted once every leader is hit; rotation leads with the risky slice 0.
    priors = [0.8, 0.05, 0.05, 0.1]
    kwargs = {"shards": 3, "runs": 300, "seed": 1, "priors": priors}
    bms = simulate_absorbed(sequences=matching(slices=4, budget=2, priors=priors), **kwargs)
    rot = simulate_absorbed(sequences=cyclic(slices=4, budget=2), **kwargs)
    assert bms.mean() > rot.mean()


@pytest.mark.parametrize(
    ("name", "slices", "budget"), [("cyclic", 3, 7), ("matching", 3, 4), ("cyclic", 3, 0)]
)
def test_budgets_out_of_range_are_refused(name: str, slices: int, budget: int) -> None:
    with pytest.raises(ConfigError, match="budget"):
        select(name, slices=slices, budget=budget)


def test_bad_priors_are_refused() -> None:
    with pytest.raises(ConfigError, match="priors"):
        matching(slices=3, budget=3, priors=[1.0, -1.0, 0.5])


def test_trie_trains_each_distinct_prefix_once() -> None:
    full = PrefixTrie(tuple(itertools.permutations(range(4))))
    assert len(full) == sum(math.perm(4, k) for k in range(1, 5)) == 64
    assert full.naive_trainings() == 96
    rotations = PrefixTrie(tuple(cyclic(slices=4, budget=4)))
    assert len(rotations) == 16  # distinct leaders: nothing to share
    shared = PrefixTrie(tuple(cyclic(slices=4, budget=6)))
    assert len(shared) < shared.naive_trainings() == 24
    nodes = list(shared.nodes())
    assert all(n[:-1] == () or nodes.index(n[:-1]) < nodes.index(n) for n in nodes)
    assert prefix_key((2, 0, 1)) == "2.0.1"


def test_cut_truncates_each_sequence_before_the_first_dirty_slice() -> None:
    seqs = [(0, 1, 2), (1, 2, 0), (2, 0, 1)]
    assert cut([3, 3, 3], seqs, {1}) == [1, 0, 2]
    assert cut([1, 0, 2], seqs, {0}) == [0, 0, 1]
    assert served([0, 2, 2]) == (1, 2)
    budget = shard_budget([0, 0, 1], seqs)
    assert (budget.served_slices, budget.live_sequences, budget.worst_case_remaining) == (1, 1, 1)


def test_uniform_capacity_follows_the_logarithmic_trend() -> None:
    # m*L*H(m*B): more sequences absorb more deletions, but only logarithmically more.
    one = simulate_absorbed(shards=3, sequences=cyclic(slices=3, budget=1), runs=300, seed=0)
    three = simulate_absorbed(shards=3, sequences=cyclic(slices=3, budget=3), runs=300, seed=0)
    harmonic = [sum(1 / k for k in range(1, n + 1)) for n in (3, 9)]
    assert one.mean() == pytest.approx(9 * harmonic[0], rel=0.15)
    assert three.mean() == pytest.approx(9 * harmonic[1], rel=0.15)
    first = simulate_absorbed(
        shards=3, sequences=cyclic(slices=3, budget=3), runs=100, seed=0, until="first"
    )
    assert first.mean() < three.mean()
    assert np.all(first >= 0)
