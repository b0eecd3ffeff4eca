"""check_model refuses batch statistics, explaining why and what to use instead."""

from __future__ import annotations

import pytest
from torch import nn

from obliviate.errors import ConfigError
from obliviate.models import check_model


@pytest.mark.parametrize(
    "norm",
    [
        nn.BatchNorm1d(4),
        nn.BatchNorm2d(4),
        nn.BatchNorm3d(4),
        nn.SyncBatchNorm(4),
        nn.BatchNorm2d(4, track_running_stats=False),
        nn.InstanceNorm2d(4, track_running_stats=True),
    ],
    ids=lambda m: type(m).__name__,
)
def test_batch_statistics_are_refused(norm: nn.Module) -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Sequential(norm))
    with pytest.raises(ConfigError) as info:
        check_model(model)
    message = str(info.value)
    assert "1.0" in message  # names where the layer sits
    assert "GroupNorm" in message
    assert "running mean" in message


def test_lazy_batchnorm_is_refused() -> None:
    with pytest.raises(ConfigError, match="LazyBatchNorm2d"):
        check_model(nn.Sequential(nn.LazyBatchNorm2d()))


def test_root_module_is_named() -> None:
    with pytest.raises(ConfigError, match="<root>"):
        check_model(nn.BatchNorm1d(2))


def test_many_offenders_are_summarised() -> None:
    model = nn.Sequential(*[nn.BatchNorm1d(2) for _ in range(8)])
    with pytest.raises(ConfigError, match="and 3 more"):
        check_model(model)


def test_sample_wise_norms_pass() -> None:
    check_model(
        nn.Sequential(nn.GroupNorm(2, 4), nn.LayerNorm(4), nn.InstanceNorm2d(4), nn.Linear(4, 2))
    )
