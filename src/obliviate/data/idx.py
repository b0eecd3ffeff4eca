"""Reader for the IDX format used by MNIST and Fashion-MNIST.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of
dimensions), one big-endian uint32 per dimension, then the values in row-major order.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from obliviate.data.rawfile import read_payload
from obliviate.errors import DataError

__all__ = ["parse_idx", "read_idx"]

# Type codes from the IDX specification; every multi-byte type is big-endian on disk.
_IDX_DTYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


def read_idx(path: str | Path) -> npt.NDArray[Any]:
    """Reads an IDX file, plain or gzip-compressed.

    Args:
        path: e.g. ``train-images-idx3-ubyte.gz`` (magic ``0x803``, shape ``(N, 28, 28)``)
            or ``train-labels-idx1-ubyte.gz`` (magic ``0x801``, shape ``(N,)``).

    Returns:
        A writable array in native byte order whose dtype is the one the file declares
        (``uint8`` for MNIST), hence ``Any`` as the element type.

    Raises:
        DataError: the file is not IDX, or its length disagrees with its header.
    """
    source = Path(path)
    return parse_idx(read_payload(source), source=str(source))


def parse_idx(payload: bytes, *, source: str = "<bytes>") -> npt.NDArray[Any]:
    """Parses IDX bytes; ``source`` only names the data in error messages."""
    if len(payload) < 4:
        raise DataError(f"{source} is not an IDX file: only {len(payload)} bytes long.")
    type_code, ndim = payload[2], payload[3]
    if payload[:2] != b"\x00\x00" or type_code not in _IDX_DTYPES or ndim == 0:
        magic = int.from_bytes(payload[:4], "big")
        raise DataError(
            f"{source} is not an IDX file: magic number 0x{magic:08x}; expected 0x00000801 "
            "(labels), 0x00000803 (images) or another 0x0000TTDD IDX header."
        )
    header = 4 + 4 * ndim
    if len(payload) < header:
        raise DataError(f"{source} is truncated inside its IDX header ({len(payload)} bytes).")
    dims = struct.unpack(f">{ndim}I", payload[4:header])
    dtype = np.dtype(_IDX_DTYPES[type_code])
    count = math.prod(dims)
    expected = header + count * dtype.itemsize
    if len(payload) != expected:
        problem = "truncated" if len(payload) < expected else "longer than its header says"
        raise DataError(
            f"{source} is {problem}: the header declares shape {tuple(dims)} "
            f"({expected} bytes in all) but the file has {len(payload)} bytes."
        )
    values = np.frombuffer(payload, dtype=dtype, count=count, offset=header)
    # astype copies, which both converts to native byte order and makes the array writable.
    return values.reshape(dims).astype(dtype.newbyteorder("="))
