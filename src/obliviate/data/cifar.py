"""Readers for the two official CIFAR-10/100 file formats.

The *binary version* stores fixed-size records (label bytes, then 1024 red, 1024 green and
1024 blue bytes). The *python version* stores pickled dicts; it is the format most people
already have on disk, because torchvision downloads it.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from obliviate.data.rawfile import read_payload
from obliviate.errors import ConfigError, DataError, DatasetUnavailableError

__all__ = [
    "CIFAR_IMAGE_SHAPE",
    "parse_cifar_binary",
    "parse_cifar_python",
    "read_cifar_binary",
    "read_cifar_python",
]

CIFAR_IMAGE_SHAPE = (3, 32, 32)
_PIXELS = 3 * 32 * 32

# The only globals an official python-version batch references: numpy's array and dtype
# reconstruction (old and new module paths), plus ``_codecs.encode``, which protocol-2
# pickles written by Python 3 use for bytes. Anything else is refused, so a tampered batch
# cannot run code when it is loaded.
_ALLOWED_GLOBALS = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),
    }
)


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """An unpickler that builds only builtins and numpy arrays."""

    def find_class(self, module: str, name: str) -> Any:  # Any: mirrors pickle's signature
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: CIFAR batches hold only dicts, lists and "
            "numpy arrays"
        )


def read_cifar_binary(
    path: str | Path, *, label_bytes: int = 1
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """Reads a CIFAR binary-version batch (``data_batch_1.bin``, ``test.bin``), gzip or not.

    Args:
        path: the batch file.
        label_bytes: 1 for CIFAR-10 (one label per record); 2 for CIFAR-100, whose records
            start with the coarse label and then the fine label.

    Returns:
        ``(images, labels)``: images uint8 of shape ``(N, 3, 32, 32)``; labels int64 of
        shape ``(N,)`` for CIFAR-10, or ``(N, 2)`` with columns (coarse, fine) for CIFAR-100.

    Raises:
        ConfigError: ``label_bytes`` is not 1 or 2.
        DataError: the file is not a whole number of records.
    """
    source = Path(path)
    return parse_cifar_binary(read_payload(source), label_bytes=label_bytes, source=str(source))


def parse_cifar_binary(
    payload: bytes, *, label_bytes: int = 1, source: str = "<bytes>"
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """Parses binary-version records; ``source`` only names the data in error messages."""
    if label_bytes not in (1, 2):
        raise ConfigError(
            f"label_bytes must be 1 (CIFAR-10) or 2 (CIFAR-100); got {label_bytes!r}."
        )
    record = label_bytes + _PIXELS
    if not payload or len(payload) % record:
        raise DataError(
            f"{source} has {len(payload)} bytes, which is not a positive whole number of "
            f"{record}-byte CIFAR records (label_bytes={label_bytes}); the file is truncated "
            "or label_bytes is wrong."
        )
    records = np.frombuffer(payload, dtype=np.uint8).reshape(-1, record)
    labels = records[:, :label_bytes].astype(np.int64)
    images = records[:, label_bytes:].reshape(-1, *CIFAR_IMAGE_SHAPE).copy()
    return images, (labels[:, 0] if label_bytes == 1 else labels)


def read_cifar_python(path: str | Path) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """Reads a CIFAR python-version batch (``data_batch_1``, ``test_batch``, ``train``).

    This is the official format published by the dataset authors: a pickled dict with
    ``b"data"`` (uint8, ``(N, 3072)``) and ``b"labels"`` (CIFAR-10) or ``b"fine_labels"``
    (CIFAR-100). Pickle can run code, so only point this at files you obtained from the
    official archive. As a second line of defence the unpickler refuses every global except
    numpy's array reconstruction, so a tampered file fails instead of executing.

    Returns:
        ``(images, labels)``: images uint8 ``(N, 3, 32, 32)``; labels int64 ``(N,)``,
        the fine labels for CIFAR-100.

    Raises:
        DataError: the file is not a CIFAR python batch.
    """
    source = Path(path)
    try:
        payload = source.read_bytes()
    except FileNotFoundError:
        raise DatasetUnavailableError(f"file not found: {source}.") from None
    return parse_cifar_python(payload, source=str(source))


def parse_cifar_python(
    payload: bytes, *, source: str = "<bytes>"
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """Parses a pickled python-version batch; ``source`` only names it in error messages."""
    try:
        # encoding="bytes" is what the dataset authors prescribe: the batches were pickled by
        # Python 2, and decoding their byte strings as text would corrupt the pixel buffers.
        batch = _ArrayOnlyUnpickler(io.BytesIO(payload), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise DataError(f"{source} is not a CIFAR python batch: {exc}.") from None
    if not isinstance(batch, dict):
        raise DataError(f"{source} is not a CIFAR python batch: it holds a {type(batch)}.")
    data = _entry(batch, "data")
    labels = _entry(batch, "fine_labels")
    if labels is None:
        labels = _entry(batch, "labels")
    if data is None or labels is None:
        keys = ", ".join(sorted(repr(k) for k in batch))
        raise DataError(
            f"{source} lacks b'data' and b'labels' (or b'fine_labels'); its keys are {keys}."
        )
    images, targets = _images(np.asarray(data), source), _labels(np.asarray(labels), source)
    if len(images) != len(targets):
        raise DataError(f"{source} has {len(images)} images but {len(targets)} labels.")
    return images, targets


def _entry(batch: dict[Any, Any], key: str) -> object:
    """Looks ``key`` up as bytes (Python 2 batches) or text (batches re-saved by Python 3)."""
    value: object = batch.get(key.encode(), batch.get(key))
    return value


def _images(data: npt.NDArray[Any], source: str) -> npt.NDArray[np.uint8]:
    if data.ndim != 2 or data.shape[1] != _PIXELS:
        raise DataError(f"{source}: b'data' must have shape (N, {_PIXELS}); got {data.shape}.")
    if data.dtype != np.uint8:
        if data.dtype.kind not in "iu" or (data.size and (data.min() < 0 or data.max() > 255)):
            raise DataError(f"{source}: b'data' must hold bytes 0..255; got dtype {data.dtype}.")
    return data.astype(np.uint8).reshape(-1, *CIFAR_IMAGE_SHAPE)


def _labels(labels: npt.NDArray[Any], source: str) -> npt.NDArray[np.int64]:
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(
            f"{source}: labels must be a flat list of integers; got shape {labels.shape} "
            f"and dtype {labels.dtype}."
        )
    return labels.astype(np.int64)
