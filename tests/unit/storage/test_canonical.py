"""canonical_json: one encoding per value, exact floats, and refusal of lossy values."""

from __future__ import annotations

import json
import math

import pytest

from obliviate.errors import StorageError
from obliviate.storage import canonical_json


def test_sorted_keys_no_whitespace_utf8() -> None:
    assert canonical_json({"b": 1, "a": {"d": [1, 2], "c": "é"}}) == (
        '{"a":{"c":"é","d":[1,2]},"b":1}'.encode()
    )


def test_key_order_does_not_matter() -> None:
    assert canonical_json({"x": 1, "y": 2}) == canonical_json({"y": 2, "x": 1})


@pytest.mark.parametrize("value", [0.1, 1 / 3, 1e-300, 5e-324, 1.7976931348623157e308, -0.0])
def test_floats_round_trip_exactly(value: float) -> None:
    back = json.loads(canonical_json({"v": value}))["v"]
    assert back == value
    assert math.copysign(1.0, back) == math.copysign(1.0, value)


def test_int_and_float_stay_distinct() -> None:
    assert canonical_json([1, 1.0]) == b"[1,1.0]"


def test_tuples_are_lists() -> None:
    assert canonical_json({"t": (1, 2)}) == canonical_json({"t": [1, 2]})


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_are_refused_with_their_path(bad: float) -> None:
    with pytest.raises(StorageError, match=r"\$\.a\[1\]"):
        canonical_json({"a": [0.0, bad]})


def test_non_string_keys_are_refused() -> None:
    with pytest.raises(StorageError, match="key 1"):
        canonical_json({1: "x"})


def test_unsupported_types_are_refused() -> None:
    with pytest.raises(StorageError, match="set"):
        canonical_json({"s": {1, 2}})


def test_lone_surrogate_is_refused() -> None:
    with pytest.raises(StorageError):
        canonical_json({"s": "\ud800"})
