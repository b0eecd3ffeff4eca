"""Trains many small models of one architecture at once with ``torch.func``.

Shard models are small, and one shard at a time leaves a CPU mostly waiting on Python and
the dispatcher. Here the M models' parameters are stacked (``stack_module_state``), one
forward pass runs all of them (``vmap`` over ``functional_call``), and one backward pass of
the *sum* of per-model losses gives every model exactly its own gradient. Isolation (no
model's step depends on another model's data) is kept by construction:

* the loss is a sum over models, never a mean (a mean would scale every gradient by 1/M);
* gradient clipping, learning rates, momentum and Adam's step counts are per model
  (:mod:`obliviate.training.functional_optim`);
* each model visits its own samples in its own keyed order
  (:func:`~obliviate.training.epoch_permutation`, the order SISA uses), so deleting a
  sample in one shard changes no other shard's batches;
* batches are padded to ``batch_size`` rows with zero-weight rows, and a model with no
  batch this step (it has fewer samples, or has finished) is masked out of the update:
  its parameters and optimiser state stay bit-for-bit unchanged;
* randomness is refused (``vmap(randomness="error")``): per-model dropout masks drawn in
  one vmapped call depend on M, so models with active dropout must use the sequential
  trainer.

Exactness: a slot's arithmetic depends on its own data and on the *shape* of the batch of
models, M. Linear layers give the same bits for any M; PyTorch's CPU convolutions under
vmap (grouped convolutions) do not. Callers therefore keep a fixed slot layout: a model
always trains in the same slot of a group of the same size, in fit and in forget alike,
with idle slots filling the groups. The slot layout belongs to the configuration.

Reference: "Model ensembling" in the ``torch.func`` documentation (``stack_module_state``,
``functional_call``, ``vmap``); the isolation rules follow Bourtoule et al., "Machine
Unlearning" (IEEE S&P 2021), where each shard must never see another shard's data.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from obliviate.errors import ConfigError, TrainingError
from obliviate.training.config import TrainConfig
from obliviate.training.functional_optim import adam_update, clip_per_model, sgd_update
from obliviate.training.loop import EpochStats, deterministic, epoch_permutation
from obliviate.training.schedule import epochs_before

__all__ = ["SlotRun", "StageCallback", "check_batchable", "train_batched"]

StageCallback = Callable[[int, int, EpochStats], None]
"""Called as ``(slot, stage, stats)`` once a slot finishes a stage and its state is written
back into the slot's model, optimiser and scheduler."""


@dataclass(frozen=True)
class SlotRun:
    """One slot's model, its optimiser objects and the data and stages it trains.

    The model, optimiser and scheduler are the same objects the sequential trainer uses
    (built by ``make_optimizer``/``make_scheduler``, possibly resumed from a checkpoint);
    the batched trainer reads their state at the start and writes it back at each stage
    end, so checkpoints have one format whichever trainer made them.

    Attributes:
        name: the component's name (for error messages).
        model: the slot's module.
        optimizer: its optimiser (SGD or Adam, as in the config).
        scheduler: its per-epoch scheduler.
        features: the slot's samples, ordered so each stage is a prefix.
        labels: their labels.
        order_keys: their order keys (drive the per-epoch permutation).
        stage_sizes: samples in stages ``0..r`` for each stage ``r`` up to ``last_stage``.
        first_stage: the first stage to train.
        last_stage: the last stage to train.
        order_seed: seed of the slot's permutations.
    """

    name: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    features: torch.Tensor
    labels: torch.Tensor
    order_keys: npt.NDArray[np.uint64]
    stage_sizes: Sequence[int]
    first_stage: int
    last_stage: int
    order_seed: int


def check_batchable(model: nn.Module) -> None:
    """Refuses models the batched trainer cannot train exactly.

    Raises:
        ConfigError: the model has active dropout (per-model masks drawn under vmap depend
            on how many models share the call) or BatchNorm (running statistics are
            updated in place, which vmap cannot do, and they couple samples).
    """
    bad = [
        name
        for name, module in model.named_modules()
        if (isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0)
        or isinstance(module, nn.modules.batchnorm._BatchNorm)
    ]
    if bad:
        raise ConfigError(
            f"the batched trainer cannot train this model: {bad[:5]} use dropout or BatchNorm. "
            "Set dropout=0 and use GroupNorm, or choose trainer='sequential'."
        )


def _state_of(run: SlotRun, params: list[nn.Parameter]) -> list[dict[str, torch.Tensor]]:
    state = run.optimizer.state
    return [dict(state[p]) if p in state else {} for p in params]


