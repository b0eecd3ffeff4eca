"""Reader for SVHN's cropped-digit MATLAB files (``train_32x32.mat``, ``test_32x32.mat``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from obliviate.errors import DataError, DatasetUnavailableError

__all__ = ["read_svhn_mat"]

# SVHN labels the digit 0 as class 10 (MATLAB's 1-based habit); everyone maps it back to 0.
_ZERO_LABEL = 10


def read_svhn_mat(path: str | Path) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """Reads an SVHN ``*_32x32.mat`` file.

    The file stores ``X`` with shape ``(32, 32, 3, N)`` (height, width, channel, sample) and
    ``y`` with shape ``(N, 1)`` holding 1..10, where 10 means the digit 0.

    Returns:
        ``(images, labels)``: images uint8 ``(N, 3, 32, 32)``; labels int64 ``(N,)`` in 0..9.

    Raises:
        DatasetUnavailableError: the file does not exist.
        DataError: the file is not an SVHN MATLAB file.
    """
    from scipy.io import loadmat  # deferred: scipy.io is slow to import and rarely needed

    source = Path(path)
    if not source.is_file():
        raise DatasetUnavailableError(f"file not found: {source}.")
    try:
        contents: dict[str, object] = loadmat(str(source), variable_names=["X", "y"])
    except Exception as exc:  # scipy's parser raises many types on junk (IndexError, ...)
        reason = f"{type(exc).__name__}: {exc}"
        raise DataError(f"{source} is not a readable MATLAB v5 file ({reason}).") from None
    images = contents.get("X")
    labels = contents.get("y")
    if not isinstance(images, np.ndarray) or not isinstance(labels, np.ndarray):
        raise DataError(f"{source} lacks the SVHN variables 'X' and 'y'.")
    if images.ndim != 4 or images.shape[:3] != (32, 32, 3):
        raise DataError(f"{source}: 'X' must have shape (32, 32, 3, N); got {images.shape}.")
    if images.dtype != np.uint8:
        raise DataError(f"{source}: 'X' must be uint8 pixels; got {images.dtype}.")
    flat = labels.reshape(-1)
    if flat.size != images.shape[3]:
        raise DataError(f"{source} has {images.shape[3]} images but {flat.size} labels.")
    if flat.dtype.kind not in "iuf" or np.any(flat != np.round(flat)):
        raise DataError(f"{source}: 'y' must hold integer labels 1..10; got {flat.dtype}.")
    digits = flat.astype(np.int64)
    digits[digits == _ZERO_LABEL] = 0
    # (H, W, C, N) -> (N, C, H, W); the copy makes rows contiguous for fast batching.
    return np.ascontiguousarray(images.transpose(3, 2, 0, 1)), digits
