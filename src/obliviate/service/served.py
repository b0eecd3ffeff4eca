"""Hot-swapped serving: predictions always come from one complete, committed model version.

The registry switches a model's active version in one transaction; the server follows it:

* at most every ``model_refresh_seconds`` a request checks which version is active;
* a newly active version is loaded (and warmed with one dummy prediction) *before* it is
  published, then published by a single reference assignment, so concurrent requests see
  either the old version or the new one, never a mixture;
* each prediction is pinned to the version it started with (``predict(version=n)``), so a
  switch in the middle of a request cannot mix shards of two versions.

While a shard retrains after a deletion, the active version is the exact rolled-back one
(committed before any retraining starts; it has seen no deleted sample), so that is what is
served until the retrained version is committed. The version that still contains the deleted
samples is never served again once the rollback commits (at most ``model_refresh_seconds``
later in this process).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from obliviate.errors import NotFittedError
from obliviate.strategies.base import ModelFactory, Prediction, Strategy
from obliviate.workspace import Workspace

__all__ = ["ModelServer", "ServedVersion"]


@dataclass(frozen=True)
class ServedVersion:
    """One loaded model version: what answers predictions for ``model`` right now."""

    model: str
    version: int
    strategy: Strategy
    loaded_at: float


class ModelServer:
    """Serves the active version of each model, swapping atomically when it changes.

    Args:
        workspace: the workspace to read models from.
        refresh_seconds: how long a loaded version is trusted before re-checking.
        model_factories: ``model name -> factory`` for models built by Python factories.
    """

    def __init__(
        self,
        workspace: Workspace,
        *,
        refresh_seconds: float,
        model_factories: Mapping[str, ModelFactory] | None = None,
    ) -> None:
        self.workspace = workspace
        self.refresh_seconds = refresh_seconds
        self.model_factories = dict(model_factories or {})
        self._served: dict[str, ServedVersion] = {}
        self._checked: dict[str, float] = {}
        self._load_lock = threading.Lock()
        self.swaps = 0

    def current(self, model: str) -> ServedVersion:
        """The version serving ``model`` now (loading a newly activated one first).

        Raises:
            UnknownNameError: no such model.
            NotFittedError: the model has no active version.
        """
        served = self._served.get(model)
        fresh = time.monotonic() - self._checked.get(model, -1e9) < self.refresh_seconds
        if served is not None and fresh:
            return served
        return self._refresh(model)

    def predict(self, model: str, features: npt.ArrayLike) -> Prediction:
        """Predicts with the version serving ``model``, pinned for the whole call."""
        served = self.current(model)
        return served.strategy.predict(features, version=served.version)

    def _refresh(self, model: str) -> ServedVersion:
        with self._load_lock:
            prov = self.workspace.provenance
            record = prov.model(model)  # raises UnknownNameError with the known names
            active = prov.active_version(model)
            if active is None:
                raise NotFittedError(f"model {model!r} has no active version to serve yet.")
            served = self._served.get(model)
            if served is None or served.version != active.number:
                strategy = self.workspace.model(
                    model, model_factory=self.model_factories.get(model)
                )
                shape = prov.dataset(record.dataset).feature_shape
                try:  # load every shard before publishing; a degraded version may have none
                    strategy.predict(np.zeros((1, *shape), dtype=np.float32), version=active.number)
                except NotFittedError:
                    pass
                served = ServedVersion(model, active.number, strategy, time.time())
                self._served[model] = served  # the swap: one reference assignment
                self.swaps += 1
            self._checked[model] = time.monotonic()
            return served
