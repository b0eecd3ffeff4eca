"""Sequential slice-wise LoRA stages on a frozen backbone, with Hugging Face ``peft``.

S3T (Chowdhury et al., ICLR 2025) trains stage ``i`` of a sequence on its first ``i``
slices: LoRA adapters on the next block of layers, counted down from the output, plus the
task head; every earlier stage's adapters stay frozen and the backbone never changes. The
trainable state of a stage is therefore small (the adapters so far and the head), and a
stage depends only on its prefix of slices, which is what lets a deletion cut a sequence
back to a prefix without retraining anything.

Exactness: a stage's start is a pure function of its prefix. Adapters of stages not yet
reached are all-zero (so they add exactly nothing), the new stage's ``lora_A`` is drawn
from a seed derived from the prefix, its ``lora_B`` is zero, and the optimiser, schedule,
dropout RNG and data order are all fresh and seeded per prefix.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from obliviate.errors import ConfigError
from obliviate.training import (
    EpochStats,
    TrainConfig,
    deterministic,
    make_optimizer,
    make_scheduler,
    train_epochs,
)

__all__ = ["StageLayout", "StageModel", "stage_layout", "train_stage"]

ADAPTER = "s3t"
State = dict[str, torch.Tensor]


@dataclass(frozen=True)
class StageLayout:
    """Which modules each stage adapts.

    Attributes:
        head: dotted path of the task head (trained at every stage).
        stages: per stage (0 first, at the top of the network), the dotted paths of the
            ``nn.Linear`` modules that get LoRA adapters.
    """

    head: str
    stages: tuple[tuple[str, ...], ...]


def _layer_names(model: nn.Module, layers: str | None) -> list[str] | None:
    if layers is not None:
        try:
            container = model.get_submodule(layers)
        except AttributeError:
            raise ConfigError(f"layers={layers!r} names no submodule of the backbone.") from None
        if not isinstance(container, nn.ModuleList | nn.Sequential):
            raise ConfigError(
                f"layers={layers!r} is a {type(container).__name__}; it must be an "
                "nn.ModuleList or nn.Sequential of the backbone's layers."
            )
        return [f"{layers}.{name}" for name, _ in container.named_children()]
    lists = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.ModuleList) and len(module) > 0
    ]
    if not lists:
        return None
    name, longest = max(lists, key=lambda item: len(item[1]))
    return [f"{name}.{child}" for child, _ in longest.named_children()]


def _inside(name: str, parent: str) -> bool:
    return name == parent or name.startswith(parent + ".")


def stage_layout(
    model: nn.Module,
    *,
    slices: int,
    layers: str | None,
    target_modules: Sequence[str] | None,
    head: str | None,
    layers_per_stage: int | None,
) -> StageLayout:
    """Splits the backbone's layers into ``slices`` stages, top-down.

    Raises:
        ConfigError: no head, too few layers for ``slices`` stages, or a layer of a stage
            with no linear module to adapt.
    """
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    found = _layer_names(model, layers)
    if head is None:
        outside = [n for n in linears if found is None or not any(_inside(n, p) for p in found)]
        if not outside:
            raise ConfigError(
                "the backbone has no nn.Linear outside its layers to serve as the task head; "
                "name it with head=..."
            )
        head = outside[-1]
    else:
        try:
            head_module = model.get_submodule(head)
        except AttributeError:
            raise ConfigError(f"head={head!r} names no submodule of the backbone.") from None
        if not any(True for _ in head_module.parameters()):
            raise ConfigError(f"head={head!r} has no parameters to train.")
    layer_names = found if found is not None else [n for n in linears if n != head]
    count = len(layer_names)
    per_stage = layers_per_stage if layers_per_stage is not None else count // slices
    if per_stage < 1 or per_stage * slices > count:
        raise ConfigError(
            f"the backbone has {count} adaptable layers; {slices} stages of "
            f"{per_stage if per_stage >= 1 else 'at least 1'} layer(s) each need "
            f"{max(per_stage, 1) * slices}. Use fewer slices, a deeper backbone or a smaller "
            "layers_per_stage."
        )
    wanted = None if target_modules is None else set(target_modules)
    stages: list[tuple[str, ...]] = []
    for stage in range(slices):
        top = count - 1 - stage * per_stage
        names: list[str] = []
        for layer in layer_names[top - per_stage + 1 : top + 1][::-1]:
            inside = [
                n
                for n in linears
                if _inside(n, layer)
                and not _inside(n, head)
                and (wanted is None or n.rsplit(".", 1)[-1] in wanted)
            ]
            if not inside:
                raise ConfigError(
                    f"layer {layer!r} has no nn.Linear to adapt"
                    + ("" if wanted is None else f" named one of {sorted(wanted)}")
                    + "; set target_modules to names its linear modules use."
                )
            names.extend(inside)
        stages.append(tuple(names))
    return StageLayout(head=head, stages=tuple(stages))


class _Logits(nn.Module):
    """Returns a tensor of logits whether the backbone returns one or a Hugging Face output."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        logits = out if isinstance(out, torch.Tensor) else getattr(out, "logits", None)
        if not isinstance(logits, torch.Tensor):
            raise ConfigError(
                f"the backbone returned a {type(out).__name__}; it must return logits (a "
                "tensor) or an object with a .logits tensor."
            )
        return logits


