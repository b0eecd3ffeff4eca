"""CIFAR readers: binary records (CIFAR-10 and -100), python pickles, and the archives."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from obliviate.data import DATASETS, read_cifar_binary, read_cifar_python
from obliviate.data.cifar import parse_cifar_python
from obliviate.errors import ConfigError, DataError


def random_images(n: int, seed: int = 0) -> npt.NDArray[np.uint8]:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)


def binary_records(images: npt.NDArray[np.uint8], labels: npt.NDArray[np.uint8]) -> bytes:
    """CIFAR binary layout: label byte(s), then the red, green and blue planes."""
    label_rows = labels.reshape(len(images), -1).astype(np.uint8)
    return np.hstack([label_rows, images.reshape(len(images), -1)]).tobytes()


def python_batch(images: npt.NDArray[np.uint8], labels: list[int], key: bytes) -> bytes:
    return pickle.dumps(
        {b"batch_label": b"test", b"data": images.reshape(len(images), -1), key: labels}
    )


@pytest.mark.parametrize("compress", [False, True])
def test_cifar10_binary_round_trip(tmp_path: Path, compress: bool) -> None:
    images, labels = random_images(3), np.array([6, 9, 1], dtype=np.uint8)
    payload = binary_records(images, labels)
    path = tmp_path / "data_batch_1.bin"
    path.write_bytes(gzip.compress(payload) if compress else payload)
    got_images, got_labels = read_cifar_binary(path)
    assert got_images.dtype == np.uint8 and got_images.shape == (3, 3, 32, 32)
    np.testing.assert_array_equal(got_images, images)
    assert got_labels.dtype == np.int64
    assert got_labels.tolist() == [6, 9, 1]


def test_cifar100_binary_has_coarse_and_fine_labels(tmp_path: Path) -> None:
    images = random_images(2, seed=1)
    labels = np.array([[11, 87], [3, 42]], dtype=np.uint8)
    path = tmp_path / "train.bin"
    path.write_bytes(binary_records(images, labels))
    got_images, got_labels = read_cifar_binary(path, label_bytes=2)
    np.testing.assert_array_equal(got_images, images)
    assert got_labels.shape == (2, 2)
    assert got_labels.tolist() == [[11, 87], [3, 42]]


def test_binary_length_must_be_whole_records(tmp_path: Path) -> None:
    path = tmp_path / "cut.bin"
    path.write_bytes(binary_records(random_images(2), np.array([1, 2], dtype=np.uint8))[:-1])
    with pytest.raises(DataError, match="not a positive whole number of 3073-byte"):
        read_cifar_binary(path)


def test_label_bytes_must_be_one_or_two(tmp_path: Path) -> None:
    path = tmp_path / "any.bin"
    path.write_bytes(b"\x00" * 3073)
    with pytest.raises(ConfigError, match="label_bytes must be 1"):
        read_cifar_binary(path, label_bytes=3)


def test_python_batch_round_trip(tmp_path: Path) -> None:
    images = random_images(4, seed=2)
    path = tmp_path / "data_batch_1"
    path.write_bytes(python_batch(images, [3, 8, 8, 0], b"labels"))
    got_images, got_labels = read_cifar_python(path)
    np.testing.assert_array_equal(got_images, images)
    assert got_labels.dtype == np.int64
    assert got_labels.tolist() == [3, 8, 8, 0]


def test_python_batch_prefers_fine_labels(tmp_path: Path) -> None:
    images = random_images(2, seed=3)
    batch = {b"data": images.reshape(2, -1), b"fine_labels": [99, 0], b"coarse_labels": [19, 4]}
    path = tmp_path / "train"
    path.write_bytes(pickle.dumps(batch))
    assert read_cifar_python(path)[1].tolist() == [99, 0]


def test_python_batch_written_by_python2_numpy_module_names(tmp_path: Path) -> None:
    # The official batches reference numpy.core.multiarray (numpy 1 names) in protocol 2.
    images = random_images(1, seed=4)
    payload = pickle.dumps({b"data": images.reshape(1, -1), b"labels": [5]}, protocol=2)
    path = tmp_path / "test_batch"
    path.write_bytes(payload.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    got_images, got_labels = read_cifar_python(path)
    np.testing.assert_array_equal(got_images, images)
    assert got_labels.tolist() == [5]


def _py2_string(payload: bytes) -> bytes:
    """Pickle's SHORT_BINSTRING/BINSTRING: how Python 2 stored ``str`` (bytes)."""
    if len(payload) < 256:
        return b"U" + bytes([len(payload)]) + payload
    return b"T" + struct.pack("<I", len(payload)) + payload


