"""Small, cached ensembles of retrained and unlearned models for the per-example attacks.

The competition score and U-LiRA compare *distributions over training randomness*, so they
need many models; the published protocol uses 512 per side. Here the size is configurable
and each model's outputs are cached on disk, keyed by a hash of the recipe, the role, the
seed and the exact forget/retain/test data, so a re-run or a larger ensemble reuses every
model already trained. Only outputs are cached (forget-set probabilities, retain and test
accuracy), never weights: that is all the attacks read, and it is small.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from obliviate._hashing import sha256_hex
from obliviate.errors import ConfigError, DataError
from obliviate.evaluation.data import EvalData
from obliviate.evaluation.metrics import accuracy, logit_confidence
from obliviate.evaluation.proba import ProbaFn

__all__ = ["EnsembleConfig", "EnsembleOutputs", "build_ensemble"]

FORMAT_VERSION = 1
TrainFn = Callable[[int], ProbaFn]


@dataclass(frozen=True)
class EnsembleConfig:
    """How large an ensemble to build and where to cache it.

    Args:
        size: models per side (retrained and unlearned); at least 3. Attack power grows
            with it (see :mod:`obliviate.evaluation.competition`).
        recipe: a string naming *how* the models are trained (model, hyper-parameters,
            method); part of the cache key, so change it whenever the recipe changes.
        cache_dir: where outputs are cached; ``None`` disables caching.
        first_seed: seeds used are ``first_seed .. first_seed + size - 1``.
    """

    size: int = 8
    recipe: str = "default"
    cache_dir: str | None = None
    first_seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 3:
            problems.append(f"size must be an integer >= 3; got {self.size!r}")
        if not isinstance(self.recipe, str) or not self.recipe:
            problems.append(f"recipe must be a non-empty string; got {self.recipe!r}")
        if self.cache_dir is not None and not isinstance(self.cache_dir, str):
            problems.append(f"cache_dir must be a path string or None; got {self.cache_dir!r}")
        if not isinstance(self.first_seed, int) or isinstance(self.first_seed, bool):
            problems.append(f"first_seed must be an integer; got {self.first_seed!r}")
        if problems:
            raise ConfigError("invalid EnsembleConfig: " + "; ".join(problems) + ".")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form tagged with its kind and format version."""
        return {
            "kind": "ensemble_config",
            "format_version": FORMAT_VERSION,
            "size": self.size,
            "recipe": self.recipe,
            "cache_dir": self.cache_dir,
            "first_seed": self.first_seed,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EnsembleConfig:
        """Inverse of :meth:`to_dict`; a wrong kind, version or field is a ConfigError."""
        body = dict(data)
        if body.pop("kind", "ensemble_config") != "ensemble_config":
            raise ConfigError(f"not an ensemble_config: kind={data.get('kind')!r}.")
        if body.pop("format_version", FORMAT_VERSION) != FORMAT_VERSION:
            raise ConfigError(f"unsupported ensemble_config format_version {data!r}.")
        unknown = sorted(set(body) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"unknown EnsembleConfig fields {unknown}.")
        return cls(**body)


@dataclass(frozen=True, eq=False)
class EnsembleOutputs:
    """Per-model outputs of both ensembles, as the attacks consume them.

    Attributes:
        forget_labels: labels of the forget set.
        unlearned_probs / retrained_probs: (models, forget, classes) probabilities.
        unlearned_ra / retrained_ra: retain accuracy (percent) per model.
        unlearned_ta / retrained_ta: test accuracy (percent) per model.
        cache_hits: how many of the 2 x size models came from the cache.
    """

    forget_labels: npt.NDArray[np.int64]
    unlearned_probs: npt.NDArray[np.float32]
    retrained_probs: npt.NDArray[np.float32]
    unlearned_ra: npt.NDArray[np.float64]
    retrained_ra: npt.NDArray[np.float64]
    unlearned_ta: npt.NDArray[np.float64]
    retrained_ta: npt.NDArray[np.float64]
    cache_hits: int = 0

    def confidences(self, role: str) -> npt.NDArray[np.float64]:
        """(models, forget) logit-scaled confidences of the ``"unlearned"`` or ``"retrained"``."""
        probs = self.unlearned_probs if role == "unlearned" else self.retrained_probs
        return np.stack(
            [logit_confidence(probabilities=p, labels=self.forget_labels) for p in probs]
        )

    def head(self, size: int) -> EnsembleOutputs:
        """The first ``size`` models of each side (to show how power grows with size)."""
        return EnsembleOutputs(
            forget_labels=self.forget_labels,
            unlearned_probs=self.unlearned_probs[:size],
            retrained_probs=self.retrained_probs[:size],
            unlearned_ra=self.unlearned_ra[:size],
            retrained_ra=self.retrained_ra[:size],
            unlearned_ta=self.unlearned_ta[:size],
            retrained_ta=self.retrained_ta[:size],
            cache_hits=self.cache_hits,
        )


def _evaluate_member(
    proba: ProbaFn, forget: EvalData, retain: EvalData, test: EvalData
) -> dict[str, Any]:
    return {
        "forget_probs": np.asarray(proba(forget.features), dtype=np.float32),
        "ra": accuracy(probabilities=proba(retain.features), labels=retain.labels),
        "ta": accuracy(probabilities=proba(test.features), labels=test.labels),
    }


def _save(path: Path, member: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(
                handle,
                forget_probs=member["forget_probs"],
                ra=np.float64(member["ra"]),
                ta=np.float64(member["ta"]),
            )
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load(path: Path) -> dict[str, Any] | None:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {
                "forget_probs": archive["forget_probs"].astype(np.float32),
                "ra": float(archive["ra"]),
                "ta": float(archive["ta"]),
            }
    except (OSError, KeyError, ValueError):
        return None  # a torn or foreign file is recomputed, never trusted


def build_ensemble(
    *,
    train_reference: TrainFn,
    train_unlearned: TrainFn,
    forget: EvalData,
    retain: EvalData,
    test: EvalData,
    config: EnsembleConfig,
    on_model: Callable[[str, int], None] | None = None,
) -> EnsembleOutputs:
    """Trains (or loads from the cache) ``config.size`` models per side and evaluates them.

    Args:
        train_reference: ``seed -> ProbaFn`` of a model retrained without the forget set.
        train_unlearned: ``seed -> ProbaFn`` of a model trained with the forget set, then
            unlearned by the method under test.
        forget, retain, test: the evaluation splits.
        config: size, recipe (part of the cache key) and cache directory.
        on_model: called with (role, seed) before a model is trained (for progress bars).

    Raises:
        DataError: the forget set is empty, or a model returns the wrong shape.
    """
    if len(forget) == 0:
        raise DataError("the forget set is empty; the per-example attacks need examples.")
    data_key = sha256_hex(forget.digest(), retain.digest(), test.digest())
    out: dict[str, list[dict[str, Any]]] = {"retrained": [], "unlearned": []}
    hits = 0
    for role, train in (("retrained", train_reference), ("unlearned", train_unlearned)):
        for seed in range(config.first_seed, config.first_seed + config.size):
            key = sha256_hex(json.dumps([FORMAT_VERSION, config.recipe, role, seed]), data_key)
            path = Path(config.cache_dir) / f"{role}-{key[:24]}.npz" if config.cache_dir else None
            member = _load(path) if path is not None and path.exists() else None
            if member is not None:
                hits += 1
            else:
                if on_model is not None:
                    on_model(role, seed)
                member = _evaluate_member(train(seed), forget, retain, test)
                if member["forget_probs"].shape[0] != len(forget):
                    raise DataError(
                        f"the {role} model for seed {seed} returned "
                        f"{member['forget_probs'].shape[0]} rows for {len(forget)} samples."
                    )
                if path is not None:
                    _save(path, member)
            out[role].append(member)
    return EnsembleOutputs(
        forget_labels=forget.labels,
        unlearned_probs=np.stack([m["forget_probs"] for m in out["unlearned"]]),
        retrained_probs=np.stack([m["forget_probs"] for m in out["retrained"]]),
        unlearned_ra=np.array([m["ra"] for m in out["unlearned"]]),
        retrained_ra=np.array([m["ra"] for m in out["retrained"]]),
        unlearned_ta=np.array([m["ta"] for m in out["unlearned"]]),
        retrained_ta=np.array([m["ta"] for m in out["retrained"]]),
        cache_hits=hits,
    )
