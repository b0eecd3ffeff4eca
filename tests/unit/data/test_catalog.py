"""The catalogue: names, folder resolution, checksums, downloads (all offline) and errors."""

from __future__ import annotations

import hashlib
import io
import pickle
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest

import obliviate.data.download as download_module
from obliviate.data import DATASETS, RemoteFile, load_dataset
from obliviate.data.catalog import DATA_DIR_ENV, data_root
from obliviate.data.download import download_file
from obliviate.errors import ChecksumError, DatasetUnavailableError, UnknownNameError

MNIST_TEST_FILES = ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
Opener = Callable[..., io.BytesIO]


def serve(files: dict[str, bytes], log: list[str] | None = None) -> Opener:
    """A stand-in for urlopen that serves ``files`` by the URL's last path segment."""

    def opener(url: str, *args: object, **kwargs: object) -> io.BytesIO:
        if log is not None:
            log.append(url)
        name = url.rsplit("/", 1)[-1]
        if name not in files:
            raise URLError(f"no route to host for {url}")
        return io.BytesIO(files[name])

    return opener


def unreachable(url: str, *args: object, **kwargs: object) -> io.BytesIO:
    raise URLError("[Errno -3] Temporary failure in name resolution")


def test_catalogue_names() -> None:
    assert DATASETS.names() == [
        "cifar10",
        "cifar100",
        "cifar10_subset",
        "digits",
        "fashion_mnist",
        "mnist",
        "svhn",
    ]
    assert DATASETS.get("cifar100").num_classes == 100
    assert DATASETS.get("mnist").split_names == ("train", "test")


def test_published_digests_are_recorded() -> None:
    mnist = {f.filename: f.sha256 for f in DATASETS.get("mnist").files("train")}
    assert mnist["train-labels-idx1-ubyte.gz"] == (
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"
    )
    (svhn,) = DATASETS.get("svhn").files("test")
    assert svhn.md5 == "eb5a983be6a315427106f1b35e5f04b3"
    (cifar,) = DATASETS.get("cifar10").files("train")
    assert cifar.filename == "cifar-10-binary.tar.gz"
    assert cifar.md5 == "c32a1d4ab5d03f1284b67883e8d87530"


def test_unknown_dataset_lists_known_names() -> None:
    with pytest.raises(UnknownNameError, match="unknown dataset 'imagenet'.*cifar10.*mnist"):
        load_dataset("imagenet")


def test_unknown_split_lists_splits() -> None:
    with pytest.raises(UnknownNameError, match="'digits' has no split 'test'.*: train"):
        load_dataset("digits", split="test")


def test_digits_is_offline_and_scaled_by_its_fixed_maximum() -> None:
    from sklearn.datasets import load_digits

    digits = load_dataset("digits")
    assert digits.features.shape == (1797, 1, 8, 8)
    assert digits.features.dtype == np.float32
    expected = (load_digits().images[:, None] / 16.0).astype(np.float32)
    np.testing.assert_allclose(digits.features, expected, rtol=0, atol=1e-7)
    assert digits.labels.tolist()[:5] == [0, 1, 2, 3, 4]
    assert digits.sample_ids[1796] == "digits:train:1796"
    assert digits.subject_ids is None
    assert digits.name == "digits" and digits.num_classes == 10


def test_data_root_resolution_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert data_root() == Path.home() / ".cache" / "obliviate" / "data"
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "env"))
    assert data_root() == tmp_path / "env"
    assert data_root(tmp_path / "arg") == tmp_path / "arg"
    assert data_root("~/x") == Path.home() / "x"


def _cifar_bin(labels: list[int], seed: int) -> tuple[bytes, np.ndarray]:
    images = np.random.default_rng(seed).integers(0, 256, (len(labels), 3, 32, 32), np.uint8)
    records = np.hstack([np.array(labels, np.uint8)[:, None], images.reshape(len(labels), -1)])
    return records.tobytes(), images


