"""Deterministic training: configs, epoch schedules, the loop, batched training, executors."""

from obliviate.training.batched import SlotRun, train_batched
from obliviate.training.config import TrainConfig
from obliviate.training.executors import (
    EXECUTORS,
    Executor,
    InlineExecutor,
    ProcessExecutor,
    RayExecutor,
    make_executor,
)
from obliviate.training.loop import (
    EpochStats,
    deterministic,
    epoch_permutation,
    make_optimizer,
    make_scheduler,
    train_epochs,
)
from obliviate.training.schedule import epochs_before, slice_epochs

__all__ = [
    "EXECUTORS",
    "EpochStats",
    "Executor",
    "InlineExecutor",
    "ProcessExecutor",
    "RayExecutor",
    "SlotRun",
    "TrainConfig",
    "deterministic",
    "epoch_permutation",
    "epochs_before",
    "make_executor",
    "make_optimizer",
    "make_scheduler",
    "slice_epochs",
    "train_batched",
    "train_epochs",
]
