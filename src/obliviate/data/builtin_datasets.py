"""The built-in catalogue entries: MNIST, Fashion-MNIST, CIFAR-10/100, SVHN, digits and the
CIFAR-10 subset shipped in the shared data folder.

Digests are the published ones (SHA-256 for the MNIST family, the MD5 values torchvision
checks for CIFAR and SVHN, SHA-256 from the shared-data README for the CIFAR-10 subset), so
a file that loads is byte-identical to the official one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from obliviate.data.catalog import DATASETS, DatasetSpec, SplitReader, SplitSource
from obliviate.data.cifar import (
    parse_cifar_binary,
    parse_cifar_python,
    read_cifar_binary,
    read_cifar_python,
)
from obliviate.data.download import RemoteFile
from obliviate.data.idx import read_idx
from obliviate.data.rawfile import read_tar_members
from obliviate.data.svhn import read_svhn_mat
from obliviate.errors import DataError

__all__: list[str] = []

_Split = tuple[npt.NDArray[Any], npt.NDArray[np.int64]]

_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
_FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
_TORONTO = "https://www.cs.toronto.edu/~kriz/"
_SVHN = "http://ufldl.stanford.edu/housenumbers/"


def _read_idx_pair(paths: Sequence[Path]) -> _Split:
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(
            f"{paths[0]} and {paths[1]} do not pair up: images {images.shape}, "
            f"labels {labels.shape}; expected (N, H, W) and (N,)."
        )
    return images[:, np.newaxis], labels.astype(np.int64)


def _idx_spec(
    name: str, mirrors: Sequence[str], digests: dict[str, str], *, aliases: tuple[str, ...] = ()
) -> DatasetSpec:
    def remote(filename: str) -> RemoteFile:
        return RemoteFile(
            filename, urls=tuple(m + filename for m in mirrors), sha256=digests[filename]
        )

    def split(prefix: str) -> tuple[SplitSource, ...]:
        files = (remote(f"{prefix}-images-idx3-ubyte.gz"), remote(f"{prefix}-labels-idx1-ubyte.gz"))
        return (SplitSource(files, _read_idx_pair, "gzip IDX files"),)

    return DatasetSpec(
        name=name,
        num_classes=10,
        splits={"train": split("train"), "test": split("t10k")},
        folder_aliases=aliases,
        description=f"{name}: 28x28 grayscale, 60,000 train / 10,000 test, IDX files",
    )


def _label_column(labels: npt.NDArray[np.int64], column: int | None) -> npt.NDArray[np.int64]:
    return labels if column is None else labels[:, column]


def _concat(parts: Sequence[_Split]) -> _Split:
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _binary_files(label_bytes: int = 1, label_column: int | None = None) -> SplitReader:
    def read(paths: Sequence[Path]) -> _Split:
        parts = [read_cifar_binary(path, label_bytes=label_bytes) for path in paths]
        return _concat([(images, _label_column(y, label_column)) for images, y in parts])

    return read


def _binary_archive(
    members: Sequence[str], label_bytes: int = 1, label_column: int | None = None
) -> SplitReader:
    def read(paths: Sequence[Path]) -> _Split:
        blobs = read_tar_members(paths[0], members)
        parts = []
        for member in members:
            source = f"{paths[0]}:{member}"
            images, y = parse_cifar_binary(blobs[member], label_bytes=label_bytes, source=source)
            parts.append((images, _label_column(y, label_column)))
        return _concat(parts)

    return read


def _python_files(paths: Sequence[Path]) -> _Split:
    return _concat([read_cifar_python(path) for path in paths])


def _python_archive(members: Sequence[str]) -> SplitReader:
    def read(paths: Sequence[Path]) -> _Split:
        blobs = read_tar_members(paths[0], members)
        return _concat([parse_cifar_python(blobs[m], source=f"{paths[0]}:{m}") for m in members])

    return read


def _cifar10_split(batches: Sequence[str]) -> tuple[SplitSource, ...]:
    binary = [f"cifar-10-batches-bin/{b}.bin" for b in batches]
    python = [f"cifar-10-batches-py/{b}" for b in batches]
    binary_archive = RemoteFile(
        "cifar-10-binary.tar.gz",
        urls=(_TORONTO + "cifar-10-binary.tar.gz",),
        md5="c32a1d4ab5d03f1284b67883e8d87530",
    )
    python_archive = RemoteFile(
        "cifar-10-python.tar.gz",
        urls=(_TORONTO + "cifar-10-python.tar.gz",),
        md5="c58f30108f718f92721af3b95e74349a",
    )
    return (
        SplitSource((binary_archive,), _binary_archive(binary), "the binary-version archive"),
        SplitSource((python_archive,), _python_archive(python), "the python-version archive"),
        SplitSource(tuple(RemoteFile(f) for f in binary), _binary_files(), "extracted .bin"),
        SplitSource(tuple(RemoteFile(f) for f in python), _python_files, "extracted batches"),
    )


def _cifar100_split(split: str) -> tuple[SplitSource, ...]:
    python_archive = RemoteFile(
        "cifar-100-python.tar.gz",
        urls=(_TORONTO + "cifar-100-python.tar.gz",),
        md5="eb9058c3a382ffc7106e4002c42a8d85",
    )
    python = f"cifar-100-python/{split}"
    binary = f"cifar-100-binary/{split}.bin"
    fine = 1  # binary CIFAR-100 records carry (coarse, fine); the catalogue uses fine labels
    return (
        SplitSource((python_archive,), _python_archive([python]), "the python-version archive"),
        SplitSource(
            (RemoteFile("cifar-100-binary.tar.gz"),),
            _binary_archive([binary], label_bytes=2, label_column=fine),
            "the binary-version archive",
        ),
        SplitSource((RemoteFile(python),), _python_files, "the extracted python batch"),
        SplitSource(
            (RemoteFile(binary),), _binary_files(label_bytes=2, label_column=fine), "extracted .bin"
        ),
    )


def _svhn_split(filename: str, md5: str) -> tuple[SplitSource, ...]:
    def read(paths: Sequence[Path]) -> _Split:
        return read_svhn_mat(paths[0])

    remote = RemoteFile(filename, urls=(_SVHN + filename,), md5=md5)
    return (SplitSource((remote,), read, "the MATLAB file"),)


def _read_digits(paths: Sequence[Path]) -> _Split:
    from sklearn.datasets import load_digits  # deferred: scikit-learn is slow to import

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float64)
    labels = np.asarray(bunch.target, dtype=np.int64)
    return images[:, np.newaxis], labels


def _cifar10_subset_split(filename: str, sha256: str) -> tuple[SplitSource, ...]:
    remote = RemoteFile(filename, sha256=sha256)
    return (SplitSource((remote,), _binary_files(), "a gzipped CIFAR-10 binary batch"),)


def _register(spec: DatasetSpec) -> None:
    DATASETS.add(spec.name, spec)


_register(
    _idx_spec(
        "mnist",
        _MNIST_MIRRORS,
        {
            "train-images-idx3-ubyte.gz": (
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"
            ),
            "train-labels-idx1-ubyte.gz": (
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"
            ),
            "t10k-images-idx3-ubyte.gz": (
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"
            ),
            "t10k-labels-idx1-ubyte.gz": (
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"
            ),
        },
    )
)
_register(
    _idx_spec(
        "fashion_mnist",
        _FASHION_MIRRORS,
        {
            "train-images-idx3-ubyte.gz": (
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"
            ),
            "train-labels-idx1-ubyte.gz": (
                "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"
            ),
            "t10k-images-idx3-ubyte.gz": (
                "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"
            ),
            "t10k-labels-idx1-ubyte.gz": (
                "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"
            ),
        },
        aliases=("fashion-mnist",),
    )
)
_register(
    DatasetSpec(
        name="cifar10",
        num_classes=10,
        splits={
            "train": _cifar10_split([f"data_batch_{i}" for i in range(1, 6)]),
            "test": _cifar10_split(["test_batch"]),
        },
        description="CIFAR-10: 32x32 RGB, 50,000 train / 10,000 test",
    )
)
_register(
    DatasetSpec(
        name="cifar100",
        num_classes=100,
        splits={"train": _cifar100_split("train"), "test": _cifar100_split("test")},
        description="CIFAR-100: 32x32 RGB, fine labels, 50,000 train / 10,000 test",
    )
)
_register(
    DatasetSpec(
        name="svhn",
        num_classes=10,
        splits={
            "train": _svhn_split("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"),
            "test": _svhn_split("test_32x32.mat", "eb5a983be6a315427106f1b35e5f04b3"),
        },
        description="SVHN cropped digits: 32x32 RGB, 73,257 train / 26,032 test",
    )
)
_register(
    DatasetSpec(
        name="digits",
        num_classes=10,
        splits={"train": (SplitSource((), _read_digits, "scikit-learn's bundled copy"),)},
        pixel_max=16.0,
        description="scikit-learn digits: 1,797 8x8 grayscale images, offline, one split",
    )
)
_register(
    DatasetSpec(
        name="cifar10_subset",
        num_classes=10,
        splits={
            "train": _cifar10_subset_split(
                "data_batch_1_first4000.bin.gz",
                "d32c18318de59292af92f571821e2570d0ce4d63cf4b3de2570ee51bf268ee72",
            ),
            "test": _cifar10_subset_split(
                "test_batch_first1000.bin.gz",
                "3d5e72c2623a79c57b916d8669b4cba52fa2984d04cb8cd7d256902adc743432",
            ),
        },
        folder_aliases=("cifar10-subset",),
        description="first 4,000 train / 1,000 test CIFAR-10 images (shared data folder)",
    )
)