def test_cifar10_from_extracted_binary_batches(data_root: Path) -> None:
    folder = data_root / "cifar10" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    first = None
    for i in range(1, 6):
        payload, images = _cifar_bin([i, 9 - i], seed=i)
        (folder / f"data_batch_{i}.bin").write_bytes(payload)
        first = images if first is None else first
    train = load_dataset("cifar10", data_dir=data_root, download=False)
    assert train.features.shape == (10, 3, 32, 32)
    assert train.labels.tolist() == [1, 8, 2, 7, 3, 6, 4, 5, 5, 4]
    assert train.sample_ids.tolist()[:2] == ["cifar10:train:0", "cifar10:train:1"]
    assert first is not None
    np.testing.assert_array_equal(train.features[:2], first.astype(np.float32) / np.float32(255))


def test_cifar100_from_extracted_python_batch(data_root: Path) -> None:
    folder = data_root / "cifar100" / "cifar-100-python"
    folder.mkdir(parents=True)
    images = np.zeros((2, 3072), np.uint8)
    (folder / "test").write_bytes(pickle.dumps({b"data": images, b"fine_labels": [99, 42]}))
    test = load_dataset("cifar100", split="test", data_dir=data_root, download=False)
    assert test.num_classes == 100
    assert test.labels.tolist() == [99, 42]


def test_environment_variable_is_used(monkeypatch: pytest.MonkeyPatch, shared_data: Path) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(shared_data))
    test = load_dataset("cifar10_subset", split="test")
    assert len(test) == 1000
    assert test.labels[:5].tolist() == [3, 8, 8, 0, 6]


def test_local_checksum_mismatch_names_file_and_digests(data_root: Path) -> None:
    folder = data_root / "svhn"
    folder.mkdir()
    (folder / "test_32x32.mat").write_bytes(b"not the official file")
    actual = hashlib.md5(b"not the official file").hexdigest()
    pattern = (
        r"checksum mismatch for .*svhn/test_32x32\.mat: expected md5 "
        rf"eb5a983be6a315427106f1b35e5f04b3, got {actual}"
    )
    with pytest.raises(ChecksumError, match=pattern):
        load_dataset("svhn", split="test", data_dir=data_root, download=False)


def test_missing_dataset_with_network_down(
    monkeypatch: pytest.MonkeyPatch, data_root: Path
) -> None:
    monkeypatch.setattr(download_module, "urlopen", unreachable)
    with pytest.raises(DatasetUnavailableError) as caught:
        load_dataset("mnist", split="test", data_dir=data_root)
    message = str(caught.value)
    assert "dataset 'mnist' (split 'test') is not available" in message
    assert "Temporary failure in name resolution" in message
    assert f"Put these files in {data_root / 'mnist'}" in message
    for name in MNIST_TEST_FILES:
        assert name in message
    assert DATA_DIR_ENV in message
    assert isinstance(caught.value, FileNotFoundError)
    assert not (data_root / "mnist").exists()  # a failed download leaves no trace


def test_missing_dataset_without_download(data_root: Path) -> None:
    with pytest.raises(DatasetUnavailableError, match="not on disk and download=False"):
        load_dataset("fashion_mnist", data_dir=data_root, download=False)


def test_dataset_without_url_says_where_to_put_files(data_root: Path) -> None:
    with pytest.raises(DatasetUnavailableError) as caught:
        load_dataset("cifar10_subset", data_dir=data_root)
    message = str(caught.value)
    assert "no public download URL" in message
    assert "data_batch_1_first4000.bin.gz" in message
    assert str(data_root / "cifar10_subset") in message


def test_cifar10_message_mentions_alternative_layouts(data_root: Path) -> None:
    with pytest.raises(DatasetUnavailableError) as caught:
        load_dataset("cifar10", split="test", data_dir=data_root, download=False)
    message = str(caught.value)
    assert "cifar-10-binary.tar.gz" in message
    assert "cifar-10-python.tar.gz" in message
    assert "cifar-10-batches-bin/test_batch.bin" in message


