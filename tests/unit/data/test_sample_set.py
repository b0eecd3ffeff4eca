"""SampleSet: validation at the door, id-based selection, and content hashes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from obliviate.data import SampleSet
from obliviate.errors import DataError, UnknownSampleError


def make(**overrides: Any) -> SampleSet:
    """Four valid samples, with any argument of ``from_arrays`` replaced."""
    arguments: dict[str, Any] = {
        "features": np.arange(8, dtype=np.float64).reshape(4, 2),
        "labels": [0, 1, 1, 2],
        "sample_ids": ["a", "b", "c", "d"],
        "subject_ids": ["s1", "s1", "s2", "s3"],
    }
    arguments.update(overrides)
    return SampleSet.from_arrays(**arguments)


def test_from_arrays_normalises_dtypes_and_infers_classes() -> None:
    samples = make()
    assert samples.features.dtype == np.float32
    assert samples.labels.dtype == np.int64
    assert samples.num_classes == 3
    assert samples.feature_shape == (2,)
    assert len(samples) == 4


def test_generated_ids_use_the_name() -> None:
    samples = SampleSet.from_arrays(features=np.zeros((2, 1)), labels=[0, 1], name="toy")
    assert samples.sample_ids.tolist() == ["toy-0", "toy-1"]


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"sample_ids": ["a", "b", "a", "d"]}, "duplicate sample ids: 'a'"),
        ({"labels": [0, 1, np.nan, 2]}, r"labels are missing \(NaN\) at rows 2"),
        ({"labels": [0, 1, 1, 5], "num_classes": 3}, r"labels must lie in \[0, 3\)"),
        ({"labels": [0, 1, 1]}, "mismatched lengths: features=4, labels=3"),
        ({"features": np.zeros(4)}, "at least 2 dimensions"),
        ({"sample_ids": ["a", "", "c", "d"]}, "sample ids are empty strings at rows 1"),
        (
            {"features": np.array([[0, 1], [np.nan, 1], [0, 0], [1, 1]])},
            r"features contain NaN or infinite values at rows 1 \(sample ids 'b'\)",
        ),
    ],
)
def test_from_arrays_rejects_bad_input(overrides: dict[str, Any], fragment: str) -> None:
    with pytest.raises(DataError, match=fragment):
        make(**overrides)


def test_subset_select_without_preserve_alignment() -> None:
    samples = make()
    picked = samples.select(["d", "a"])
    assert picked.sample_ids.tolist() == ["d", "a"]
    assert picked.labels.tolist() == [2, 0]
    np.testing.assert_array_equal(picked.features, [[6, 7], [0, 1]])
    assert picked.subject_ids is not None and picked.subject_ids.tolist() == ["s3", "s1"]
    rest = samples.without(["b"])
    assert rest.sample_ids.tolist() == ["a", "c", "d"]
    assert samples.subset([2]).sample_ids.tolist() == ["c"]
    assert rest.num_classes == samples.num_classes


def test_selecting_unknown_ids_fails() -> None:
    with pytest.raises(UnknownSampleError, match="'zz'"):
        make().select(["a", "zz"])


def test_content_hashes_follow_content_not_position() -> None:
    samples = make()
    hashes = samples.content_hashes()
    assert len(set(hashes)) == 4
    assert make().content_hashes() == hashes
    # Same row, same hash, wherever it sits.
    assert samples.select(["c"]).content_hashes() == [hashes[2]]
    relabelled = make(labels=[0, 1, 1, 0])
    assert relabelled.content_hashes()[:3] == hashes[:3]
    assert relabelled.content_hashes()[3] != hashes[3]
