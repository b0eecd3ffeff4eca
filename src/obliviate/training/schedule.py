"""Epoch schedules for slice-wise training (pure functions)."""

from __future__ import annotations

__all__ = ["epochs_before", "slice_epochs"]


def slice_epochs(*, epochs: int, slices: int, schedule: str = "equal_work") -> list[int]:
    """Epochs spent on each slice stage.

    With ``"equal_work"`` (Bourtoule et al.), stage ``r`` trains on ``(r+1)/R`` of the shard
    for about ``2e/(R+1)`` epochs, so all stages together cost the same sample-passes as
    ``e`` epochs over the whole shard: slicing buys cheaper deletions at no extra training
    cost. ``"constant"`` gives every stage ``e`` epochs.

    Example:
        >>> slice_epochs(epochs=10, slices=4)
        [4, 4, 4, 4]
        >>> sum(e * (r + 1) for r, e in enumerate(slice_epochs(epochs=10, slices=4))) / 4
        10.0
    """
    if schedule == "constant":
        return [epochs] * slices
    per = 2.0 * epochs / (slices + 1)
    bounds = [int((r * per) + 1e-9) for r in range(slices + 1)]
    return [bounds[r + 1] - bounds[r] for r in range(slices)]


def epochs_before(stage_epochs: list[int], stage: int) -> int:
    """Epochs run before ``stage`` starts: the global epoch counter at its start."""
    return sum(stage_epochs[:stage])