def test_download_then_load(
    monkeypatch: pytest.MonkeyPatch, data_root: Path, shared_data: Path
) -> None:
    files = {name: (shared_data / "mnist" / name).read_bytes() for name in MNIST_TEST_FILES}
    log: list[str] = []
    monkeypatch.setattr(download_module, "urlopen", serve(files, log))
    test = load_dataset("mnist", split="test", data_dir=data_root)
    assert len(test) == 10000 and test.labels[:3].tolist() == [7, 2, 1]
    assert sorted(p.name for p in (data_root / "mnist").iterdir()) == sorted(MNIST_TEST_FILES)
    assert all(url.startswith("https://ossci-datasets.s3.amazonaws.com/mnist/") for url in log)
    # A second load finds the files and does not download again.
    monkeypatch.setattr(download_module, "urlopen", unreachable)
    assert len(load_dataset("mnist", split="test", data_dir=data_root)) == 10000


def test_download_into_existing_folder_keeps_it(
    monkeypatch: pytest.MonkeyPatch, data_root: Path
) -> None:
    (data_root / "fashion-mnist").mkdir()
    monkeypatch.setattr(download_module, "urlopen", unreachable)
    with pytest.raises(DatasetUnavailableError, match="Put these files in .*fashion-mnist:"):
        load_dataset("fashion_mnist", split="test", data_dir=data_root)
    assert [p.name for p in data_root.iterdir()] == ["fashion-mnist"]


def test_download_with_wrong_bytes_leaves_nothing(
    monkeypatch: pytest.MonkeyPatch, data_root: Path
) -> None:
    files = {name: b"<html>mirror moved</html>" for name in MNIST_TEST_FILES}
    monkeypatch.setattr(download_module, "urlopen", serve(files))
    with pytest.raises(ChecksumError, match="checksum mismatch for .*t10k-images-idx3-ubyte.gz"):
        load_dataset("mnist", split="test", data_dir=data_root)
    assert list(data_root.iterdir()) == []


def test_download_file_over_file_urls_tries_mirrors(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(download_module, "urlopen", urllib.request.urlopen)
    source = tmp_path / "served" / "blob.bin"
    source.parent.mkdir()
    source.write_bytes(b"payload" * 1000)
    remote = RemoteFile(
        "blob.bin",
        urls=((tmp_path / "missing" / "blob.bin").as_uri(), source.as_uri()),
        sha256=hashlib.sha256(b"payload" * 1000).hexdigest(),
        md5=hashlib.md5(b"payload" * 1000).hexdigest(),
    )
    target = download_file(remote, tmp_path / "dest")
    assert target == tmp_path / "dest" / "blob.bin"
    assert target.read_bytes() == b"payload" * 1000
    assert [p.name for p in target.parent.iterdir()] == ["blob.bin"]


def test_download_file_checksum_failure_removes_partial_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(download_module, "urlopen", urllib.request.urlopen)
    source = tmp_path / "tampered.bin"
    source.write_bytes(b"tampered")
    remote = RemoteFile("blob.bin", urls=(source.as_uri(),), sha256="0" * 64)
    with pytest.raises(ChecksumError, match=f"expected sha256 {'0' * 64}, got "):
        download_file(remote, tmp_path / "dest")
    assert list((tmp_path / "dest").iterdir()) == []


def test_download_file_all_mirrors_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(download_module, "urlopen", unreachable)
    remote = RemoteFile("x.gz", urls=("https://a.example/x.gz", "https://b.example/x.gz"))
    with pytest.raises(DatasetUnavailableError, match="a.example.*URLError.*b.example"):
        download_file(remote, tmp_path)


def test_remote_file_rejects_malformed_digest() -> None:
    from obliviate.errors import ConfigError

    with pytest.raises(ConfigError, match="sha256 must be 64 lowercase hex digits"):
        RemoteFile("x", sha256="ABC")
