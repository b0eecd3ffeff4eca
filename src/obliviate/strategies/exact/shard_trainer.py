"""Trains one shard slice by slice, checkpointing each slice with its full training state.

Each slice checkpoint carries model, optimiser, scheduler and RNG state, so resuming at
slice ``r`` is the same computation as never having stopped. Each records the hash of the
exact ordered ids it trained on (chained through its parent) and the samples it saw first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from obliviate._hashing import derive_seed, sha256_hex, sha256_of_ids
from obliviate.errors import TrainingError
from obliviate.provenance import CheckpointRecord
from obliviate.storage import pack_training_state, unpack_training_state
from obliviate.strategies.base import ModelContext
from obliviate.training import (
    TrainConfig,
    deterministic,
    epochs_before,
    make_optimizer,
    make_scheduler,
    train_epochs,
)

__all__ = ["ShardData", "ShardRun", "ShardTrainer"]


@dataclass(frozen=True)
class ShardData:
    """One shard's surviving samples, sorted by (slice, order key): each stage is a prefix."""

    pks: npt.NDArray[np.int64]
    sample_ids: npt.NDArray[np.str_]
    slices: npt.NDArray[np.int64]
    order_keys: npt.NDArray[np.uint64]
    labels: npt.NDArray[np.int64]
    features: npt.NDArray[np.float32]

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


class ShardTrainer:
    """Trains shards of one model; shards never read each other's data (isolation).

    Args:
        context: the model's workspace handles.
        build_model: returns a fresh, untrained module (called under a per-shard seed).
        train: optimisation settings.
        stage_epochs: epochs per slice stage, indexed by slice.
        horizon_epochs: the schedule's horizon (data-independent).
        seed: the model's root seed.
        config_hash: binds checkpoints and lineage to the model's configuration.
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
    ) -> None:
        self.context = context
        self.build_model = build_model
        self.train = train
        self.stage_epochs = stage_epochs
        self.horizon_epochs = horizon_epochs
        self.seed = seed
        self.config_hash = config_hash

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
    ) -> ShardRun:
        """Trains stages after ``base`` (or from scratch) through ``last_stage``."""
        model = self.fresh_model(component)
        optimizer = make_optimizer(self.train, model)
        scheduler = make_scheduler(self.train, optimizer, total_epochs=self.horizon_epochs)
        if base is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(derive_seed(self.seed, "train", component))
                rng = torch.get_rng_state()
            lineage = sha256_hex("root", self.config_hash, component)
            parent: CheckpointRecord | None = None
            start = 0
        else:
            stored = self.context.store.get(base.checkpoint_id)
            restored = unpack_training_state(
                stored.tensors, stored.meta, model=model, optimizer=optimizer, scheduler=scheduler
            )
            rng = restored if restored is not None else torch.get_rng_state()
            lineage = base.lineage_hash
            parent = base
            start = int(base.meta["slice"]) + 1
        features = torch.from_numpy(np.ascontiguousarray(data.features))
        labels = torch.from_numpy(data.labels)
        passes = 0
        for stage in range(start, last_stage + 1):
            size = data.stage_size(stage)
            epochs = self.stage_epochs[stage]
            with torch.random.fork_rng(devices=[]), deterministic():
                torch.set_rng_state(rng)
                stats = train_epochs(
                    model=model,
                    optimizer=optimizer,
                    scheduler=scheduler,
                    features=features[:size],
                    labels=labels[:size],
                    order_keys=data.order_keys[:size],
                    config=self.train,
                    seed=derive_seed(self.seed, "order", component),
                    first_epoch=epochs_before(self.stage_epochs, stage),
                    epochs=epochs,
                )
                rng = torch.get_rng_state()
            passes += stats.sample_passes
            lineage = sha256_hex(
                lineage, f"stage:{stage}:epochs:{epochs}", sha256_of_ids(data.sample_ids[:size])
            )
            parent = self._checkpoint(
                component=component,
                model=model,
                optimizer=optimizer,
                scheduler=scheduler,
                rng=rng,
                stage=stage,
                lineage=lineage,
                parent=parent,
                new_pks=data.pks[data.slices == stage],
                seen=size,
            )
        if parent is None:
            raise TrainingError(
                f"nothing to train for {component}: its checkpoint is at slice {start - 1}, "
                f"already at or past the last slice {last_stage}."
            )
        return ShardRun(
            final=parent,
            stages_trained=max(last_stage + 1 - start, 0),
            samples=len(data.pks),
            sample_passes=passes,
        )

    def _checkpoint(
        self,
        *,
        component: str,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        rng: torch.Tensor,
        stage: int,
        lineage: str,
        parent: CheckpointRecord | None,
        new_pks: npt.NDArray[np.int64],
        seen: int,
    ) -> CheckpointRecord:
        extra = {
            "model": self.context.name,
            "component": component,
            "slice": stage,
            "lineage_hash": lineage,
            "config_hash": self.config_hash,
        }
        tensors, meta = pack_training_state(
            model=model, optimizer=optimizer, scheduler=scheduler, rng_state=rng, extra=extra
        )
        ref = self.context.store.put(tensors=tensors, meta=meta)
        return self.context.provenance.record_checkpoint(
            model=self.context.name,
            component=component,
            checkpoint_id=ref.checkpoint_id,
            storage_url=ref.url,
            parent_id=None if parent is None else parent.checkpoint_id,
            lineage_hash=lineage,
            new_sample_pks=new_pks,
            num_samples_seen=seen,
            meta={"slice": stage, "epochs": epochs_before(self.stage_epochs, stage + 1)},
        )
