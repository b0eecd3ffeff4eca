"""Training hyper-parameters as a validated, serialisable dataclass."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from obliviate.errors import ConfigError

__all__ = ["TrainConfig"]

_OPTIMIZERS = ("sgd", "adam")
_SCHEDULERS = ("constant", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    """How each component is trained.

    Every value here is data-independent on purpose: a learning-rate schedule measured in
    steps would change when samples are deleted, and so would every checkpoint before the
    deletion, breaking exactness. Schedules are therefore counted in epochs.

    Args:
        epochs: epochs over a full component's data (SISA spreads them over slices).
        batch_size: samples per optimiser step.
        optimizer: ``"sgd"`` or ``"adam"``.
        lr: learning rate.
        momentum: SGD momentum (ignored by Adam).
        weight_decay: L2 penalty.
        scheduler: ``"constant"`` or ``"cosine"`` (per epoch, over ``epochs``).
        grad_clip: clip each component's gradient norm to this value; ``None`` disables.
    """

    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0
    scheduler: str = "constant"
    grad_clip: float | None = None

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.epochs, int) or self.epochs < 1:
            problems.append(f"epochs must be an integer >= 1; got {self.epochs!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            problems.append(f"batch_size must be an integer >= 1; got {self.batch_size!r}")
        if self.optimizer not in _OPTIMIZERS:
            problems.append(f"optimizer must be one of {_OPTIMIZERS}; got {self.optimizer!r}")
        if not (isinstance(self.lr, int | float) and math.isfinite(self.lr) and self.lr > 0):
            problems.append(f"lr must be a positive finite number; got {self.lr!r}")
        if not (isinstance(self.momentum, int | float) and 0 <= self.momentum < 1):
            problems.append(f"momentum must lie in [0, 1); got {self.momentum!r}")
        if not (isinstance(self.weight_decay, int | float) and self.weight_decay >= 0):
            problems.append(f"weight_decay must be >= 0; got {self.weight_decay!r}")
        if self.scheduler not in _SCHEDULERS:
            problems.append(f"scheduler must be one of {_SCHEDULERS}; got {self.scheduler!r}")
        if self.grad_clip is not None and not (
            isinstance(self.grad_clip, int | float) and self.grad_clip > 0
        ):
            problems.append(f"grad_clip must be positive or None; got {self.grad_clip!r}")
        if problems:
            raise ConfigError("invalid TrainConfig: " + "; ".join(problems) + ".")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are a ConfigError."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown TrainConfig fields {unknown}; valid fields: {sorted(known)}."
            )
        return cls(**data)
