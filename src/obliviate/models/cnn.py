"""A small convolutional network for MNIST-, CIFAR- and digits-sized images.

Exact strategies train many small models (one per shard or slice) and retrain some of them
on every deletion, so this network is deliberately small and CPU-friendly. By default each
stage downsamples with a stride-2 convolution (5x5 in the first stage) instead of a
full-resolution convolution followed by max-pooling: on memory-bound CPUs full-resolution
activations dominate the cost, and the strided form is about 5x faster at inference and
2x faster in training for the same accuracy on MNIST.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from obliviate.errors import ConfigError
from obliviate.models.layers import group_norm
from obliviate.models.options import (
    ModelOptions,
    check_fraction,
    check_positive_int,
    check_positive_ints,
    parse_options,
    validate_io,
)
from obliviate.models.zoo import MODELS

__all__ = ["CNNOptions", "build_cnn"]


@dataclass(frozen=True)
class CNNOptions(ModelOptions):
    """Options of the ``cnn`` model.

    Attributes:
        channels: Output channels of each conv stage; each stage halves height and width.
        hidden: Width of the fully connected layer before the classifier.
        dropout: Dropout probability before the classifier; 0 adds no Dropout layer.
        groups: Requested GroupNorm groups per conv stage (see
            :func:`~obliviate.models.layers.num_groups` for narrow stages).
        downsample: ``"stride"`` (stride-2 convolutions) or ``"pool"`` (3x3 convolution
            then 2x2 max-pooling).
    """

    channels: tuple[int, ...] = (16, 32)
    hidden: int = 128
    dropout: float = 0.0
    groups: int = 4
    downsample: str = "stride"

    def problems(self) -> list[str]:
        """Describes every invalid field."""
        problems = (
            check_positive_ints("channels", self.channels, allow_empty=False)
            + check_positive_int("hidden", self.hidden)
            + check_fraction("dropout", self.dropout)
            + check_positive_int("groups", self.groups)
        )
        if self.downsample not in ("stride", "pool"):
            problems.append(f"downsample must be 'stride' or 'pool'; got {self.downsample!r}")
        return problems


@MODELS.register("cnn")
def build_cnn(*, input_shape: tuple[int, ...], num_classes: int, **options: Any) -> nn.Module:
    """Strided conv -> GroupNorm -> ReLU per stage, then Linear -> ReLU -> Linear.

    The flattened size is computed from ``input_shape``, so 8x8 (sklearn digits), 28x28
    (MNIST) and 32x32 (CIFAR, SVHN) inputs all work, with any channel count. Options are
    those of :class:`CNNOptions`.

    Raises:
        ConfigError: an option is unknown or invalid, or the image is too small to be halved
            once per stage.
    """
    channels_in, height, width = validate_io("cnn", input_shape, num_classes, image=True)
    config = parse_options("cnn", CNNOptions, options)
    stages = len(config.channels)
    if height < 2**stages or width < 2**stages:
        raise ConfigError(
            f"cannot build model 'cnn': {stages} conv stages halve the image {stages} times, "
            f"which needs at least {2**stages}x{2**stages} pixels; got {height}x{width}. "
            "Pass fewer channels, e.g. channels=(16,)."
        )
    layers: list[nn.Module] = []
    previous = channels_in
    for stage, out in enumerate(config.channels):
        if config.downsample == "pool":
            layers += [
                nn.Conv2d(previous, out, kernel_size=3, padding=1),
                group_norm(out, config.groups),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            height, width = height // 2, width // 2
        else:
            kernel = 5 if stage == 0 else 3
            pad = kernel // 2
            layers += [
                nn.Conv2d(previous, out, kernel_size=kernel, stride=2, padding=pad),
                group_norm(out, config.groups),
                nn.ReLU(),
            ]
            height = (height + 2 * pad - kernel) // 2 + 1
            width = (width + 2 * pad - kernel) // 2 + 1
        previous = out
    layers += [nn.Flatten(), nn.Linear(previous * height * width, config.hidden), nn.ReLU()]
    if config.dropout > 0:
        layers.append(nn.Dropout(config.dropout))
    layers.append(nn.Linear(config.hidden, num_classes))
    return nn.Sequential(*layers)
