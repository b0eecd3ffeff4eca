"""Slice-stage training as a picklable task: references in, checkpoint ids out.

A :class:`TrainTask` is what crosses a process (or Ray) boundary: where the features are
(feature-store root, dataset, chunk and row of each sample), where checkpoints go (the
store URL), the training configuration and seeds, and the base checkpoint to resume from.
:func:`run_train_task` runs in the worker: it reads its own rows from the memory-mapped
feature store, trains each component stage by stage (one at a time, or all in one batched
call), writes a checkpoint after every stage and returns the ids. The caller records them
in the provenance registry; the worker never touches it.

Checkpoints are content-addressed, so a task that is retried after a crash writes the same
ids, and the same task gives the same ids in any executor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from obliviate.data.feature_store import FeatureStore
from obliviate.errors import TrainingError
from obliviate.models import build_model, resolve_factory
from obliviate.storage import CheckpointStore, pack_training_state, unpack_training_state
from obliviate.training.batched import SlotRun, train_batched
from obliviate.training.config import TrainConfig
from obliviate.training.loop import (
    EpochStats,
    deterministic,
    make_optimizer,
    make_scheduler,
    train_epochs,
)
from obliviate.training.schedule import epochs_before

__all__ = ["StageCheckpoint", "StageJob", "TrainTask", "ZooModel", "run_train_task"]


@dataclass(frozen=True)
class ZooModel:
    """A picklable model builder: a zoo name (or ``"package.module:function"``) and options."""

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    options: Mapping[str, Any] = field(default_factory=dict)

    def __call__(self) -> nn.Module:
        if ":" in self.name:
            return resolve_factory(self.name)()
        return build_model(
            self.name,
            input_shape=tuple(self.input_shape),
            num_classes=self.num_classes,
            **dict(self.options),
        )


@dataclass(frozen=True)
class StageJob:
    """One component's stages to train, by reference.

    Attributes:
        component: the component's name.
        chunks: feature-store chunk of each sample, in training order (stages are prefixes).
        rows: row of each sample in its chunk.
        labels: class of each sample.
        order_keys: order key of each sample.
        slices: slice of each sample (non-decreasing).
        base_checkpoint_id: checkpoint to resume from; ``None`` trains from scratch.
        first_stage: the first stage to train (the base's slice + 1, or 0).
        last_stage: the last stage to train.
        lineages: lineage hash of each stage's checkpoint, ``first_stage`` to ``last_stage``
            (computed by the caller from the sample ids, which stay with the caller).
        init_seed: seeds the model's initial weights.
        rng_seed: seeds the training RNG when starting from scratch.
        order_seed: seeds the per-epoch sample order.
    """

    component: str
    chunks: npt.NDArray[np.str_]
    rows: npt.NDArray[np.int64]
    labels: npt.NDArray[np.int64]
    order_keys: npt.NDArray[np.uint64]
    slices: npt.NDArray[np.int64]
    base_checkpoint_id: str | None
    first_stage: int
    last_stage: int
    lineages: tuple[str, ...]
    init_seed: int
    rng_seed: int
    order_seed: int

    def stage_sizes(self) -> list[int]:
        """Samples in slices ``0..r`` for each stage ``r`` up to ``last_stage``."""
        return [
            int(np.searchsorted(self.slices, stage, side="right"))
            for stage in range(self.last_stage + 1)
        ]


@dataclass(frozen=True)
class TrainTask:
    """Components trained together by one worker.

    Attributes:
        jobs: the components; for the batched trainer, the fixed slot layout (``None`` is
            an idle slot), for the sequential one, usually a single job.
        batched: train the jobs in one batched call (else one after another).
        feature_root: the workspace's feature-store directory.
        dataset: the dataset the rows belong to.
        feature_shape: shape of one sample's features.
        store_url: the checkpoint store's URL.
        build_model: a picklable callable returning a fresh module.
        train: optimisation settings.
        stage_epochs: epochs of each stage.
        horizon_epochs: the learning-rate schedule's horizon.
        meta: metadata every checkpoint carries (model name, config hash).
    """

    jobs: tuple[StageJob | None, ...]
    batched: bool
    feature_root: str
    dataset: str
    feature_shape: tuple[int, ...]
    store_url: str
    build_model: Callable[[], nn.Module]
    train: TrainConfig
    stage_epochs: tuple[int, ...]
    horizon_epochs: int
    meta: Mapping[str, Any]


@dataclass(frozen=True)
class StageCheckpoint:
    """A checkpoint a task wrote: which component and stage, and its id and URL."""

    component: str
    stage: int
    checkpoint_id: str
    url: str
    lineage_hash: str
    sample_passes: int


@dataclass
class _Prepared:
    job: StageJob
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    rng: torch.Tensor
    features: torch.Tensor
    labels: torch.Tensor


def _prepare(task: TrainTask, job: StageJob, store: CheckpointStore) -> _Prepared:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(job.init_seed)
        model = task.build_model()
    optimizer = make_optimizer(task.train, model)
    scheduler = make_scheduler(task.train, optimizer, total_epochs=task.horizon_epochs)
    if job.base_checkpoint_id is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(job.rng_seed)
            rng = torch.get_rng_state()
    else:
        stored = store.get(job.base_checkpoint_id)
        restored = unpack_training_state(
            stored.tensors, stored.meta, model=model, optimizer=optimizer, scheduler=scheduler
        )
        rng = restored if restored is not None else torch.get_rng_state()
    if len(job.rows):
        array = FeatureStore(Path(task.feature_root)).read(task.dataset, job.chunks, job.rows)
    else:
        array = np.empty((0, *task.feature_shape), dtype=np.float32)
    return _Prepared(
        job=job,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        rng=rng,
        features=torch.from_numpy(np.ascontiguousarray(array)),
        labels=torch.from_numpy(np.ascontiguousarray(job.labels, dtype=np.int64)),
    )


def _save(
    task: TrainTask, store: CheckpointStore, prep: _Prepared, stage: int, passes: int
) -> StageCheckpoint:
    job = prep.job
    lineage = job.lineages[stage - job.first_stage]
    extra = {**task.meta, "component": job.component, "slice": stage, "lineage_hash": lineage}
    tensors, meta = pack_training_state(
        model=prep.model,
        optimizer=prep.optimizer,
        scheduler=prep.scheduler,
        rng_state=prep.rng,
        extra=extra,
    )
    ref = store.put(tensors=tensors, meta=meta)
    return StageCheckpoint(
        component=job.component,
        stage=stage,
        checkpoint_id=ref.checkpoint_id,
        url=ref.url,
        lineage_hash=lineage,
        sample_passes=passes,
    )


def _run_sequential(
    task: TrainTask, store: CheckpointStore, prep: _Prepared
) -> list[StageCheckpoint]:
    job = prep.job
    sizes = job.stage_sizes()
    written = []
    for stage in range(job.first_stage, job.last_stage + 1):
        size = sizes[stage]
        with torch.random.fork_rng(devices=[]), deterministic():
            torch.set_rng_state(prep.rng)
            stats = train_epochs(
                model=prep.model,
                optimizer=prep.optimizer,
                scheduler=prep.scheduler,
                features=prep.features[:size],
                labels=prep.labels[:size],
                order_keys=job.order_keys[:size],
                config=task.train,
                seed=job.order_seed,
                first_epoch=epochs_before(list(task.stage_epochs), stage),
                epochs=task.stage_epochs[stage],
            )
            prep.rng = torch.get_rng_state()
        written.append(_save(task, store, prep, stage, stats.sample_passes))
    return written


def _run_batched(
    task: TrainTask, store: CheckpointStore, preps: Sequence[_Prepared | None]
) -> list[StageCheckpoint]:
    written: list[StageCheckpoint] = []

    def on_stage_end(slot: int, stage: int, stats: EpochStats) -> None:
        prep = preps[slot]
        if prep is not None:
            written.append(_save(task, store, prep, stage, stats.sample_passes))

    slots = [
        None
        if prep is None
        else SlotRun(
            name=prep.job.component,
            model=prep.model,
            optimizer=prep.optimizer,
            scheduler=prep.scheduler,
            features=prep.features,
            labels=prep.labels,
            order_keys=prep.job.order_keys,
            stage_sizes=prep.job.stage_sizes(),
            first_stage=prep.job.first_stage,
            last_stage=prep.job.last_stage,
            order_seed=prep.job.order_seed,
        )
        for prep in preps
    ]
    train_batched(
        slots=slots, config=task.train, stage_epochs=task.stage_epochs, on_stage_end=on_stage_end
    )
    return written


def run_train_task(task: TrainTask) -> tuple[StageCheckpoint, ...]:
    """Trains the task's components and returns their checkpoints, per component in order.

    Raises:
        TrainingError: a loss became non-finite, or a job has no stage to train.
        StorageError: a base checkpoint is missing or corrupt, or a write failed.
    """
    for job in task.jobs:
        if job is not None and job.first_stage > job.last_stage:
            raise TrainingError(
                f"nothing to train for {job.component}: its checkpoint is at slice "
                f"{job.first_stage - 1}, already at or past the last slice {job.last_stage}."
            )
    store = CheckpointStore(task.store_url)
    preps = [None if job is None else _prepare(task, job, store) for job in task.jobs]
    if task.batched:
        written = _run_batched(task, store, preps)
    else:
        written = [
            c for prep in preps if prep is not None for c in _run_sequential(task, store, prep)
        ]
    order = {job.component: i for i, job in enumerate(task.jobs) if job is not None}
    return tuple(sorted(written, key=lambda c: (order[c.component], c.stage)))
