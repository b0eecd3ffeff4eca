"""Model checks that protect unlearning guarantees.

A model whose output for one sample depends on other samples, or whose buffers summarise the
training data, cannot be unlearned by retraining the affected components alone.
"""

from __future__ import annotations

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from obliviate.errors import ConfigError

__all__ = ["check_model"]

_SHOWN = 5


def check_model(module: nn.Module) -> None:
    """Refuses models with batch-statistics normalisation.

    BatchNorm (1d/2d/3d, lazy and sync variants) normalises each sample with statistics of the
    whole batch, which mixes samples (and, in batched multi-model training, shards), and its
    running mean and variance are buffers computed from the training data, so a deleted
    sample's influence would survive in them. InstanceNorm with ``track_running_stats=True``
    keeps such buffers too.

    Args:
        module: The model to check, including all submodules.

    Raises:
        ConfigError: listing the offending submodules and suggesting GroupNorm.
    """
    offenders = [
        f"{name or '<root>'} ({type(child).__name__})"
        for name, child in module.named_modules()
        if isinstance(child, _BatchNorm)
        or (isinstance(child, _InstanceNorm) and child.track_running_stats)
    ]
    if not offenders:
        return
    shown = ", ".join(offenders[:_SHOWN])
    more = f" and {len(offenders) - _SHOWN} more" if len(offenders) > _SHOWN else ""
    raise ConfigError(
        f"the model uses batch statistics at {shown}{more}. Batch normalisation mixes the "
        "samples of a batch (and the shards of a batched trainer), and its running mean and "
        "variance are data-dependent buffers that would keep deleted samples' influence, so "
        "exact unlearning cannot hold. Use nn.GroupNorm(num_groups, channels) instead (or "
        "nn.LayerNorm), e.g. via obliviate.models.layers.group_norm."
    )
