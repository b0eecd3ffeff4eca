"""The real files in the shared data folder, loaded through the catalogue.

Each split is loaded once per session (they take up to a second each) and shared by the
tests that inspect it.
"""

from __future__ import annotations

import functools
import gzip
from pathlib import Path

import numpy as np
import pytest

from obliviate.data import SampleSet, load_dataset, read_cifar_binary

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
CIFAR_SUBSET_TRAIN_COUNTS = [396, 366, 420, 384, 422, 393, 414, 385, 407, 413]
CIFAR_SUBSET_TEST_COUNTS = [103, 89, 100, 103, 90, 86, 112, 102, 106, 109]


@functools.cache
def _load(root: str, name: str, split: str) -> SampleSet:
    return load_dataset(name, split=split, data_dir=root, download=False)


def load(shared_data: Path, name: str, split: str) -> SampleSet:
    return _load(str(shared_data), name, split)


def counts(samples: SampleSet) -> list[int]:
    return np.bincount(samples.labels, minlength=samples.num_classes).tolist()


def test_mnist_train(shared_data: Path) -> None:
    train = load(shared_data, "mnist", "train")
    assert train.features.shape == (60000, 1, 28, 28)
    assert train.features.dtype == np.float32
    assert train.labels.dtype == np.int64
    assert train.labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert counts(train) == MNIST_TRAIN_COUNTS
    assert float(train.features.min()) == 0.0 and float(train.features.max()) == 1.0
    assert train.sample_ids[0] == "mnist:train:0"
    assert train.sample_ids[-1] == "mnist:train:59999"
    assert train.subject_ids is None and train.name == "mnist" and train.num_classes == 10
    # The published normalisation constants confirm the pixels are the official ones.
    assert round(float(train.features.mean()), 4) == 0.1307


def test_mnist_test(shared_data: Path) -> None:
    test = load(shared_data, "mnist", "test")
    assert test.features.shape == (10000, 1, 28, 28)
    assert counts(test) == MNIST_TEST_COUNTS
    assert test.sample_ids[0] == "mnist:test:0"


def test_fashion_mnist_from_hyphenated_folder(shared_data: Path) -> None:
    train = load(shared_data, "fashion_mnist", "train")
    assert train.features.shape == (60000, 1, 28, 28)
    assert train.labels[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert counts(train) == [6000] * 10
    assert train.sample_ids[0] == "fashion_mnist:train:0"


def test_cifar10_subset_train(shared_data: Path) -> None:
    train = load(shared_data, "cifar10_subset", "train")
    assert train.features.shape == (4000, 3, 32, 32)
    assert train.labels[:5].tolist() == [6, 9, 9, 4, 1]
    expected_red = np.array([59, 43, 50, 68, 98], dtype=np.float32) / np.float32(255)
    np.testing.assert_array_equal(train.features[0, 0, 0, :5], expected_red)
    assert counts(train) == CIFAR_SUBSET_TRAIN_COUNTS


def test_cifar10_subset_test(shared_data: Path) -> None:
    test = load(shared_data, "cifar10_subset", "test")
    assert test.features.shape == (1000, 3, 32, 32)
    assert test.labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    np.testing.assert_array_equal(
        test.features[0, 0, 0, :4], np.array([158, 159, 165, 166], np.float32) / np.float32(255)
    )
    assert counts(test) == CIFAR_SUBSET_TEST_COUNTS


def test_subset_labels_agree_with_the_full_label_file(shared_data: Path) -> None:
    folder = shared_data / "cifar10-subset"
    all_labels = np.frombuffer((folder / "train_labels_50000.u8").read_bytes(), np.uint8)
    _, labels = read_cifar_binary(folder / "data_batch_1_first4000.bin.gz")
    np.testing.assert_array_equal(labels, all_labels[:4000])
    assert np.bincount(all_labels).tolist() == [5000] * 10


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_idx_files_are_gzip(shared_data: Path, name: str) -> None:
    with gzip.open(shared_data / name / "t10k-labels-idx1-ubyte.gz") as handle:
        assert handle.read(4) == b"\x00\x00\x08\x01"