class StageModel:
    """A backbone with LoRA adapters on every stage's modules, driven stage by stage.

    Args:
        module: the backbone (modified in place: adapters are injected, everything frozen).
        layout: from :func:`stage_layout`.
        rank, alpha, dropout, rslora: the LoRA settings.
    """

    def __init__(
        self,
        module: nn.Module,
        layout: StageLayout,
        *,
        rank: int,
        alpha: float,
        dropout: float,
        rslora: bool,
    ) -> None:
        # Imported here: peft pulls in transformers, seconds of import time that only a
        # process which trains or serves an S3T model should pay.
        from peft import LoraConfig, inject_adapter_in_model

        targets = [name for stage in layout.stages for name in stage]
        pattern = "^(?:" + "|".join(re.escape(name) for name in targets) + ")$"
        config = LoraConfig(
            target_modules=pattern,
            r=rank,
            lora_alpha=alpha,  # type: ignore[arg-type]  # peft annotates int; floats work
            lora_dropout=dropout,
            use_rslora=rslora,
            bias="none",
        )
        self.module = inject_adapter_in_model(config, module, adapter_name=ADAPTER)
        self.layout = layout
        self.runner = _Logits(self.module)
        for param in self.module.parameters():
            param.requires_grad_(False)
        named = dict(self.module.named_parameters())
        self._stage_params: list[list[tuple[str, str]]] = []
        for stage in layout.stages:
            pairs = []
            for name in stage:
                a, b = f"{name}.lora_A.{ADAPTER}.weight", f"{name}.lora_B.{ADAPTER}.weight"
                if a not in named or b not in named:  # pragma: no cover - peft contract
                    raise ConfigError(f"peft did not adapt {name!r}; is it an nn.Linear?")
                pairs.append((a, b))
            self._stage_params.append(pairs)
        self._params = named
        self._head_names = [n for n in named if _inside(n, layout.head)]
        self._head_init = {n: named[n].detach().clone() for n in self._head_names}

    def state_names(self, upto: int) -> list[str]:
        """Names of the trainable tensors of stages ``0..upto`` and of the head."""
        names = [n for stage in self._stage_params[: upto + 1] for pair in stage for n in pair]
        return names + self._head_names

    @torch.no_grad()
    def load(self, state: Mapping[str, torch.Tensor] | None) -> None:
        """Sets every adapter to zero and the head to its initial value, then ``state``."""
        for stage in self._stage_params:
            for a, b in stage:
                self._params[a].zero_()
                self._params[b].zero_()
        for name, value in self._head_init.items():
            self._params[name].copy_(value)
        for name, value in (state or {}).items():
            if name not in self._params:
                raise ConfigError(f"stage state has tensor {name!r}, which the model lacks.")
            self._params[name].copy_(value)

    @torch.no_grad()
    def begin(self, stage: int, *, seed: int) -> None:
        """Initialises stage ``stage``'s adapters (seeded) and makes them and the head train."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for a, b in self._stage_params[stage]:
                nn.init.kaiming_uniform_(self._params[a], a=math.sqrt(5))
                self._params[b].zero_()
        for param in self._params.values():
            param.requires_grad_(False)
        trainable = [n for pair in self._stage_params[stage] for n in pair] + self._head_names
        for name in trainable:
            self._params[name].requires_grad_(True)

    def state(self, upto: int) -> State:
        """A copy of the trainable tensors of stages ``0..upto`` and the head."""
        return {n: self._params[n].detach().clone() for n in self.state_names(upto)}

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's logits for ``x`` with the currently loaded stage state."""
        out: torch.Tensor = self.runner(x)
        return out

    def freeze(self) -> None:
        """Turns training off everywhere (for serving)."""
        for param in self._params.values():
            param.requires_grad_(False)
        self.module.eval()


def train_stage(
    model: StageModel,
    *,
    stage: int,
    parent: Mapping[str, torch.Tensor] | None,
    features: torch.Tensor,
    labels: torch.Tensor,
    order_keys: npt.NDArray[np.uint64],
    train: TrainConfig,
    init_seed: int,
    rng_seed: int,
    order_seed: int,
) -> tuple[State, EpochStats]:
    """Trains stage ``stage`` from ``parent``'s state on the prefix's cumulative data."""
    model.load(parent)
    model.begin(stage, seed=init_seed)
    optimizer = make_optimizer(train, model.runner)
    scheduler = make_scheduler(train, optimizer, total_epochs=train.epochs)
    with torch.random.fork_rng(devices=[]), deterministic():
        torch.manual_seed(rng_seed)
        stats = train_epochs(
            model=model.runner,
            optimizer=optimizer,
            scheduler=scheduler,
            features=features,
            labels=labels,
            order_keys=order_keys,
            config=train,
            seed=order_seed,
            first_epoch=0,
            epochs=train.epochs,
        )
    model.freeze()
    return model.state(stage), stats
