"""The deterministic training loop every exact strategy uses.

Bitwise reproducibility rests on three rules kept here: the per-epoch order of samples is a
hash of (seed, epoch, sample order key), so survivors keep their relative order when others
are deleted; all randomness (dropout) comes from an RNG state that the caller saves and
restores at checkpoint boundaries; and the schedule advances per epoch, never per step.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from obliviate._hashing import derive_seed, mix64
from obliviate.errors import TrainingError
from obliviate.training.config import TrainConfig

__all__ = [
    "EpochStats",
    "deterministic",
    "epoch_permutation",
    "make_optimizer",
    "make_scheduler",
    "train_epochs",
]


@dataclass(frozen=True)
class EpochStats:
    """What a run of epochs did: sample-passes, steps and the last epoch's mean loss."""

    sample_passes: int
    steps: int
    last_loss: float


@contextmanager
def deterministic() -> Iterator[None]:
    """Turns on PyTorch's deterministic algorithms for the duration, then restores."""
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


def epoch_permutation(
    order_keys: npt.NDArray[np.uint64], *, seed: int, epoch: int
) -> npt.NDArray[np.int64]:
    """The visiting order of samples in global epoch ``epoch``.

    Each sample's position depends only on its own key, so removing a sample removes it from
    the sequence without moving anyone else relative to each other.
    """
    salt = derive_seed(seed, "epoch", epoch)
    return np.argsort(mix64(order_keys, salt), kind="stable").astype(np.int64)


def make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The optimiser named in ``config`` over the model's trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )


def make_scheduler(
    config: TrainConfig, optimizer: torch.optim.Optimizer, *, total_epochs: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-epoch LambdaLR (constant or cosine to zero over ``total_epochs``)."""
    horizon = max(total_epochs, 1)
    if config.scheduler == "cosine":

        def factor(epoch: int) -> float:
            return 0.5 * (1.0 + math.cos(math.pi * min(epoch, horizon) / horizon))

    else:

        def factor(epoch: int) -> float:
            return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=factor)


def train_epochs(
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    features: torch.Tensor,
    labels: torch.Tensor,
    order_keys: npt.NDArray[np.uint64],
    config: TrainConfig,
    seed: int,
    first_epoch: int,
    epochs: int,
) -> EpochStats:
    """Runs ``epochs`` epochs of minibatch training starting at global epoch ``first_epoch``.

    Uses the global torch RNG for dropout; callers own saving and restoring its state.

    Raises:
        TrainingError: the loss became NaN or infinite (the caller discards the model).
    """
    n = int(features.shape[0])
    passes = steps = 0
    last_loss = float("nan")
    model.train()
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(first_epoch, first_epoch + epochs):
        if n:
            perm = torch.from_numpy(epoch_permutation(order_keys, seed=seed, epoch=epoch))
            total = 0.0
            for start in range(0, n, config.batch_size):
                index = perm[start : start + config.batch_size]
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model(features[index]), labels[index])
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise TrainingError(
                        f"the training loss became {value} at epoch {epoch}, step {steps}; "
                        "lower the learning rate or enable grad_clip."
                    )
                loss.backward()
                if config.grad_clip is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                total += value * int(index.numel())
                steps += 1
            passes += n
            last_loss = total / n
        with warnings.catch_warnings():
            # An empty stage (all its samples deleted) still advances the epoch counter, so
            # the schedule stays data-independent; PyTorch warns that no step preceded it.
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)`")
            scheduler.step()
    return EpochStats(sample_passes=passes, steps=steps, last_loss=last_loss)
