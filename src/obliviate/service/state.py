"""Everything one app instance shares between requests, opened once and closed once."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path

from obliviate.errors import ConfigError, UnknownNameError
from obliviate.service.auth import ApiKeyStore
from obliviate.service.committer import GroupCommitter
from obliviate.service.metrics import ServiceMetrics
from obliviate.service.queue import RequestQueue
from obliviate.service.served import ModelServer
from obliviate.service.settings import ServiceSettings
from obliviate.strategies.base import ModelFactory
from obliviate.workspace import Workspace

__all__ = ["ServiceState", "open_workspace"]


def open_workspace(settings: ServiceSettings) -> Workspace:
    """Opens the settings' workspace, with its database URL overridden when one is set."""
    workspace = Workspace.open(settings.workspace)
    if settings.database_url is None or settings.database_url == workspace.database_url:
        return workspace
    root, storage = workspace.root, workspace.storage_url
    workspace.close()
    return Workspace(root, database_url=settings.database_url, storage_url=storage)


class ServiceState:
    """The workspace, queue, keys, served models, committer and metrics of one app.

    Args:
        settings: the service settings.
        workspace: an open workspace to serve (default: open ``settings.workspace``); the
            state closes it only if it opened it.
        model_factories: ``model name -> factory`` for models built by Python factories.
    """

    def __init__(
        self,
        settings: ServiceSettings,
        *,
        workspace: Workspace | None = None,
        model_factories: Mapping[str, ModelFactory] | None = None,
    ) -> None:
        self.settings = settings
        self._owns_workspace = workspace is None
        self.workspace = workspace if workspace is not None else open_workspace(settings)
        engine = self.workspace.provenance.engine
        self.queue = RequestQueue(engine, settings=settings)
        self.keys = ApiKeyStore(engine, cache_seconds=settings.auth_cache_seconds)
        self.models = ModelServer(
            self.workspace,
            refresh_seconds=settings.model_refresh_seconds,
            model_factories=model_factories,
        )
        self.committer = GroupCommitter(
            self.queue,
            max_wait_ms=settings.group_commit_max_wait_ms,
            max_batch=settings.group_commit_max_batch,
        )
        self.metrics = ServiceMetrics(
            self.queue,
            workspace_root=Path(self.workspace.root),
            cache_seconds=settings.metrics_cache_seconds,
        )
        self._model_names: tuple[float, frozenset[str]] = (-1e9, frozenset())
        self._names_lock = threading.Lock()

    def model_names(self) -> frozenset[str]:
        """Registered model names (re-read at most every ``model_refresh_seconds``)."""
        checked, names = self._model_names
        if time.monotonic() - checked < self.settings.model_refresh_seconds:
            return names
        with self._names_lock:
            names = frozenset(m.name for m in self.workspace.provenance.models())
            self._model_names = (time.monotonic(), names)
        return names

    def resolve_model_cached(self, name: str | None) -> str | None:
        """:meth:`resolve_model` from the in-memory name cache alone; ``None`` when that
        cache is stale or does not settle it (then call :meth:`resolve_model` off the loop).
        """
        checked, names = self._model_names
        if time.monotonic() - checked >= self.settings.model_refresh_seconds:
            return None
        if name is not None:
            return name if name in names else None
        return next(iter(names)) if len(names) == 1 else None

    def resolve_model(self, name: str | None) -> str:
        """The model a request means: ``name``, or the workspace's only model.

        Raises:
            UnknownNameError: ``name`` is not a registered model.
            ConfigError: no name given and the workspace has no model or several.
        """
        names = self.model_names()
        if name is not None:
            if name not in names:
                names = frozenset(m.name for m in self.workspace.provenance.models())
                self._model_names = (time.monotonic(), names)
            if name not in names:
                raise UnknownNameError(
                    f"unknown model {name!r}; registered models: {sorted(names)}."
                )
            return name
        if len(names) != 1:
            raise ConfigError(
                f"model is required: the workspace has {len(names)} models ({sorted(names)[:10]})."
            )
        return next(iter(names))

    def close(self) -> None:
        """Commits pending submissions, then releases the workspace if this state opened it."""
        self.committer.close()
        if self._owns_workspace:
            self.workspace.close()
