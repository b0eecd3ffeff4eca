"""Bad model options fail with ConfigError naming the option and the valid ones."""

from __future__ import annotations

from typing import Any

import pytest

from obliviate.errors import ConfigError, UnknownNameError
from obliviate.models import build_model


def test_unknown_model_lists_the_registered_ones() -> None:
    with pytest.raises(UnknownNameError, match="cnn, linear, mlp, resnet18"):
        build_model("vgg", input_shape=(3, 32, 32), num_classes=10)


@pytest.mark.parametrize(
    ("name", "options", "named", "valid"),
    [
        ("mlp", {"hiden": (8,)}, "'hiden'", "hidden=(128,), dropout=0.0"),
        ("linear", {"hidden": (8,)}, "'hidden'", "(none)"),
        ("cnn", {"width": 8}, "'width'", "channels=(16, 32)"),
        ("resnet18", {"depth": 34}, "'depth'", "width=64, groups=32"),
    ],
)
def test_unknown_option(name: str, options: dict[str, Any], named: str, valid: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_model(name, input_shape=(3, 32, 32), num_classes=10, **options)
    message = str(info.value)
    assert named in message
    assert valid in message


@pytest.mark.parametrize(
    ("name", "options", "named"),
    [
        ("mlp", {"hidden": (8, 0)}, "hidden"),
        ("mlp", {"hidden": (-1,)}, "hidden"),
        ("mlp", {"hidden": 8}, "hidden"),
        ("mlp", {"hidden": (8.5,)}, "hidden"),
        ("mlp", {"hidden": (True,)}, "hidden"),
        ("mlp", {"dropout": 1.0}, "dropout"),
        ("mlp", {"dropout": -0.1}, "dropout"),
        ("mlp", {"dropout": "0.5"}, "dropout"),
        ("cnn", {"channels": ()}, "channels"),
        ("cnn", {"hidden": 0}, "hidden"),
        ("cnn", {"groups": 0}, "groups"),
        ("cnn", {"dropout": 1.5}, "dropout"),
        ("resnet18", {"width": 0}, "width"),
        ("resnet18", {"groups": -2}, "groups"),
        ("resnet18", {"width": 8.0}, "width"),
    ],
)
def test_invalid_option_values(name: str, options: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=f"{named} must be") as info:
        build_model(name, input_shape=(3, 32, 32), num_classes=10, **options)
    assert "Valid options" in str(info.value)


def test_every_bad_option_is_listed_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        build_model("mlp", input_shape=(4,), num_classes=2, hidden=(0,), dropout=2.0)
    assert "hidden must be" in str(info.value)
    assert "dropout must be" in str(info.value)


@pytest.mark.parametrize(
    ("name", "shape", "classes", "match"),
    [
        ("mlp", (), 10, "input_shape"),
        ("mlp", (0, 4), 10, "input_shape"),
        ("linear", (4,), 0, "num_classes"),
        ("linear", (4,), True, "num_classes"),
        ("cnn", (28, 28), 10, r"\(channels, height, width\)"),
        ("resnet18", (3, 32), 10, r"\(channels, height, width\)"),
        ("cnn", (1, 3, 3), 10, "at least 4x4"),
    ],
)
def test_invalid_shapes_and_classes(
    name: str, shape: tuple[int, ...], classes: int, match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        build_model(name, input_shape=shape, num_classes=classes)


def test_lists_from_json_configs_are_accepted() -> None:
    model = build_model("cnn", input_shape=[1, 8, 8], num_classes=3, channels=[4])
    assert model is not None
