"""Workspace: the front door. One directory with the registry, checkpoints and features.

::

    <workspace>/
      obliviate.json      kind, format_version, database and storage URLs
      registry.db         provenance registry (SQLite, WAL, synchronous=FULL) unless a URL is set
      checkpoints/        content-addressed safetensors + JSON sidecars
      features/           registered features, one memory-mapped chunk per registration
      ledger/             audit-log signing keys (keys/, 0600) and the pseudonym secret (0600)
      receipts/           signed deletion receipts, <request_id>.json
      models/<name>/      placement plans
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from obliviate.data.feature_store import FeatureStore
from obliviate.data.sample_set import SampleSet
from obliviate.errors import ConfigError, WorkspaceError
from obliviate.ledger import Ledger, LedgerAuditor
from obliviate.models import resolve_factory
from obliviate.provenance import DatasetRecord, Provenance, VerifyReport
from obliviate.storage import CheckpointStore
from obliviate.strategies import STRATEGIES, ForgetResult, ModelContext, Strategy
from obliviate.strategies.base import ModelFactory
from obliviate.training.executors import Executor

__all__ = ["Workspace"]

_MANIFEST = "obliviate.json"
_FORMAT_VERSION = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def _check_name(value: str, what: str) -> str:
    if not _NAME.match(value):
        raise ConfigError(
            f"{what} names use letters, digits, '_', '.', '-' (at most 128, starting with a "
            f"letter or digit); got {value!r}."
        )
    return value


class Workspace:
    """A directory holding everything obliviate knows about some data and its models.

    Use :meth:`init` once, then :meth:`open`. Both return a workspace usable as a context
    manager.

    Example:
        >>> import tempfile, numpy as np
        >>> from obliviate import SampleSet, Workspace
        >>> ws = Workspace.init(tempfile.mkdtemp())
        >>> ds = ws.register(SampleSet.from_arrays(features=np.eye(4), labels=[0, 1, 0, 1],
        ...                                        name="toy"))
        >>> ds.num_active
        4
        >>> ws.close()
    """

    def __init__(
        self,
        root: Path,
        *,
        database_url: str,
        storage_url: str,
        executor: Executor | None = None,
    ) -> None:
        self.root = root
        # Where shard training runs (None: OBLIVIATE_EXECUTOR, default a process pool). The
        # workspace never closes an executor it was given.
        self.executor = executor
        self.database_url = database_url
        self.storage_url = storage_url
        self.provenance = Provenance.connect(database_url)
        self.store = CheckpointStore(storage_url)
        self.features = FeatureStore(root / "features")
        # The audit log shares the registry database, so every worker appends to one log.
        self.ledger = Ledger(self.provenance.engine, directory=root / "ledger")
        self.auditor = LedgerAuditor(
            ledger=self.ledger, provenance=self.provenance, receipts_dir=root / "receipts"
        )
        self._strategies: list[Strategy] = []

    # ---------------------------------------------------------------------------- opening
    @classmethod
    def init(
        cls,
        path: str | os.PathLike[str],
        *,
        database_url: str | None = None,
        storage_url: str | None = None,
        exist_ok: bool = False,
        executor: Executor | None = None,
    ) -> Workspace:
        """Creates a workspace at ``path`` (SQLite and local files unless URLs are given).

        ``executor`` runs shard training (inline, a process pool or Ray; see
        ``obliviate.training.executors``); it never changes results, only where they are
        computed.
        """
        root = Path(path).resolve()
        manifest = root / _MANIFEST
        if manifest.exists():
            if not exist_ok:
                raise WorkspaceError(f"a workspace already exists at {root}; open it instead.")
            return cls.open(root, executor=executor)
        root.mkdir(parents=True, exist_ok=True)
        data = {
            "kind": "workspace",
            "format_version": _FORMAT_VERSION,
            "database_url": database_url,
            "storage_url": storage_url,
        }
        workspace = cls._from_manifest(root, data, executor=executor)
        tmp = manifest.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, manifest)
        return workspace

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, executor: Executor | None = None) -> Workspace:
        """Opens an existing workspace.

        Raises:
            WorkspaceError: ``path`` holds no workspace, or its manifest is unreadable.
        """
        root = Path(path).resolve()
        manifest = root / _MANIFEST
        if not manifest.exists():
            raise WorkspaceError(
                f"no workspace at {root}; create one with `obliviate workspace init {path}` "
                "or Workspace.init(path)."
            )
        try:
            data = json.loads(manifest.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise WorkspaceError(
                f"the workspace manifest {manifest} is unreadable: {exc}"
            ) from None
        if data.get("kind") != "workspace" or data.get("format_version") != _FORMAT_VERSION:
            raise WorkspaceError(
                f"{manifest} is not a format-{_FORMAT_VERSION} obliviate workspace manifest."
            )
        return cls._from_manifest(root, data, executor=executor)

    @classmethod
    def _from_manifest(
        cls, root: Path, data: dict[str, Any], *, executor: Executor | None
    ) -> Workspace:
        database_url = data.get("database_url") or f"sqlite:///{root / 'registry.db'}"
        storage_url = data.get("storage_url") or (root / "checkpoints").as_uri()
        return cls(root, database_url=database_url, storage_url=storage_url, executor=executor)

    def close(self) -> None:
        """Waits for background work, then releases the database."""
        for strategy in self._strategies:
            close = getattr(strategy, "close", None)
            if callable(close):
                close()
        self._strategies.clear()
        self.provenance.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------------------- data
    def register(
        self, samples: SampleSet, *, dataset: str | None = None, deletable: bool = True
    ) -> DatasetRecord:
        """Registers samples under ``dataset`` (default: ``samples.name``).

        Features are written first and the registry second, in one transaction; if the
        registry rejects the samples (duplicate ids, a shape mismatch), the features written
        are removed again, so nothing is half-registered.
        """
        name = _check_name(dataset or samples.name, "dataset")
        chunk = self.features.write_chunk(name, samples.features)
        try:
            return self.provenance.register_samples(
                dataset=name, samples=samples, chunk=chunk, deletable=deletable
            )
        except BaseException:
            self.features.remove_chunk(name, chunk)
            raise

    # ----------------------------------------------------------------------------- models
    def _context(self, name: str, dataset: str) -> ModelContext:
        return ModelContext(
            name=name,
            dataset=dataset,
            provenance=self.provenance,
            store=self.store,
            features=self.features,
            model_dir=self.root / "models" / name,
            auditor=self.auditor,
            executor=self.executor,
        )

    def create(
        self,
        *,
        name: str,
        dataset: str,
        strategy: str = "sisa",
        config: Any = None,
        model_factory: ModelFactory | None = None,
    ) -> Strategy:
        """Creates model ``name`` without training it (call ``fit`` on the result)."""
        _check_name(name, "model")
        cls = STRATEGIES.get(strategy)
        config = cls.config_class() if config is None else config
        if not isinstance(config, cls.config_class):
            raise ConfigError(
                f"strategy {strategy!r} needs a {cls.config_class.__name__}; "
                f"got {type(config).__name__}."
            )
        if model_factory is not None and hasattr(config, "model"):
            # The marker is part of the config hash, so reopening with the same factory
            # reproduces the same lineage.
            marker = f"<factory {getattr(model_factory, '__qualname__', 'callable')}>"
            config = dataclasses.replace(config, model=marker)
        spec = getattr(config, "model", None)
        if model_factory is None and isinstance(spec, str) and ":" in spec:
            resolve_factory(spec)  # fail on a bad import before anything is written
        self.provenance.dataset(dataset)
        self.provenance.create_model(
            name=name, strategy=strategy, config=config.to_dict(), dataset=dataset
        )
        instance = cls(config, context=self._context(name, dataset), model_factory=model_factory)
        self._strategies.append(instance)
        return instance

    def train(
        self,
        *,
        name: str,
        dataset: str,
        strategy: str = "sisa",
        config: Any = None,
        model_factory: ModelFactory | None = None,
        sample_ids: Sequence[str] | None = None,
    ) -> Strategy:
        """Creates model ``name`` with ``strategy`` and fits it on ``dataset``.

        Args:
            name: a new model name.
            dataset: a registered dataset.
            strategy: a registered strategy name (see ``obliviate.STRATEGIES``).
            config: that strategy's config object; defaults to its defaults.
            model_factory: ``() -> nn.Module``; overrides ``config.model``. It is not stored,
                so pass it again to :meth:`model` when reopening.
            sample_ids: train on these samples only (default: every active sample).
        """
        instance = self.create(
            name=name,
            dataset=dataset,
            strategy=strategy,
            config=config,
            model_factory=model_factory,
        )
        instance.fit(sample_ids=sample_ids)
        return instance

    def model(self, name: str, *, model_factory: ModelFactory | None = None) -> Strategy:
        """Reopens a trained model by name."""
        record = self.provenance.model(name)
        cls = STRATEGIES.get(record.strategy)
        if str(record.config.get("model", "")).startswith("<factory") and model_factory is None:
            raise ConfigError(
                f"model {name!r} was trained with a Python model factory; pass the same "
                "model_factory= to Workspace.model()."
            )
        config = cls.config_class.from_dict(record.config)
        instance = cls(
            config, context=self._context(name, record.dataset), model_factory=model_factory
        )
        self._strategies.append(instance)
        return instance

    def forget(
        self,
        *,
        model: str,
        sample_ids: Sequence[str] = (),
        subject_ids: Sequence[str] = (),
        reason: str = "",
        background: bool = False,
        model_factory: ModelFactory | None = None,
        request_id: str | None = None,
        method: str | None = None,
        method_config: Any = None,
    ) -> ForgetResult:
        """Forgets samples or subjects from ``model`` (see :meth:`Strategy.forget`).

        With ``method``, the served components are updated by that approximate unlearning
        method instead of the strategy's exact path, and the result says so.
        """
        return self.model(model, model_factory=model_factory).forget(
            sample_ids=sample_ids,
            subject_ids=subject_ids,
            reason=reason,
            background=background,
            request_id=request_id,
            method=method,
            method_config=method_config,
        )

    def models_holding_deleted(
        self, *, dataset: str, exclude: str | None = None, while_retraining: bool = False
    ) -> dict[str, set[str]]:
        """Fitted models of ``dataset`` whose active version has seen a deleted sample.

        Deletion is per dataset, so after one model forgets, these still hold the samples.

        Args:
            dataset: the dataset whose models to check.
            exclude: a model to leave out (the one that just forgot).
            while_retraining: also count what the version a rolled-back one came from held:
                a forget of that model may be retraining right now (or crashed doing so) on
                a sample table read before the latest deletions.

        Returns:
            Model name -> the deleted sample ids it holds; models holding none are absent.

        Raises:
            UnknownNameError: ``dataset`` is not registered.
        """
        prov = self.provenance
        prov.dataset(dataset)  # an unknown name is an error, not "no model holds anything"
        holding: dict[str, set[str]] = {}
        for record in prov.models():
            if record.dataset != dataset or record.name == exclude:
                continue
            active = prov.active_version(record.name)
            if active is None:
                continue
            numbers = [active.number]
            if while_retraining and active.kind == "rolled_back":
                if active.parent_version is not None:
                    numbers.append(active.parent_version)
            seen = {
                sample
                for number in numbers
                for sample in prov.verify_version(model=record.name, number=number).deleted_seen
            }
            if seen:
                holding[record.name] = seen
        return holding

    def verify(self, *, model: str, version: int | None = None) -> VerifyReport:
        """Checks that no component of a model version has seen a deleted sample."""
        if version is None:
            active = self.provenance.active_version(model)
            if active is None:
                raise WorkspaceError(f"model {model!r} has no active version to verify.")
            version = active.number
        return self.provenance.verify_version(model=model, number=version)
