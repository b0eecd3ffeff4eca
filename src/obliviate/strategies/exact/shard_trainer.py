"""Trains shards slice by slice, checkpointing each slice with its full training state.

Each slice checkpoint carries model, optimiser, scheduler and RNG state, so resuming at
slice ``r`` is the same computation as never having stopped. Each records the hash of the
exact ordered ids it trained on (chained through its parent) and the samples it saw first.

Training itself runs as :class:`~obliviate.training.stage_jobs.TrainTask` s on an
:class:`~obliviate.training.executors.Executor` (in-process, a process pool or Ray): the
tasks carry references, not features, and return checkpoint ids, which this class records
in the provenance registry (only the calling process writes there). With
``trainer="batched"`` shard ``s`` always trains in slot ``s % slots`` of group
``s // slots``, in fit and in forget alike, so the batched numerics are the same in both.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from obliviate._hashing import derive_seed, sha256_hex, sha256_of_ids
from obliviate.errors import ConfigError, TrainingError
from obliviate.provenance import CheckpointRecord
from obliviate.storage import unpack_training_state
from obliviate.strategies.base import ModelContext
from obliviate.training import TrainConfig, epochs_before
from obliviate.training.executors import Executor, InlineExecutor, default_executor
from obliviate.training.stage_jobs import StageCheckpoint, StageJob, TrainTask, run_train_task

__all__ = ["ShardData", "ShardRequest", "ShardRun", "ShardTrainer"]

TRAINERS = ("sequential", "batched")


@dataclass(frozen=True)
class ShardData:
    """One shard's surviving samples, sorted by (slice, order key): each stage is a prefix.

    ``chunks``/``rows`` locate each sample's features in the workspace's feature store;
    training tasks read features from there, so only references cross process boundaries.
    """

    pks: npt.NDArray[np.int64]
    sample_ids: npt.NDArray[np.str_]
    slices: npt.NDArray[np.int64]
    order_keys: npt.NDArray[np.uint64]
    labels: npt.NDArray[np.int64]
    features: npt.NDArray[np.float32]
    chunks: npt.NDArray[np.str_] | None = None
    rows: npt.NDArray[np.int64] | None = None

    def stage_size(self, stage: int) -> int:
        """Samples in slices ``0..stage``."""
        return int(np.searchsorted(self.slices, stage, side="right"))


@dataclass(frozen=True)
class ShardRun:
    """What training one shard produced."""

    final: CheckpointRecord
    stages_trained: int
    samples: int
    sample_passes: int


@dataclass(frozen=True)
class ShardRequest:
    """One shard to train: its data, the checkpoint to resume from and the last stage."""

    shard: int
    component: str
    data: ShardData
    base: CheckpointRecord | None
    last_stage: int


class ShardTrainer:
    """Trains shards of one model; shards never read each other's data (isolation).

    Args:
        context: the model's workspace handles (its ``executor``, if set, runs the work).
        build_model: returns a fresh, untrained module (called under a per-shard seed); it
            must be picklable for a process or Ray executor, else training runs in-process.
        train: optimisation settings.
        stage_epochs: epochs per slice stage, indexed by slice.
        horizon_epochs: the schedule's horizon (data-independent).
        seed: the model's root seed.
        config_hash: binds checkpoints and lineage to the model's configuration.
        trainer: ``"sequential"`` (one shard at a time) or ``"batched"`` (torch.func).
        slots: models per batched group (the fixed slot layout); ignored when sequential.
    """

    def __init__(
        self,
        *,
        context: ModelContext,
        build_model: Callable[[], nn.Module],
        train: TrainConfig,
        stage_epochs: list[int],
        horizon_epochs: int,
        seed: int,
        config_hash: str,
        trainer: str = "sequential",
        slots: int = 1,
    ) -> None:
        if trainer not in TRAINERS:
            raise ConfigError(f"trainer must be one of {TRAINERS}; got {trainer!r}.")
        self.context = context
        self.build_model = build_model
        self.train = train
        self.stage_epochs = stage_epochs
        self.horizon_epochs = horizon_epochs
        self.seed = seed
        self.config_hash = config_hash
        self.trainer = trainer
        self.slots = slots

    def fresh_model(self, component: str) -> nn.Module:
        """A newly initialised module for ``component``, identical on every call."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.seed, "init", component))
            return self.build_model()

    def load_model(self, checkpoint_id: str, component: str) -> nn.Module:
        """The module stored in a checkpoint, in eval mode."""
        model = self.fresh_model(component)
        stored = self.context.store.get(checkpoint_id)
        unpack_training_state(stored.tensors, stored.meta, model=model)
        model.eval()
        return model

    def run(
        self,
        *,
        component: str,
        data: ShardData,
        base: CheckpointRecord | None,
        last_stage: int,
        shard: int = 0,
    ) -> ShardRun:
        """Trains stages after ``base`` (or from scratch) through ``last_stage``."""
        request = ShardRequest(
            shard=shard, component=component, data=data, base=base, last_stage=last_stage
        )
        return self.run_many(requests=[request])[0]

    def run_many(self, *, requests: Sequence[ShardRequest]) -> list[ShardRun]:
        """Trains several shards (in parallel where the executor allows); results in order.

        Raises:
            TrainingError: a shard has nothing to train, or its loss became non-finite.
        """
        jobs = [self._job(request) for request in requests]
        if self.trainer == "batched":
            groups: dict[int, list[StageJob | None]] = {}
            for request, job in zip(requests, jobs, strict=True):
                slot_jobs = groups.setdefault(request.shard // self.slots, [None] * self.slots)
                slot_jobs[request.shard % self.slots] = job
            tasks = [self._task(tuple(group), batched=True) for _, group in sorted(groups.items())]
        else:
            tasks = [self._task((job,), batched=False) for job in jobs]
        written: dict[str, list[StageCheckpoint]] = {}
        for result in self._executor().run(fn=run_train_task, tasks=tasks):
            for checkpoint in result:
                written.setdefault(checkpoint.component, []).append(checkpoint)
        return [self._record(request, written.get(request.component, [])) for request in requests]

    # ------------------------------------------------------------------------ internals
    def _executor(self) -> Executor:
        executor = self.context.executor or default_executor()
        if not executor.in_process:
            try:
                pickle.dumps(self.build_model)
            except Exception:
                # A lambda or closure as model_factory cannot reach another process; the
                # result does not depend on where it runs, so train here instead.
                threads = getattr(executor, "threads_per_worker", 1)
                return InlineExecutor(threads=threads)
        return executor

    def _job(self, request: ShardRequest) -> StageJob:
        data, base, component = request.data, request.base, request.component
        if data.chunks is None or data.rows is None:
            raise TrainingError(
                f"shard data of {component} lacks feature references (chunks, rows)."
            )
        if base is None:
            lineage = sha256_hex("root", self.config_hash, component)
            first = 0
        else:
            lineage = base.lineage_hash
            first = int(base.meta["slice"]) + 1
        lineages = []
        for stage in range(first, request.last_stage + 1):
            size = data.stage_size(stage)
            epochs = self.stage_epochs[stage]
            lineage = sha256_hex(
                lineage, f"stage:{stage}:epochs:{epochs}", sha256_of_ids(data.sample_ids[:size])
            )
            lineages.append(lineage)
        return StageJob(
            component=component,
            chunks=data.chunks,
            rows=data.rows,
            labels=data.labels,
            order_keys=data.order_keys,
            slices=data.slices,
            base_checkpoint_id=None if base is None else base.checkpoint_id,
            first_stage=first,
            last_stage=request.last_stage,
            lineages=tuple(lineages),
            init_seed=derive_seed(self.seed, "init", component),
            rng_seed=derive_seed(self.seed, "train", component),
            order_seed=derive_seed(self.seed, "order", component),
        )

    def _task(self, jobs: tuple[StageJob | None, ...], *, batched: bool) -> TrainTask:
        dataset = self.context.provenance.dataset(self.context.dataset)
        return TrainTask(
            jobs=jobs,
            batched=batched,
            feature_root=str(self.context.features.root),
            dataset=self.context.dataset,
            feature_shape=tuple(dataset.feature_shape),
            store_url=self.context.store.url,
            build_model=self.build_model,
            train=self.train,
            stage_epochs=tuple(self.stage_epochs),
            horizon_epochs=self.horizon_epochs,
            meta={"model": self.context.name, "config_hash": self.config_hash},
        )

    def _record(self, request: ShardRequest, written: list[StageCheckpoint]) -> ShardRun:
        data, parent = request.data, request.base
        if not written:
            raise TrainingError(f"training {request.component} wrote no checkpoint.")
        for checkpoint in written:
            stage = checkpoint.stage
            parent = self.context.provenance.record_checkpoint(
                model=self.context.name,
                component=request.component,
                checkpoint_id=checkpoint.checkpoint_id,
                storage_url=checkpoint.url,
                parent_id=None if parent is None else parent.checkpoint_id,
                lineage_hash=checkpoint.lineage_hash,
                new_sample_pks=data.pks[data.slices == stage],
                num_samples_seen=data.stage_size(stage),
                meta={"slice": stage, "epochs": epochs_before(self.stage_epochs, stage + 1)},
            )
        if parent is None:  # pragma: no cover - written is non-empty
            raise TrainingError(f"training {request.component} recorded no checkpoint.")
        return ShardRun(
            final=parent,
            stages_trained=len(written),
            samples=len(data.pks),
            sample_passes=sum(c.sample_passes for c in written),
        )
