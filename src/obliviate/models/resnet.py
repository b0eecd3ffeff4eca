"""ResNet-18 for 32x32 images, with GroupNorm instead of BatchNorm.

He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, with the CIFAR
adaptation in common use (3x3 stem, no max-pool) and GroupNorm (Wu & He, ECCV 2018) in every
place BatchNorm would be, because BatchNorm's statistics couple samples (see
:func:`~obliviate.models.check_model`). Global average pooling makes it accept other image
sizes too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from obliviate.errors import ConfigError
from obliviate.models.layers import group_norm
from obliviate.models.options import (
    ModelOptions,
    check_positive_int,
    parse_options,
    validate_io,
)
from obliviate.models.zoo import MODELS

__all__ = ["BasicBlock", "ResNet", "ResNetOptions", "build_resnet18", "he_init"]


def he_init(module: nn.Module) -> None:
    """He (fan-out) initialisation of every convolution in ``module``, as torchvision does.

    PyTorch's default convolution init suits ReLU networks less.
    """
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")


@dataclass(frozen=True)
class ResNetOptions(ModelOptions):
    """Options of the ``resnet18`` model.

    Attributes:
        width: Channels of the stem and first stage; the stages use width x (1, 2, 4, 8).
            64 is the standard network; 16 or 32 give a scaled-down one for CPU runs.
        groups: Requested GroupNorm groups; narrow layers use fewer (see
            :func:`~obliviate.models.layers.num_groups`).
    """

    width: int = 64
    groups: int = 32

    def problems(self) -> list[str]:
        """Describes every invalid field."""
        return check_positive_int("width", self.width) + check_positive_int("groups", self.groups)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (projected when the shape changes)."""

    def __init__(self, channels_in: int, channels_out: int, *, stride: int, groups: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, stride=stride, padding=1, bias=False)
        self.norm1 = group_norm(channels_out, groups)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, padding=1, bias=False)
        self.norm2 = group_norm(channels_out, groups)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or channels_in != channels_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(channels_in, channels_out, 1, stride=stride, bias=False),
                group_norm(channels_out, groups),
            )

    def reset_parameters(self) -> None:
        """He-initialises the block's convolutions (see :func:`he_init`), e.g. in an EU-k head."""
        he_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Returns ``relu(norm2(conv2(relu(norm1(conv1(x))))) + shortcut(x))``."""
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        result: torch.Tensor = self.relu(out + self.shortcut(x))
        return result


class ResNet(nn.Module):
    """Stem, four stages of BasicBlocks, global average pooling and a linear classifier."""

    def __init__(
        self,
        *,
        channels_in: int,
        num_classes: int,
        blocks: tuple[int, ...] = (2, 2, 2, 2),
        width: int = 64,
        groups: int = 32,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(channels_in, width, 3, padding=1, bias=False),
            group_norm(width, groups),
            nn.ReLU(),
        )
        stages: list[nn.Module] = []
        previous = width
        for index, count in enumerate(blocks):
            out = width * 2**index
            stride = 1 if index == 0 else 2
            stage = [
                BasicBlock(
                    previous if i == 0 else out, out, stride=stride if i == 0 else 1, groups=groups
                )
                for i in range(count)
            ]
            stages.append(nn.Sequential(*stage))
            previous = out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(previous, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He-initialises every convolution (the other layers keep their own init).

        Re-initialisation for retraining (``reinitialise``) calls this after the layers' own
        ``reset_parameters``, so a retrained ResNet starts from the distribution this one did.
        """
        he_init(self)

    def split_head(self, layers: int) -> tuple[nn.Sequential, nn.Sequential]:
        """(body, head) with ``head(body(x)) == self(x)``, sharing this model's modules.

        For EU-k (:mod:`obliviate.strategies.approximate.eu_k`): the head is the classifier
        plus the last ``layers - 1`` residual blocks, so ``layers=1`` is the linear
        classifier on pooled features.

        Raises:
            ConfigError: ``layers`` is below 1 or above the number of blocks plus one.
        """
        blocks = [block for stage in self.stages.children() for block in stage.children()]
        if not 1 <= layers <= len(blocks) + 1:
            raise ConfigError(
                f"eu_k: layers={layers} but this ResNet has {len(blocks)} residual blocks; "
                f"choose 1 (the classifier) to {len(blocks) + 1}."
            )
        cut = len(blocks) - (layers - 1)
        tail = [self.pool, self.flatten]
        if layers == 1:
            return nn.Sequential(self.stem, *blocks, *tail), nn.Sequential(self.fc)
        return nn.Sequential(self.stem, *blocks[:cut]), nn.Sequential(*blocks[cut:], *tail, self.fc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps ``(batch, channels, height, width)`` images to ``(batch, num_classes)`` logits."""
        features = self.flatten(self.pool(self.stages(self.stem(x))))
        logits: torch.Tensor = self.fc(features)
        return logits


@MODELS.register("resnet18")
def build_resnet18(*, input_shape: tuple[int, ...], num_classes: int, **options: Any) -> nn.Module:
    """ResNet-18 ([2, 2, 2, 2] BasicBlocks) with GroupNorm, sized for 32x32 inputs.

    Options are those of :class:`ResNetOptions`.

    Raises:
        ConfigError: an option is unknown or invalid, or the shape or class count is.
    """
    channels_in, _, _ = validate_io("resnet18", input_shape, num_classes, image=True)
    config = parse_options("resnet18", ResNetOptions, options)
    return ResNet(
        channels_in=channels_in, num_classes=num_classes, width=config.width, groups=config.groups
    )