def test_python_batch_in_python2_byte_layout() -> None:
    # Hand-assembled like the official batches: Python 2 strings, numpy 1 module names.
    pixels = bytes(range(256)) * 12
    array = (
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85"
        + _py2_string(b"b")
        + b"\x87R(K\x01K\x01M\x00\x0c\x86cnumpy\ndtype\n"
        + _py2_string(b"u1")
        + b"K\x00K\x01\x87R(K\x03"
        + _py2_string(b"|")
        + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89"
        + _py2_string(pixels)
        + b"tb"
    )
    batch = b"\x80\x02}(" + _py2_string(b"data") + array + _py2_string(b"labels") + b"]K\x07au."
    images, labels = parse_cifar_python(batch, source="py2")
    assert images.shape == (1, 3, 32, 32)
    np.testing.assert_array_equal(images.reshape(-1), np.frombuffer(pixels, np.uint8))
    assert labels.tolist() == [7]


def test_python_batch_refuses_arbitrary_globals(tmp_path: Path) -> None:
    path = tmp_path / "evil"
    path.write_bytes(pickle.dumps({b"data": os.getcwd, b"labels": [0]}))
    with pytest.raises(DataError, match="refusing to load posix.getcwd"):
        read_cifar_python(path)


def test_python_batch_without_data_key(tmp_path: Path) -> None:
    path = tmp_path / "wrong"
    path.write_bytes(pickle.dumps({b"pixels": [], b"labels": []}))
    with pytest.raises(DataError, match="lacks b'data'"):
        read_cifar_python(path)


def test_python_batch_label_count_must_match(tmp_path: Path) -> None:
    path = tmp_path / "uneven"
    path.write_bytes(python_batch(random_images(2), [1], b"labels"))
    with pytest.raises(DataError, match="2 images but 1 labels"):
        read_cifar_python(path)


def _tar_gz(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


def test_cifar10_binary_archive_source_reads_batches_in_order(tmp_path: Path) -> None:
    batches = {
        f"cifar-10-batches-bin/data_batch_{i}.bin": binary_records(
            random_images(2, seed=i), np.array([i, i + 1], dtype=np.uint8)
        )
        for i in range(1, 6)
    }
    archive = _tar_gz(tmp_path / "cifar-10-binary.tar.gz", batches)
    preferred = DATASETS.get("cifar10").sources("train")[0]
    assert [f.filename for f in preferred.files] == ["cifar-10-binary.tar.gz"]
    images, labels = preferred.read([archive])
    assert images.shape == (10, 3, 32, 32)
    assert labels.tolist() == [1, 2, 2, 3, 3, 4, 4, 5, 5, 6]
    np.testing.assert_array_equal(images[:2], random_images(2, seed=1))


def test_cifar100_python_archive_source_uses_fine_labels(tmp_path: Path) -> None:
    images = random_images(3, seed=5)
    batch = pickle.dumps({b"data": images.reshape(3, -1), b"fine_labels": [7, 70, 99]})
    archive = _tar_gz(tmp_path / "cifar-100-python.tar.gz", {"cifar-100-python/test": batch})
    got_images, labels = DATASETS.get("cifar100").sources("test")[0].read([archive])
    np.testing.assert_array_equal(got_images, images)
    assert labels.tolist() == [7, 70, 99]


def test_archive_missing_members_is_a_data_error(tmp_path: Path) -> None:
    archive = _tar_gz(tmp_path / "cifar-10-binary.tar.gz", {"readme.html": b"<html/>"})
    with pytest.raises(DataError, match="lacks the expected members cifar-10-batches-bin/test"):
        DATASETS.get("cifar10").sources("test")[0].read([archive])
