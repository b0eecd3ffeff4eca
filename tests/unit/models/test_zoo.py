"""Zoo models build for the supported shapes, deterministically, without BatchNorm."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from obliviate.models import MODELS, build_model, check_model
from obliviate.models.layers import num_groups

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]
# Scaled-down options keep the suite fast; the defaults get their own test below.
SMALL: dict[str, dict[str, Any]] = {
    "linear": {},
    "mlp": {"hidden": (32, 16), "dropout": 0.1},
    "cnn": {},
    "resnet18": {"width": 8},
}


def test_registered_names() -> None:
    assert MODELS.names() == ["backbone_mlp", "cnn", "linear", "mlp", "resnet18"]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", sorted(SMALL))
def test_logits_have_shape_batch_by_classes(name: str, shape: tuple[int, ...]) -> None:
    model = build_model(name, input_shape=shape, num_classes=7, **SMALL[name])
    model.eval()
    with torch.no_grad():
        logits = model(torch.randn(5, *shape))
    assert logits.shape == (5, 7)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", sorted(SMALL))
def test_single_sample_batches_work(name: str) -> None:
    model = build_model(name, input_shape=(3, 32, 32), num_classes=2, **SMALL[name])
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 2)


def test_default_resnet18_is_resnet18_sized() -> None:
    model = build_model("resnet18", input_shape=(3, 32, 32), num_classes=10)
    count = sum(p.numel() for p in model.parameters())
    assert 11_000_000 < count < 11_300_000  # ResNet-18 for CIFAR has about 11.2M
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 17  # stem + 4 stages x 2 blocks x 2 convs
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    norms = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert norms and all(m.num_groups == 32 for m in norms)


def test_default_cnn_layout() -> None:
    model = build_model("cnn", input_shape=(1, 28, 28), num_classes=10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(32 * 7 * 7, 128), (128, 10)]
    assert any(isinstance(m, nn.GroupNorm) for m in model.modules())


def test_mlp_layout() -> None:
    model = build_model("mlp", input_shape=(4,), num_classes=3, hidden=[8, 6], dropout=0.5)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(4, 8), (8, 6), (6, 3)]
    assert sum(isinstance(m, nn.Dropout) for m in model.modules()) == 2
    no_dropout = build_model("mlp", input_shape=(4,), num_classes=3)
    assert not any(isinstance(m, nn.Dropout) for m in no_dropout.modules())


def test_linear_works_on_fixed_features() -> None:
    model = build_model("linear", input_shape=(512,), num_classes=10)
    assert model(torch.randn(3, 512)).shape == (3, 10)
    assert sum(p.numel() for p in model.parameters()) == 512 * 10 + 10


@pytest.mark.parametrize("name", sorted(SMALL))
def test_same_seed_gives_bitwise_equal_parameters(name: str) -> None:
    def build() -> nn.Module:
        torch.manual_seed(0)
        return build_model(name, input_shape=(3, 32, 32), num_classes=10, **SMALL[name])

    first, second = build().state_dict(), build().state_dict()
    assert list(first) == list(second)
    for key in first:
        assert torch.equal(first[key], second[key]), key
    torch.manual_seed(1)
    other = build_model(name, input_shape=(3, 32, 32), num_classes=10, **SMALL[name])
    assert not all(torch.equal(first[k], v) for k, v in other.state_dict().items())


@pytest.mark.parametrize("name", sorted(SMALL))
def test_no_batchnorm_and_no_buffers(name: str) -> None:
    model = build_model(name, input_shape=(3, 32, 32), num_classes=10, **SMALL[name])
    check_model(model)
    assert not any("BatchNorm" in type(m).__name__ for m in model.modules())
    assert list(model.buffers()) == []  # nothing data-dependent outside the parameters


@pytest.mark.parametrize("name", sorted(SMALL))
def test_one_training_step_reduces_loss(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, input_shape=(1, 8, 8), num_classes=4, **SMALL[name])
    model.train()
    features = torch.randn(16, 1, 8, 8)
    labels = torch.randint(0, 4, (16,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    before = [p.detach().clone() for p in model.parameters()]
    loss = F.cross_entropy(model(features), labels)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    optimizer.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
    model.eval()
    with torch.no_grad():
        after = F.cross_entropy(model(features), labels)
    assert torch.isfinite(after)


def test_samples_are_independent_in_a_batch() -> None:
    """Without batch statistics, a sample's logits do not depend on its batch-mates."""
    model = build_model("resnet18", input_shape=(3, 32, 32), num_classes=10, width=8)
    model.eval()
    batch = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        together = model(batch)
        alone = model(batch[:1])
    torch.testing.assert_close(together[:1], alone)


@pytest.mark.parametrize(
    ("channels", "groups", "expected"),
    [(64, 32, 32), (512, 32, 32), (16, 32, 8), (8, 32, 4), (3, 32, 1), (1, 32, 1), (48, 32, 24)],
)
def test_group_fallback(channels: int, groups: int, expected: int) -> None:
    assert num_groups(channels, groups) == expected
    assert channels % num_groups(channels, groups) == 0


def test_cnn_downsampling_modes_give_logits() -> None:
    import torch

    from obliviate.errors import ConfigError
    from obliviate.models import build_model

    for mode in ("stride", "pool"):
        model = build_model("cnn", input_shape=(1, 28, 28), num_classes=10, downsample=mode)
        assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    import pytest

    with pytest.raises(ConfigError, match="downsample"):
        build_model("cnn", input_shape=(1, 28, 28), num_classes=10, downsample="nope")
