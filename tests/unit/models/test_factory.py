"""resolve_factory imports 'package.module:function' and fails clearly on every bad spec."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path

import pytest
import torch
from torch import nn

from obliviate.errors import ConfigError
from obliviate.models import resolve_factory


@pytest.fixture
def module_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A freshly written module on sys.path, with a unique name so no test sees a cached one."""
    name = f"obliviate_factory_{uuid.uuid4().hex}"
    source = """
        from torch import nn

        NOT_CALLABLE = 3

        def tiny():
            return nn.Linear(4, 2)

        def not_a_model():
            return "linear"

        class Builders:
            @staticmethod
            def wide():
                return nn.Linear(4, 16)
    """
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source), "utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def _own_module_factory() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 3))


def test_resolves_a_function(module_name: str) -> None:
    factory = resolve_factory(f"{module_name}:tiny")
    model = factory()
    assert isinstance(model, nn.Linear)
    assert model(torch.zeros(1, 4)).shape == (1, 2)
    assert factory() is not model  # a new model each call


def test_resolves_a_dotted_attribute(module_name: str) -> None:
    model = resolve_factory(f"{module_name}:Builders.wide")()
    assert isinstance(model, nn.Linear)
    assert model.out_features == 16


def test_resolves_a_function_in_an_installed_module() -> None:
    assert isinstance(resolve_factory(f"{__name__}:_own_module_factory")(), nn.Sequential)


@pytest.mark.parametrize(
    "spec",
    ["", "no_colon", "a:b:c", ":tiny", "module:", "bad module:tiny", "mod:1x", "mod.:x"],
)
def test_malformed_specs(spec: str) -> None:
    with pytest.raises(ConfigError, match="package.module:function"):
        resolve_factory(spec)


def test_module_not_importable() -> None:
    with pytest.raises(ConfigError, match="cannot import module 'obliviate_no_such_module'"):
        resolve_factory("obliviate_no_such_module:build")


def test_module_that_raises_on_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"obliviate_broken_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text("raise RuntimeError('boom')\n", "utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="RuntimeError: boom"):
        resolve_factory(f"{name}:build")


def test_missing_attribute(module_name: str) -> None:
    with pytest.raises(ConfigError, match="has no attribute 'huge'"):
        resolve_factory(f"{module_name}:huge")
    with pytest.raises(ConfigError, match="missing 'nope'"):
        resolve_factory(f"{module_name}:Builders.nope")


def test_not_callable(module_name: str) -> None:
    with pytest.raises(ConfigError, match="not callable"):
        resolve_factory(f"{module_name}:NOT_CALLABLE")


def test_factory_must_return_a_module(module_name: str) -> None:
    factory = resolve_factory(f"{module_name}:not_a_model")
    with pytest.raises(ConfigError, match="returned a str, not a torch.nn.Module"):
        factory()
