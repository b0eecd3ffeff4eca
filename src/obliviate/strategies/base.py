"""The Strategy contract shared by exact and approximate unlearning.

A strategy is bound to one named model in a workspace. ``fit`` trains it, ``forget`` removes
samples and returns evidence of what happened, ``predict`` serves the active version.
Every result says whether the forget was exact or approximate.
"""

from __future__ import annotations

import enum
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
import numpy.typing as npt
from torch import nn

from obliviate.errors import ConfigError, DataError, NotFittedError, UnknownSampleError
from obliviate.registry import Registry

if TYPE_CHECKING:
    from obliviate.data.feature_store import FeatureStore
    from obliviate.provenance import (
        DatasetRecord,
        Provenance,
        Resolution,
        SampleTable,
        VersionRecord,
    )
    from obliviate.storage import CheckpointStore
    from obliviate.training.executors import Executor

__all__ = [
    "STRATEGIES",
    "FitResult",
    "ForgetAuditor",
    "ForgetResult",
    "Guarantee",
    "ModelContext",
    "Prediction",
    "ProgressEvent",
    "Strategy",
]

ModelFactory = Callable[[], nn.Module]
ProgressCallback = Callable[["ProgressEvent"], None]


@dataclass(frozen=True)
class ProgressEvent:
    """A unit of long work finished: ``done`` of ``total`` steps of ``task``."""

    task: str
    done: int
    total: int
    detail: str = ""


class Guarantee(str, enum.Enum):
    """What a forget promises.

    EXACT: the served parameters equal retraining without the samples, bit for bit.
    APPROXIMATE: an update that aims at the retrained model; carries evidence, not proof.
    """

    EXACT = "exact"
    APPROXIMATE = "approximate"


@dataclass(frozen=True)
class ModelContext:
    """Everything a strategy needs from its workspace, for one named model."""

    name: str
    dataset: str
    provenance: Provenance
    store: CheckpointStore
    features: FeatureStore
    model_dir: Path
    auditor: ForgetAuditor | None = None
    executor: Executor | None = None


@dataclass(frozen=True)
class FitResult:
    """The outcome of ``fit`` or ``add``: the version now served and what training cost."""

    model: str
    version: int
    components: tuple[str, ...]
    samples: int
    sample_passes: int
    seconds: float


@dataclass(frozen=True)
class ForgetResult:
    """The outcome of one batched deletion.

    Attributes:
        model: the model's name.
        guarantee: exact or approximate.
        deletion_id: the provenance record of this deletion.
        forgotten_sample_ids: samples removed by this request.
        already_deleted_ids: requested samples an earlier request had removed (not re-done).
        noop: nothing was active to forget, so this request changed no component. (A SISA
            forget that found an interrupted retrain finishes it first; ``version`` is then
            the finished one, and ``version_before`` too.)
        version_before: the version served when the request arrived, or the one an
            interrupted retrain was finished into before this request's work.
        rolled_back_version: the exact version activated before any retraining (instant).
        version: the final retrained version (``None`` until a background retrain finishes).
        affected_components: components that held a deleted sample.
        earliest_slices: per affected component, the first slice that had to be retrained.
        samples_retrained: distinct samples the retraining trained on.
        sample_passes: samples x epochs of retraining.
        rollback_seconds: time from the call to the exact rolled-back version being active.
        seconds: total time, including retraining (when it ran in the foreground).
        evidence: for an approximate forget, the method's evidence (losses, residuals, ...).
        method: the approximate method used, or ``None`` for the strategy's own path.
        pending: a future resolving to the completed result when retraining runs in the
            background; ``None`` otherwise.
        request_id: the deletion request this result answers (given, or generated).
        receipt: the signed deletion receipt, when the workspace keeps an audit ledger.
    """

    model: str
    guarantee: Guarantee
    deletion_id: int | None
    forgotten_sample_ids: tuple[str, ...]
    already_deleted_ids: tuple[str, ...]
    noop: bool
    version_before: int | None
    rolled_back_version: int | None
    version: int | None
    affected_components: tuple[str, ...]
    earliest_slices: Mapping[str, int]
    samples_retrained: int
    sample_passes: int
    rollback_seconds: float
    seconds: float
    evidence: Mapping[str, float] = field(default_factory=dict)
    method: str | None = None
    pending: Future[ForgetResult] | None = field(default=None, compare=False, repr=False)
    request_id: str = ""
    receipt: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def unchanged(
        cls,
        *,
        model: str,
        guarantee: Guarantee,
        deletion_id: int | None,
        already_deleted_ids: tuple[str, ...],
        version: int,
        seconds: float,
    ) -> ForgetResult:
        """A forget that changed no model: no served component held any requested sample."""
        return cls(
            model=model,
            guarantee=guarantee,
            deletion_id=deletion_id,
            forgotten_sample_ids=(),
            already_deleted_ids=already_deleted_ids,
            noop=True,
            version_before=version,
            rolled_back_version=None,
            version=version,
            affected_components=(),
            earliest_slices={},
            samples_retrained=0,
            sample_passes=0,
            rollback_seconds=seconds,
            seconds=seconds,
        )

    def wait(self, timeout: float | None = None) -> ForgetResult:
        """The completed result: ``self`` when nothing is pending, else the background one."""
        return self if self.pending is None else self.pending.result(timeout)


