"""SVHN reader: axis order and the label-10-means-digit-0 convention."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat

from obliviate.data import DATASETS, read_svhn_mat
from obliviate.errors import DataError


def write_svhn(path: Path, n: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
    y = (np.arange(n, dtype=np.uint8) % 10 + 1).reshape(n, 1)  # 1..10, as SVHN stores them
    y[0, 0] = 10
    savemat(str(path), {"X": x, "y": y})
    return x, y


def test_round_trip_axes_and_labels(tmp_path: Path) -> None:
    path = tmp_path / "test_32x32.mat"
    x, y = write_svhn(path, n=4)
    images, labels = read_svhn_mat(path)
    assert images.shape == (4, 3, 32, 32) and images.dtype == np.uint8
    # X[h, w, c, n] must land at images[n, c, h, w].
    assert images[2, 1, 5, 7] == x[5, 7, 1, 2]
    np.testing.assert_array_equal(images, x.transpose(3, 2, 0, 1))
    assert labels.dtype == np.int64
    assert labels.tolist() == [0, 2, 3, 4]


def test_catalogue_source_reads_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "train_32x32.mat"
    write_svhn(path, n=2)
    images, labels = DATASETS.get("svhn").sources("train")[0].read([path])
    assert images.shape == (2, 3, 32, 32)
    assert labels.tolist() == [0, 2]


def test_missing_variables_are_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "other.mat"
    savemat(str(path), {"images": np.zeros((2, 2))})
    with pytest.raises(DataError, match="lacks the SVHN variables 'X' and 'y'"):
        read_svhn_mat(path)


def test_wrong_image_shape_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "small.mat"
    savemat(str(path), {"X": np.zeros((8, 8, 3, 2), dtype=np.uint8), "y": np.ones((2, 1))})
    with pytest.raises(DataError, match=r"'X' must have shape \(32, 32, 3, N\)"):
        read_svhn_mat(path)


def test_not_a_mat_file(tmp_path: Path) -> None:
    path = tmp_path / "junk.mat"
    path.write_bytes(b"definitely not matlab")
    with pytest.raises(DataError, match="junk.mat"):
        read_svhn_mat(path)
