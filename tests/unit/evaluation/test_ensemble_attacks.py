"""Per-example attacks: competition epsilon, U-LiRA, power vs ensemble size, the cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from obliviate.errors import ConfigError, DataError
from obliviate.evaluation import (
    EnsembleConfig,
    EvalData,
    build_ensemble,
    competition_score,
    forgetting_quality,
    ulira,
)
from obliviate.evaluation.competition import epsilon_points, per_example_epsilon


def test_epsilon_points_buckets() -> None:
    assert epsilon_points(0.0, models=512) == 1.0
    assert epsilon_points(0.49, models=512) == 1.0
    assert epsilon_points(0.5, models=512) == 0.5
    assert epsilon_points(6.9, models=512) == 2.0**-13
    assert epsilon_points(7.0, models=512) == 0.0  # ceil(ln 511) = 7
    assert epsilon_points(float("inf"), models=512) == 0.0


def test_per_example_epsilon_separated_identical_degenerate() -> None:
    rng = np.random.default_rng(0)
    same = rng.normal(size=64)
    assert per_example_epsilon(unlearned=same, retrained=same) < 0.5
    assert per_example_epsilon(unlearned=same + 100, retrained=same) == 50.0  # inf, capped
    assert per_example_epsilon(unlearned=np.zeros(64), retrained=same) == 50.0  # degenerate
    with pytest.raises(DataError):
        per_example_epsilon(unlearned=[1.0], retrained=same)


def _ensembles(n: int, shift: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(shift, 1.0, size=(n, 40)), rng.normal(0.0, 1.0, size=(n, 40))


def test_attack_power_grows_with_ensemble_size() -> None:
    """A method that under-unlearns (shift 1.5 sigma) looks better with fewer models."""
    quality = {}
    for n in (4, 16, 64):
        u, r = _ensembles(n, 1.5, seed=n)
        quality[n], _ = forgetting_quality(unlearned_conf=u, retrained_conf=r)
    assert quality[4] > quality[16] > quality[64]
    auc = {}
    for n in (4, 32):
        runs = []
        for seed in range(5):
            rng = np.random.default_rng(seed * 100 + n)
            sd = rng.uniform(0.3, 2.0, 40)  # examples differ in spread, as in real models
            u = rng.normal(0.5 * sd, sd, (n, 40))
            r = rng.normal(0.0, sd, (n, 40))
            runs.append(ulira(unlearned_conf=u, retrained_conf=r).auc)
        auc[n] = float(np.mean(runs))
    assert auc[32] > auc[4] + 4.0


def test_ulira_chance_for_indistinguishable_and_high_for_separated() -> None:
    u, r = _ensembles(32, 0.0, seed=1)
    assert abs(ulira(unlearned_conf=u, retrained_conf=r).auc - 50.0) < 6.0
    u, r = _ensembles(32, 3.0, seed=2)
    result = ulira(unlearned_conf=u, retrained_conf=r)
    assert result.auc > 95.0 and result.per_example_auc.shape == (40,)
    with pytest.raises(DataError, match="at least 3"):
        ulira(unlearned_conf=u[:2], retrained_conf=r[:2])


def test_competition_score_multiplies_utility_ratios() -> None:
    u, r = _ensembles(16, 0.0, seed=3)
    score = competition_score(
        unlearned_conf=u,
        retrained_conf=r,
        unlearned_ra=[90.0] * 16,
        retrained_ra=[100.0] * 16,
        unlearned_ta=[80.0] * 16,
        retrained_ta=[80.0] * 16,
    )
    assert score.retain_ratio == pytest.approx(0.9)
    assert score.score == pytest.approx(score.forgetting_quality * 0.9)
    # small ensembles: even retrained-vs-retrained is far from 1 (the max over threshold
    # rules is optimistic), which is why reports compare F with that null value
    r2 = np.random.default_rng(4).normal(0.0, 1.0, size=(16, 40))
    null, _ = forgetting_quality(unlearned_conf=r2, retrained_conf=r)
    assert abs(score.forgetting_quality - null) < 0.15


def _split(n: int, seed: int) -> EvalData:
    rng = np.random.default_rng(seed)
    return EvalData(features=rng.normal(size=(n, 3)), labels=rng.integers(0, 2, n))


def test_ensemble_outputs_are_cached_and_reused(tmp_path: Path) -> None:
    calls: list[tuple[str, int]] = []

    def trainer(role: str):  # type: ignore[no-untyped-def]
        def train(seed: int):  # type: ignore[no-untyped-def]
            calls.append((role, seed))
            w = np.random.default_rng(seed + (0 if role == "r" else 99)).normal(size=(3, 2))

            def proba(x: np.ndarray) -> np.ndarray:
                z = x @ w
                e = np.exp(z - z.max(axis=1, keepdims=True))
                return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

            return proba

        return train

    forget, retain, test = _split(7, 0), _split(20, 1), _split(15, 2)
    config = EnsembleConfig(size=3, recipe="toy", cache_dir=str(tmp_path))
    kw = dict(train_reference=trainer("r"), train_unlearned=trainer("u"))
    first = build_ensemble(**kw, forget=forget, retain=retain, test=test, config=config)
    assert len(calls) == 6 and first.cache_hits == 0
    assert first.unlearned_probs.shape == (3, 7, 2)
    bigger = EnsembleConfig(size=4, recipe="toy", cache_dir=str(tmp_path))
    second = build_ensemble(**kw, forget=forget, retain=retain, test=test, config=bigger)
    assert len(calls) == 8 and second.cache_hits == 6  # only seed 3 of each side is new
    assert np.array_equal(second.head(3).unlearned_probs, first.unlearned_probs)
    other = EnsembleConfig(size=3, recipe="other", cache_dir=str(tmp_path))
    build_ensemble(**kw, forget=forget, retain=retain, test=test, config=other)
    assert len(calls) == 14  # a different recipe never reuses another's models


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"size": 2}, "size"), ({"recipe": ""}, "recipe"), ({"first_seed": 1.5}, "first_seed")],
)
def test_ensemble_config_validation(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        EnsembleConfig(**kwargs)  # type: ignore[arg-type]
    assert EnsembleConfig.from_dict(EnsembleConfig(size=5).to_dict()) == EnsembleConfig(size=5)