def train_batched(
    *,
    slots: Sequence[SlotRun | None],
    config: TrainConfig,
    stage_epochs: Sequence[int],
    on_stage_end: StageCallback,
) -> None:
    """Trains every slot's stages together; ``None`` slots are idle fillers.

    Each slot runs exactly the epochs, batches and schedule the sequential loop would run
    for it (``train_epochs`` per stage); slots need not start at the same stage. The number
    of slots is the batch of models M, part of the numerics (see the module docstring).

    Raises:
        ConfigError: no slot has work, slots differ in architecture, or a model uses
            dropout or BatchNorm.
        TrainingError: a slot's loss became NaN or infinite.
    """
    runs = [run for run in slots if run is not None]
    if not runs:
        raise ConfigError("train_batched needs at least one slot with work; got none.")
    template = runs[0].model
    check_batchable(template)
    shapes = {k: tuple(v.shape) for k, v in template.state_dict().items()}
    for run in runs[1:]:
        if {k: tuple(v.shape) for k, v in run.model.state_dict().items()} != shapes:
            raise ConfigError(
                f"batched slots must share one architecture; {run.name!r} differs from "
                f"{runs[0].name!r}."
            )
    with deterministic():
        _Engine(slots, config, stage_epochs, on_stage_end).run()


class _Engine:
    """The tick loop: every tick, each slot with a pending batch takes one step."""

    def __init__(
        self,
        slots: Sequence[SlotRun | None],
        config: TrainConfig,
        stage_epochs: Sequence[int],
        on_stage_end: StageCallback,
    ) -> None:
        self.slots = list(slots)
        self.config = config
        self.stage_epochs = list(stage_epochs)
        self.on_stage_end = on_stage_end
        first = next(run for run in self.slots if run is not None)
        models = [(run or first).model for run in self.slots]
        self.base = copy.deepcopy(first.model).to("meta")
        self.base.train()
        params, buffers = stack_module_state(models)
        self.params: dict[str, torch.Tensor] = params
        self.buffers: dict[str, torch.Tensor] = buffers
        self.trainable = [n for n, p in first.model.named_parameters() if p.requires_grad]
        m = len(self.slots)
        self.lr = torch.zeros(m)
        self.loss_values = [math.nan] * m
        self._init_optimizer_state()
        self._init_data()
        self._losses = vmap(self._loss)

    # ------------------------------------------------------------------ set-up
    def _slot_params(self, run: SlotRun) -> list[nn.Parameter]:
        named = dict(run.model.named_parameters())
        return [named[n] for n in self.trainable]

    def _init_optimizer_state(self) -> None:
        m = len(self.slots)
        zeros = [torch.zeros_like(self.params[n].detach()) for n in self.trainable]
        self.adam = self.config.optimizer == "adam"
        self.first_moment = [z.clone() for z in zeros]  # momentum buffer or exp_avg
        self.second_moment = [z.clone() for z in zeros]  # exp_avg_sq (Adam)
        self.has_buffer = torch.zeros(m, dtype=torch.bool)
        self.steps = torch.zeros(m)
        for slot, run in enumerate(self.slots):
            if run is None:
                continue
            for i, entry in enumerate(_state_of(run, self._slot_params(run))):
                if self.adam and "step" in entry:
                    self.steps[slot] = float(entry["step"])
                    self.first_moment[i][slot] = entry["exp_avg"]
                    self.second_moment[i][slot] = entry["exp_avg_sq"]
                elif not self.adam and entry.get("momentum_buffer") is not None:
                    self.first_moment[i][slot] = entry["momentum_buffer"]
                    self.has_buffer[slot] = True

    def _init_data(self) -> None:
        first = next(run for run in self.slots if run is not None)
        sizes = [0 if run is None else int(run.features.shape[0]) for run in self.slots]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.pad_row = int(self.offsets[-1])
        feature_shape = tuple(first.features.shape[1:])
        parts = [run.features for run in self.slots if run is not None and len(run.features)]
        parts.append(torch.zeros((1, *feature_shape), dtype=first.features.dtype))
        self.features = torch.cat(parts)
        label_parts = [run.labels for run in self.slots if run is not None and len(run.labels)]
        label_parts.append(torch.zeros(1, dtype=first.labels.dtype))
        self.labels = torch.cat(label_parts)

    # --------------------------------------------------------------------- math
    def _loss(
        self,
        params: dict[str, torch.Tensor],
        buffers: dict[str, torch.Tensor],
        x: torch.Tensor,
        y: torch.Tensor,
        weight: torch.Tensor,
    ) -> torch.Tensor:
        logits = functional_call(self.base, (params, buffers), (x,))
        # Cross-entropy written out: under vmap, F.cross_entropy runs a Python decomposition
        # that cost about a tenth of a small model's step.
        losses = -torch.log_softmax(logits, dim=-1).gather(-1, y.unsqueeze(-1)).squeeze(-1)
        return (losses * weight).sum() / torch.clamp(weight.sum(), min=1.0)

    def _step(
        self, index: npt.NDArray[np.int64], weight: torch.Tensor, active: torch.Tensor
    ) -> None:
        rows = torch.from_numpy(index)
        losses = self._losses(
            self.params, self.buffers, self.features[rows], self.labels[rows], weight
        )
        leaves = [self.params[n] for n in self.trainable]
        grads = list(torch.autograd.grad(losses.sum(), leaves))
        values = losses.detach().tolist()
        for slot, on in enumerate(active.tolist()):
            if on and not math.isfinite(values[slot]):
                run = self.slots[slot]
                raise TrainingError(
                    f"the training loss of {run.name if run else slot!r} became "
                    f"{values[slot]}; lower the learning rate or enable grad_clip."
                )
        self.loss_values = values
        if self.config.grad_clip is not None:
            grads = clip_per_model(grads, float(self.config.grad_clip))
        with torch.no_grad():
            current = [leaf.detach() for leaf in leaves]
            if self.adam:
                new, self.first_moment, self.second_moment, self.steps = adam_update(
                    params=current,
                    grads=grads,
                    exp_avgs=self.first_moment,
                    exp_avg_sqs=self.second_moment,
                    steps=self.steps,
                    lr=self.lr,
                    betas=(0.9, 0.999),
                    eps=1e-8,
                    weight_decay=self.config.weight_decay,
                    active=active,
                )
            else:
                new, self.first_moment, self.has_buffer = sgd_update(
                    params=current,
                    grads=grads,
                    buffers=self.first_moment,
                    has_buffer=self.has_buffer,
                    lr=self.lr,
                    momentum=self.config.momentum,
                    weight_decay=self.config.weight_decay,
                    active=active,
                )
        # The new tensors become the next step's leaves (no copy back into the old ones).
        for name, value in zip(self.trainable, new, strict=True):
            self.params[name] = value.requires_grad_()

    # ----------------------------------------------------------------- schedule
    def _write_back(self, slot: int, run: SlotRun) -> None:
        with torch.no_grad():
            for name, param in run.model.named_parameters():
                param.copy_(self.params[name][slot])
        state = run.optimizer.state
        for i, param in enumerate(self._slot_params(run)):
            if self.adam and float(self.steps[slot]) > 0:
                state[param] = {
                    "step": torch.tensor(float(self.steps[slot])),
                    "exp_avg": self.first_moment[i][slot].clone(),
                    "exp_avg_sq": self.second_moment[i][slot].clone(),
                }
            elif not self.adam and bool(self.has_buffer[slot]):
                state[param] = {"momentum_buffer": self.first_moment[i][slot].clone()}

    def _slot_steps(self, slot: int, run: SlotRun) -> Iterator[npt.NDArray[np.int64]]:
        """Yields the slot's batches (global row indices) in training order."""
        batch = self.config.batch_size
        offset = self.offsets[slot]
        for stage in range(run.first_stage, run.last_stage + 1):
            size = int(run.stage_sizes[stage])
            passes = steps = 0
            last_loss = math.nan
            first_epoch = epochs_before(self.stage_epochs, stage)
            for epoch in range(first_epoch, first_epoch + self.stage_epochs[stage]):
                self.lr[slot] = float(run.optimizer.param_groups[0]["lr"])
                if size:
                    perm = epoch_permutation(
                        run.order_keys[:size], seed=run.order_seed, epoch=epoch
                    )
                    total = 0.0
                    for start in range(0, size, batch):
                        chosen = perm[start : start + batch]
                        yield chosen + offset
                        total += self.loss_values[slot] * len(chosen)
                        steps += 1
                    passes += size
                    last_loss = total / size
                with warnings.catch_warnings():
                    # Batched steps bypass optimizer.step(); the schedule is per epoch anyway.
                    warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler")
                    run.scheduler.step()
            self._write_back(slot, run)
            self.on_stage_end(
                slot, stage, EpochStats(sample_passes=passes, steps=steps, last_loss=last_loss)
            )

    def run(self) -> None:
        m = len(self.slots)
        batch = self.config.batch_size
        pending: dict[int, Iterator[npt.NDArray[np.int64]]] = {
            slot: self._slot_steps(slot, run)
            for slot, run in enumerate(self.slots)
            if run is not None
        }
        while pending:
            index = np.full((m, batch), self.pad_row, dtype=np.int64)
            weight = torch.zeros((m, batch))
            active = torch.zeros(m, dtype=torch.bool)
            for slot in list(pending):
                chosen = next(pending[slot], None)
                if chosen is None:
                    del pending[slot]
                    continue
                index[slot, : len(chosen)] = chosen
                weight[slot, : len(chosen)] = 1.0
                active[slot] = True
            if bool(active.any()):
                self._step(index, weight, active)
