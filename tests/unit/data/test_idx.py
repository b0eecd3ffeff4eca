"""IDX reader: round trips of files written here, plain and gzipped, and malformed headers."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from obliviate.data import read_idx
from obliviate.errors import DataError, DatasetUnavailableError

_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C, np.dtype(np.float64): 0x0E}


def idx_bytes(array: npt.NDArray[np.generic]) -> bytes:
    """Encodes ``array`` as IDX, the way the MNIST files were written."""
    header = bytes([0, 0, _CODES[array.dtype], array.ndim])
    dims = struct.pack(f">{array.ndim}I", *array.shape)
    return header + dims + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: npt.NDArray[np.generic], *, compress: bool) -> Path:
    payload = idx_bytes(array)
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


@pytest.mark.parametrize("compress", [False, True])
def test_images_round_trip(tmp_path: Path, compress: bool) -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    loaded = read_idx(write_idx(tmp_path / "images-idx3-ubyte", images, compress=compress))
    assert loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded, images)
    loaded[0, 0, 0] = 7  # callers may normalise in place, so the result must be writable


@pytest.mark.parametrize("compress", [False, True])
def test_labels_round_trip(tmp_path: Path, compress: bool) -> None:
    labels = np.array([5, 0, 4, 1, 9], dtype=np.uint8)
    loaded = read_idx(write_idx(tmp_path / "labels.gz", labels, compress=compress))
    assert loaded.shape == (5,)
    np.testing.assert_array_equal(loaded, labels)


def test_gzip_is_detected_by_content_not_suffix(tmp_path: Path) -> None:
    labels = np.array([1, 2], dtype=np.uint8)
    loaded = read_idx(write_idx(tmp_path / "no-suffix", labels, compress=True))
    np.testing.assert_array_equal(loaded, labels)


@pytest.mark.parametrize("dtype", [np.int32, np.float64])
def test_multibyte_types_are_big_endian_on_disk(tmp_path: Path, dtype: type) -> None:
    values = np.array([[1, -2], [300000, 4]], dtype=dtype)
    loaded = read_idx(write_idx(tmp_path / "values.idx", values, compress=False))
    assert loaded.dtype == np.dtype(dtype)
    assert loaded.dtype.isnative
    np.testing.assert_array_equal(loaded, values)


def test_bad_magic_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "bad.idx"
    path.write_bytes(b"\x12\x34\x08\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(DataError, match="not an IDX file: magic number 0x12340801"):
        read_idx(path)


def test_truncated_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "short.idx"
    path.write_bytes(idx_bytes(np.zeros((4, 2, 2), dtype=np.uint8))[:-3])
    with pytest.raises(DataError, match=r"truncated: the header declares shape \(4, 2, 2\)"):
        read_idx(path)


def test_trailing_bytes_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "long.idx"
    path.write_bytes(idx_bytes(np.zeros(3, dtype=np.uint8)) + b"junk")
    with pytest.raises(DataError, match="longer than its header says"):
        read_idx(path)


def test_corrupt_gzip_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros(100, dtype=np.uint8)))[:20])
    with pytest.raises(DataError, match="could not be decompressed"):
        read_idx(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetUnavailableError, match="file not found"):
        read_idx(tmp_path / "absent.gz")
