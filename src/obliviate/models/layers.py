"""Normalisation that keeps samples independent.

BatchNorm is banned from the zoo (see :func:`~obliviate.models.check_model`): its batch
statistics couple the samples of a batch and its running statistics are buffers computed
from the training data. GroupNorm normalises each sample on its own and has no buffers.
"""

from __future__ import annotations

from torch import nn

__all__ = ["group_norm", "num_groups"]


def num_groups(channels: int, groups: int) -> int:
    """The group count GroupNorm uses for ``channels`` when ``groups`` is requested.

    It is the largest divisor of ``channels`` that is at most ``groups`` and leaves at least
    two channels per group. Narrow (scaled-down) models thus still normalise: with one
    channel per group, a 1x1 feature map would normalise to all zeros.

    Example:
        >>> num_groups(64, 32), num_groups(16, 32), num_groups(3, 32)
        (32, 8, 1)
    """
    limit = max(1, min(groups, channels // 2))
    for candidate in range(limit, 0, -1):
        if channels % candidate == 0:
            return candidate
    return 1  # pragma: no cover - 1 always divides


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    """A GroupNorm over ``channels`` with :func:`num_groups` groups."""
    return nn.GroupNorm(num_groups(channels, groups), channels)
