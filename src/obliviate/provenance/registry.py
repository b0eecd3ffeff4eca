"""The provenance registry's front door: :class:`Provenance`.

Every other part of obliviate talks to the registry through this one class. Each public
method is one database transaction, so a caller never observes (or leaves behind) half of a
registration, a version switch or a deletion. The work itself lives in one module per
concern (``datasets``, ``checkpoints``, ``versions``, ``deletions``, ``queries``); this class
only chooses transaction bounds and validates the arguments that everything shares.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from obliviate.data.sample_set import SampleSet
from obliviate.errors import ConfigError, ProvenanceError, WorkspaceError
from obliviate.provenance import checkpoints as _checkpoints
from obliviate.provenance import datasets as _datasets
from obliviate.provenance import deletions as _deletions
from obliviate.provenance import lookups
from obliviate.provenance import queries as _queries
from obliviate.provenance import versions as _versions
from obliviate.provenance._util import utcnow
from obliviate.provenance.engine import SQLITE_BEGIN_OPTION, create_engine
from obliviate.provenance.migrate import current_revision, head_revision, upgrade
from obliviate.provenance.records import (
    CheckpointRecord,
    DatasetRecord,
    DeletionRecord,
    ModelRecord,
    Resolution,
    SampleTable,
    VerifyReport,
    VersionRecord,
)
from obliviate.provenance.schema import VERSION_STATUSES

__all__ = ["Provenance"]

T = TypeVar("T")

# A write that loses a race on a unique key is retried: the retry sees the winner's row and
# returns the idempotent result or the precise error. Locks make this rare; it is a backstop.
_WRITE_ATTEMPTS = 3


def _require_number(number: Any, *, what: str = "version number") -> int:
    if isinstance(number, bool) or not isinstance(number, int | np.integer) or number < 1:
        raise ConfigError(f"{what} must be a positive integer (1, 2, ...); got {number!r}.")
    return int(number)


class Provenance:
    """Records which samples exist and which checkpoints and model versions have seen them.

    Open one with :meth:`connect`; close it (or use it as a context manager) to release the
    database connections.

    Args:
        engine: an engine from :func:`obliviate.provenance.engine.create_engine`, whose
            schema is already migrated.
        owns_engine: dispose ``engine`` on :meth:`close`.

    Example:
        >>> prov = Provenance.connect("sqlite:///registry.db")  # doctest: +SKIP
        >>> prov.register_samples(dataset="digits", samples=s, chunk="c0")  # doctest: +SKIP
        >>> prov.close()  # doctest: +SKIP
    """

    def __init__(self, engine: sa.Engine, *, owns_engine: bool = False) -> None:
        self._engine = engine
        self._writer = engine.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
        self._owns_engine = owns_engine

    @classmethod
    def connect(cls, url: str, *, migrate: bool = True) -> Provenance:
        """Opens the registry at ``url``, bringing its schema up to date unless told not to.

        Args:
            url: a SQLAlchemy URL (``sqlite:///...`` or ``postgresql+psycopg://...``).
            migrate: run pending migrations; with ``False`` the schema must already be current.

        Raises:
            WorkspaceError: ``migrate=False`` and the schema is missing or out of date.
        """
        engine = create_engine(url)
        try:
            if migrate:
                upgrade(engine)
            else:
                found, expected = current_revision(engine), head_revision()
                if found != expected:
                    raise WorkspaceError(
                        f"the registry at {engine.url!r} is at schema revision {found!r}; this "
                        f"obliviate needs {expected!r}. Connect with migrate=True to upgrade it."
                    )
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, owns_engine=True)

    @property
    def engine(self) -> sa.Engine:
        """The underlying engine, for callers that need their own queries."""
        return self._engine

    def close(self) -> None:
        """Releases pooled connections (and the engine, if this object created it)."""
        if self._owns_engine:
            self._engine.dispose()

    def __enter__(self) -> Provenance:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _read(self, work: Callable[[sa.Connection], T]) -> T:
        with self._engine.connect() as conn:
            return work(conn)

    def _write(self, work: Callable[[sa.Connection], T]) -> T:
        for attempt in range(_WRITE_ATTEMPTS):
            try:
                with self._writer.begin() as conn:
                    return work(conn)
            except IntegrityError as exc:
                if attempt == _WRITE_ATTEMPTS - 1:
                    raise ProvenanceError(
                        f"the registry refused the write as inconsistent ({exc.orig}); nothing "
                        "was written. Check the ids passed, or retry if another process was "
                        "writing the same records."
                    ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    # Datasets and samples -------------------------------------------------------------

    def register_samples(
        self, *, dataset: str, samples: SampleSet, chunk: str, deletable: bool = True
    ) -> DatasetRecord:
        """Registers ``samples`` in ``dataset`` as rows ``0..n-1`` of feature-store ``chunk``.

        One transaction: creates the dataset if new, otherwise checks the samples fit it; on
        any error nothing is written.

        Args:
            dataset: the dataset name.
            samples: validated samples; their ids must be new to the dataset.
            chunk: the feature-store chunk that holds these samples' features, in order.
            deletable: ``False`` for data that may never be deleted (public pretraining sets).

        Raises:
            DataError: class count, feature shape or deletability differ from the existing
                dataset; sample ids already registered; chunk already used.
        """

        def work(conn: sa.Connection) -> DatasetRecord:
            _datasets.register_samples(
                conn,
                dataset=dataset,
                samples=samples,
                chunk=chunk,
                deletable=deletable,
                now=utcnow(),
            )
            return _datasets.dataset_record(conn, dataset)

        return self._write(work)

    def dataset(self, name: str) -> DatasetRecord:
        """The dataset called ``name``.

        Raises:
            UnknownNameError: listing the registered datasets.
        """
        return self._read(lambda conn: _datasets.dataset_record(conn, name))

    def datasets(self) -> list[DatasetRecord]:
        """Every registered dataset, by name."""
        return self._read(_datasets.dataset_records)

    def samples(self, *, dataset: str, status: str | None = "active") -> SampleTable:
        """Samples of ``dataset`` as numpy columns, ordered by pk.

        Args:
            dataset: the dataset name.
            status: ``"active"`` (default), ``"deleted"``, or ``None`` for all.

        Raises:
            UnknownNameError: the dataset is not registered.
        """
        return self._read(lambda conn: _datasets.sample_table(conn, dataset=dataset, status=status))

    def resolve(
        self,
        *,
        dataset: str,
        sample_ids: Sequence[str] | npt.NDArray[Any] = (),
        subject_ids: Sequence[str] | npt.NDArray[Any] = (),
    ) -> Resolution:
        """Maps sample ids and subjects (all their samples) to active sample pks.

        Unknown and already-deleted ids are reported, not raised, so the caller decides.

        Raises:
            UnknownNameError: the dataset is not registered.
        """
        return self._read(
            lambda conn: _datasets.resolve(
                conn, dataset=dataset, sample_ids=sample_ids, subject_ids=subject_ids
            )
        )

    # Models and checkpoints -----------------------------------------------------------

    def create_model(
        self, *, name: str, strategy: str, config: Mapping[str, Any], dataset: str
    ) -> ModelRecord:
        """Registers a model trained by ``strategy`` on ``dataset``.

        Raises:
            ConfigError: a model called ``name`` exists, or ``config`` is not JSON.
            UnknownNameError: the dataset is not registered.
        """

        def work(conn: sa.Connection) -> ModelRecord:
            _checkpoints.create_model(
                conn, name=name, strategy=strategy, config=config, dataset=dataset, now=utcnow()
            )
            return _checkpoints.model_records(conn, name=name)[0]

        return self._write(work)

    def model(self, name: str) -> ModelRecord:
        """The model called ``name``.

        Raises:
            UnknownNameError: listing the registered models.
        """

        def work(conn: sa.Connection) -> ModelRecord:
            lookups.get_model(conn, name)  # raises with the list of models
            return _checkpoints.model_records(conn, name=name)[0]

        return self._read(work)

    def models(self) -> list[ModelRecord]:
        """Every registered model, by name."""
        return self._read(lambda conn: _checkpoints.model_records(conn))

    def record_checkpoint(
        self,
        *,
        model: str,
        component: str,
        checkpoint_id: str,
        storage_url: str,
        parent_id: str | None,
        lineage_hash: str,
        new_sample_pks: Sequence[int] | npt.NDArray[Any],
        num_samples_seen: int,
        meta: Mapping[str, Any],
        inputs: Sequence[str] = (),
    ) -> CheckpointRecord:
        """Records a checkpoint and the samples it saw that its parent chain had not.

        Idempotent: an id that is already recorded (with the same model, component, parent
        and lineage hash) returns the stored record and writes nothing. The component is
        created on first use.

        Args:
            model: the model's name.
            component: the component's name, e.g. ``"shard-3"``.
            checkpoint_id: the checkpoint's content hash (64 lowercase hex characters).
            storage_url: where the checkpoint store keeps it.
            parent_id: the checkpoint training continued from, or ``None``.
            lineage_hash: SHA-256 of the exact ordered sample ids that influenced it,
                through its parents too (computed by the caller).
            new_sample_pks: pks of samples this checkpoint saw that its ancestors had not.
            num_samples_seen: samples seen in total, ancestors included.
            meta: JSON metadata (epoch, slice, metrics, ...).
            inputs: checkpoints whose outputs this one was computed from (SISPA's shards for
                its aggregator); every sample they saw counts as seen by this one too.

        Raises:
            ProvenanceError: conflicting re-record, unknown parent or input, or inputs that
                are not one level deep.
            UnknownSampleError: pks that are not registered samples.
            UnknownNameError: unknown model.
        """
        return self._write(
            lambda conn: _checkpoints.record_checkpoint(
                conn,
                model=model,
                component=component,
                checkpoint_id=checkpoint_id,
                storage_url=storage_url,
                parent_id=parent_id,
                lineage_hash=lineage_hash,
                new_sample_pks=new_sample_pks,
                num_samples_seen=num_samples_seen,
                meta=meta,
                now=utcnow(),
                inputs=inputs,
            )
        )

    def checkpoint(self, checkpoint_id: str) -> CheckpointRecord:
        """The checkpoint with ``checkpoint_id``.

        Raises:
            ProvenanceError: it was never recorded.
        """
        found = self._read(lambda conn: _checkpoints.checkpoint_records(conn, ids=[checkpoint_id]))
        if not found:
            raise ProvenanceError(f"checkpoint {checkpoint_id!r} is not recorded.")
        return found[0]

    def checkpoints(self, *, model: str, component: str | None = None) -> list[CheckpointRecord]:
        """Checkpoints of ``model`` (of one ``component`` when given), oldest first.

        Raises:
            UnknownNameError: unknown model.
        """

        def work(conn: sa.Connection) -> list[CheckpointRecord]:
            owner = lookups.get_model(conn, model)
            return _checkpoints.checkpoint_records(conn, model_id=owner.id, component=component)

        return self._read(work)

    # Model versions -------------------------------------------------------------------

    def create_version(
        self,
        *,
        model: str,
        components: Mapping[str, str | None],
        kind: str,
        details: Mapping[str, Any] | None = None,
        parent_version: int | None = None,
        activate: bool = False,
    ) -> VersionRecord:
        """Creates the next version of ``model`` from recorded checkpoints.

        With ``activate=True`` the previously active version is retired and this one becomes
        active in the same transaction, so serving never sees zero or two active versions.

        Args:
            model: the model's name.
            components: component name to checkpoint id, or ``None`` to exclude it.
            kind: how the version came about, e.g. ``"trained"`` or ``"retrained"``.
            details: JSON details, part of the content hash.
            parent_version: the number of the version this one was derived from.
            activate: make this the active version.

        Raises:
            ProvenanceError: unknown checkpoint, checkpoint of another model or component, or
                unknown parent version.
            UnknownNameError: unknown model.
        """
        if parent_version is not None:
            parent_version = _require_number(parent_version, what="parent_version")

        def work(conn: sa.Connection) -> VersionRecord:
            number = _versions.create_version(
                conn,
                model=model,
                components=components,
                kind=kind,
                details=details,
                parent_version=parent_version,
                activate=bool(activate),
                now=utcnow(),
            )
            return self._version_in(conn, model=model, number=number)

        return self._write(work)

    def activate_version(self, *, model: str, number: int) -> VersionRecord:
        """Makes version ``number`` the only active version of ``model`` (one transaction).

        Raises:
            ProvenanceError: the version does not exist.
            UnknownNameError: unknown model.
        """
        number = _require_number(number)

        def work(conn: sa.Connection) -> VersionRecord:
            _versions.activate_version(conn, model=model, number=number, now=utcnow())
            return self._version_in(conn, model=model, number=number)

        return self._write(work)

    @staticmethod
    def _version_in(conn: sa.Connection, *, model: str, number: int) -> VersionRecord:
        owner = lookups.get_model(conn, model)
        lookups.version_id(conn, owner, number)  # raises with the list of versions
        return _versions.version_records(conn, model_id=owner.id, number=number)[0]

    def active_version(self, model: str) -> VersionRecord | None:
        """The active version of ``model``, or ``None`` before any was activated.

        Raises:
            UnknownNameError: unknown model.
        """

        def work(conn: sa.Connection) -> VersionRecord | None:
            owner = lookups.get_model(conn, model)
            found = _versions.version_records(conn, model_id=owner.id, status="active")
            return found[0] if found else None

        return self._read(work)

    def version(self, *, model: str, number: int) -> VersionRecord:
        """Version ``number`` of ``model``.

        Raises:
            ProvenanceError: the version does not exist.
            UnknownNameError: unknown model.
        """
        number = _require_number(number)
        return self._read(lambda conn: self._version_in(conn, model=model, number=number))

    def versions(self, model: str, *, status: str | None = None) -> list[VersionRecord]:
        """Versions of ``model`` by number, optionally only those with ``status``.

        Raises:
            UnknownNameError: unknown model.
        """
        if status is not None and status not in VERSION_STATUSES:
            raise ConfigError(f"status must be one of {VERSION_STATUSES} or None; got {status!r}.")

        def work(conn: sa.Connection) -> list[VersionRecord]:
            owner = lookups.get_model(conn, model)
            return _versions.version_records(conn, model_id=owner.id, status=status)

        return self._read(work)

    # Deletions ------------------------------------------------------------------------

    def begin_deletion(
        self,
        *,
        dataset: str,
        sample_pks: Sequence[int] | npt.NDArray[Any],
        reason: str,
        model: str | None = None,
        from_version: int | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> DeletionRecord:
        """Marks samples deleted and records the request, in one transaction.

        Once this returns the request is durable and the samples are out of every future
        :meth:`samples` read, so the request may be acknowledged.

        Args:
            dataset: the dataset the samples belong to.
            sample_pks: pks of active samples (from :meth:`resolve`).
            reason: why (kept with the request; never personal identifiers).
            model: the model to bring into compliance, if any.
            from_version: the model's version number serving when the request arrived.
            details: JSON details.

        Raises:
            AlreadyDeletedError: some samples are not active; nothing is written.
            UnknownSampleError: some pks are not samples of ``dataset``.
            ProvenanceError: the dataset is not deletable, or model/version mismatches.
        """
        if from_version is not None:
            from_version = _require_number(from_version, what="from_version")

        def work(conn: sa.Connection) -> DeletionRecord:
            deletion_id = _deletions.begin_deletion(
                conn,
                dataset=dataset,
                sample_pks=sample_pks,
                model=model,
                reason=reason,
                from_version=from_version,
                details=details,
                now=utcnow(),
            )
            return _deletions.deletion_records(conn, deletion_id=deletion_id)[0]

        return self._write(work)

    def update_deletion(
        self,
        deletion_id: int,
        *,
        status: str,
        rolled_back_version: int | None = None,
        to_version: int | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> DeletionRecord:
        """Moves a deletion request on, recording versions and merging in ``details``.

        ``completed``, ``failed`` and ``noop`` stamp ``completed_at``; ``completed`` and
        ``noop`` close the request, while ``failed`` may be retried.

        Raises:
            ProvenanceError: unknown or closed request, or unknown versions.
            ConfigError: unknown status.
        """
        if rolled_back_version is not None:
            rolled_back_version = _require_number(rolled_back_version, what="rolled_back_version")
        if to_version is not None:
            to_version = _require_number(to_version, what="to_version")

        def work(conn: sa.Connection) -> DeletionRecord:
            _deletions.update_deletion(
                conn,
                deletion_id,
                status=status,
                rolled_back_version=rolled_back_version,
                to_version=to_version,
                details=details,
                now=utcnow(),
            )
            return _deletions.deletion_records(conn, deletion_id=deletion_id)[0]

        return self._write(work)

    def deletion(self, deletion_id: int) -> DeletionRecord:
        """The deletion request with ``deletion_id``.

        Raises:
            ProvenanceError: there is no such request.
        """
        found = self._read(lambda conn: _deletions.deletion_records(conn, deletion_id=deletion_id))
        if not found:
            raise ProvenanceError(f"no deletion request with id {deletion_id!r}.")
        return found[0]

    def deletions(
        self, *, dataset: str | None = None, model: str | None = None
    ) -> list[DeletionRecord]:
        """Deletion requests, oldest first, optionally for one dataset and/or model.

        Raises:
            UnknownNameError: the dataset or model filter names nothing registered.
        """
        return self._read(
            lambda conn: _deletions.deletion_records(conn, dataset=dataset, model=model)
        )

    def deletion_sample_ids(self, deletion_id: int) -> list[str]:
        """The sample ids a deletion request removed.

        Raises:
            ProvenanceError: there is no such request.
        """
        return self._read(lambda conn: _deletions.deletion_sample_ids(conn, deletion_id))

    # Lineage --------------------------------------------------------------------------

    def checkpoints_that_saw(
        self, *, dataset: str, sample_id: str | None = None, subject_id: str | None = None
    ) -> list[CheckpointRecord]:
        """Checkpoints whose lineage includes the sample (or any sample of the subject).

        These are the checkpoints whose delta holds it plus all their descendants.

        Raises:
            UnknownSampleError: the sample or subject is not registered in ``dataset``.
        """
        return self._read(
            lambda conn: _queries.checkpoints_that_saw(
                conn, dataset=dataset, sample_id=sample_id, subject_id=subject_id
            )
        )

    def versions_that_saw(
        self, *, dataset: str, sample_id: str | None = None, subject_id: str | None = None
    ) -> list[VersionRecord]:
        """Model versions serving a checkpoint whose lineage includes the sample or subject.

        Raises:
            UnknownSampleError: the sample or subject is not registered in ``dataset``.
        """
        return self._read(
            lambda conn: _queries.versions_that_saw(
                conn, dataset=dataset, sample_id=sample_id, subject_id=subject_id
            )
        )

    def influence_set(self, *, model: str, number: int) -> npt.NDArray[np.int64]:
        """Sorted pks of every sample that influenced version ``number`` of ``model``."""
        number = _require_number(number)
        return self._read(lambda conn: _queries.influence_set(conn, model=model, number=number))

    def influence_sample_ids(self, *, model: str, number: int) -> list[str]:
        """Sample ids of :meth:`influence_set`, in pk order."""
        number = _require_number(number)
        return self._read(
            lambda conn: _queries.influence_sample_ids(conn, model=model, number=number)
        )

    def verify_version(self, *, model: str, number: int) -> VerifyReport:
        """Checks that no checkpoint serving in the version has seen a deleted sample.

        Returns a report rather than raising; call ``report.raise_if_failed()`` to raise
        :class:`~obliviate.errors.LineageError` instead.
        """
        number = _require_number(number)
        return self._read(lambda conn: _queries.verify_version(conn, model=model, number=number))