@dataclass(frozen=True)
class Prediction:
    """Aggregated predictions and how they were made.

    Attributes:
        labels: predicted class per input.
        probabilities: aggregated class scores per input (vote shares or mean probabilities).
        version: the model version that answered.
        components_used: components that voted.
        components_total: components the model has.
        degraded: some components were left out (rolled back with no earlier checkpoint).
    """

    labels: npt.NDArray[np.int64]
    probabilities: npt.NDArray[np.float32]
    version: int
    components_used: int
    components_total: int
    degraded: bool


class ForgetAuditor(Protocol):
    """Records every deletion request and its outcome (the workspace's audit ledger).

    :meth:`Strategy.forget` calls it around every forget, so no path can skip the log.
    """

    def received(
        self,
        *,
        request_id: str,
        model: str,
        guarantee: Guarantee,
        sample_ids: Sequence[str],
        subject_ids: Sequence[str],
        reason: str,
    ) -> None:
        """The request arrived (before any model changes)."""

    def completed(self, result: ForgetResult) -> ForgetResult:
        """The request was honoured; returns ``result`` with its receipt attached."""

    def failed(self, *, request_id: str, model: str, error: BaseException) -> None:
        """The request failed; the served model is unchanged or was restored."""


class Strategy(ABC):
    """A way of training that makes forgetting possible.

    Subclasses set ``name``, ``guarantee`` and ``config_class`` and register themselves in
    :data:`STRATEGIES`.
    """

    name: ClassVar[str]
    guarantee: ClassVar[Guarantee]
    config_class: ClassVar[type[Any]]

    def __init__(
        self, config: Any, *, context: ModelContext, model_factory: ModelFactory | None = None
    ) -> None:
        self.config = config
        self.context = context
        self.model_factory = model_factory
        self.progress: ProgressCallback | None = None

    def _version_record(self, version: int | None = None) -> VersionRecord:
        """The active version, or version ``version``, of this model.

        Raises:
            NotFittedError: nothing is fitted (no active version).
        """
        prov = self.context.provenance
        record = (
            prov.active_version(self.context.name)
            if version is None
            else prov.version(model=self.context.name, number=version)
        )
        if record is None:
            raise NotFittedError(f"model {self.context.name!r} is not fitted; call fit first.")
        return record

    def _checked_features(
        self, features: npt.ArrayLike, dataset: DatasetRecord | None = None
    ) -> npt.NDArray[np.float32]:
        """``features`` as float32, with the dataset's feature shape per row.

        ``dataset`` is the model's dataset record when the caller has read it already.

        Raises:
            DataError: the rows have another shape.
        """
        if dataset is None:
            dataset = self.context.provenance.dataset(self.context.dataset)
        shape = tuple(dataset.feature_shape)
        x = np.asarray(features, dtype=np.float32)
        if tuple(x.shape[1:]) != shape:
            raise DataError(
                f"features must have shape (n, {', '.join(map(str, shape))}); got {x.shape}."
            )
        return x

    def _require_known(self, resolution: Resolution) -> None:
        """Refuses a forget naming ids or subjects the dataset never registered.

        Raises:
            UnknownSampleError: some were never registered (nothing is deleted).
        """
        if resolution.unknown_ids:
            raise UnknownSampleError(
                f"unknown ids for dataset {self.context.dataset!r}: "
                f"{list(resolution.unknown_ids)[:5]}; nothing was deleted."
            )

    def _purge_features(
        self, pks: npt.NDArray[np.int64], *, deleted: SampleTable | None = None
    ) -> None:
        """Zeroes deleted samples' features in the workspace (they are personal data).

        ``deleted`` is the dataset's table of deleted samples when the caller has it already.
        """
        table = deleted
        if table is None:
            table = self.context.provenance.samples(dataset=self.context.dataset, status="deleted")
        rows = np.flatnonzero(np.isin(table.pk, pks))
        if len(rows):
            self.context.features.purge(self.context.dataset, table.chunks[rows], table.rows[rows])

    def report(self, task: str, done: int, total: int, detail: str = "") -> None:
        """Tells the progress callback (if any) about finished work; the CLI draws bars."""
        if self.progress is not None:
            self.progress(ProgressEvent(task=task, done=done, total=total, detail=detail))

    @abstractmethod
    def fit(self, *, sample_ids: Sequence[str] | None = None) -> FitResult:
        """Trains from scratch on the dataset's active samples (or the given subset)."""

    def forget(
        self,
        *,
        sample_ids: Sequence[str] = (),
        subject_ids: Sequence[str] = (),
        reason: str = "",
        background: bool = False,
        request_id: str | None = None,
        method: str | None = None,
        method_config: Any = None,
    ) -> ForgetResult:
        """Removes samples (by id or by data subject) from the served model.

        Every strategy goes through this door: the workspace's auditor (if any) logs the
        request before the model changes and its outcome after, and attaches a receipt.

        Args:
            sample_ids: samples to forget.
            subject_ids: data subjects whose samples are all forgotten.
            reason: free text kept in the erasable registry (never in the ledger).
            background: return once the exact rollback is served; retrain in the background.
            request_id: the caller's id for this request (generated when not given).
            method: an approximate unlearning method (see
                ``obliviate.strategies.approximate.METHODS``) to update the served components
                in place of the strategy's exact path. The result is labelled approximate.
            method_config: that method's config object (defaults when ``None``).
        """
        request_id = request_id or uuid.uuid4().hex
        auditor = self.context.auditor
        guarantee = self.guarantee if method is None else Guarantee.APPROXIMATE
        if auditor is not None:
            auditor.received(
                request_id=request_id,
                model=self.context.name,
                guarantee=guarantee,
                sample_ids=list(sample_ids),
                subject_ids=list(subject_ids),
                reason=reason,
            )
        try:
            if method is None:
                result = self._forget(
                    sample_ids=sample_ids,
                    subject_ids=subject_ids,
                    reason=reason,
                    background=background,
                )
            else:
                result = self._forget_approximately(
                    sample_ids=sample_ids,
                    subject_ids=subject_ids,
                    reason=reason,
                    method=method,
                    method_config=method_config,
                )
        except BaseException as exc:
            if auditor is not None:
                auditor.failed(request_id=request_id, model=self.context.name, error=exc)
            raise
        result = replace(result, request_id=request_id, pending=_tagged(result.pending, request_id))
        return result if auditor is None else auditor.completed(result)

    @abstractmethod
    def _forget(
        self,
        *,
        sample_ids: Sequence[str],
        subject_ids: Sequence[str],
        reason: str,
        background: bool,
    ) -> ForgetResult:
        """The strategy's own deletion; :meth:`forget` wraps it with the audit trail."""

    def _forget_approximately(
        self,
        *,
        sample_ids: Sequence[str],
        subject_ids: Sequence[str],
        reason: str,
        method: str,
        method_config: Any,
    ) -> ForgetResult:
        """An approximate update of the served components; strategies opt in by overriding."""
        raise ConfigError(
            f"strategy {self.name!r} does not support approximate forgetting (method "
            f"{method!r}); forget without a method for its {self.guarantee.value} path."
        )

    @abstractmethod
    def predict(self, features: npt.ArrayLike, *, version: int | None = None) -> Prediction:
        """Predicts with the active version (or a given one)."""


def _tagged(pending: Future[ForgetResult] | None, request_id: str) -> Future[ForgetResult] | None:
    """A future like ``pending`` whose result carries ``request_id``."""
    if pending is None:
        return None
    tagged: Future[ForgetResult] = Future()

    def relay(done: Future[ForgetResult]) -> None:
        try:
            tagged.set_result(replace(done.result(), request_id=request_id))
        except BaseException as exc:
            tagged.set_exception(exc)

    pending.add_done_callback(relay)
    return tagged


STRATEGIES: Registry[type[Strategy]] = Registry("strategy")
