"""Deterministic training: configs, epoch schedules and the loop."""

from obliviate.training.config import TrainConfig
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
    "EpochStats",
    "TrainConfig",
    "deterministic",
    "epoch_permutation",
    "epochs_before",
    "make_optimizer",
    "make_scheduler",
    "slice_epochs",
    "train_epochs",
]
