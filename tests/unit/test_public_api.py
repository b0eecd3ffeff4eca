"""The public surface is curated: __all__ is sorted and everything in it exists."""

from __future__ import annotations

import importlib

import pytest

MODULES = [
    "obliviate",
    "obliviate.data",
    "obliviate.errors",
    "obliviate.evaluation",
    "obliviate.ledger",
    "obliviate.models",
    "obliviate.provenance",
    "obliviate.storage",
    "obliviate.service",
    "obliviate.strategies",
    "obliviate.strategies.approximate",
    "obliviate.strategies.exact",
    "obliviate.training",
]


def _isort_key(symbol: str) -> tuple[int, str]:
    # The order ruff's RUF022 enforces: CONSTANTS, then Classes, then functions.
    if symbol.isupper() and len(symbol) > 1:
        return (0, symbol)
    return (1 if symbol[:1].isupper() else 2, symbol)


@pytest.mark.parametrize("name", MODULES)
def test_all_is_sorted_and_importable(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported, key=_isort_key), f"{name}.__all__ is not sorted"
    for symbol in exported:
        assert hasattr(module, symbol), f"{name}.{symbol} is missing"


def test_every_error_is_an_obliviate_error() -> None:
    from obliviate import errors

    for symbol in errors.__all__:
        assert issubclass(getattr(errors, symbol), errors.ObliviateError)


def test_strategies_are_registered_with_their_guarantee() -> None:
    from obliviate import STRATEGIES, Guarantee

    assert {"retrain", "sisa"} <= set(STRATEGIES.names())
    assert STRATEGIES.get("sisa").guarantee is Guarantee.EXACT
