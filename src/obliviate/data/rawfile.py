"""Byte-level access to dataset files: gzip detection and reading members of tar archives.

Dataset files arrive compressed in different ways (MNIST as ``.gz``, CIFAR as ``.tar.gz``).
Readers work on bytes so that one parser serves the plain file, the gzipped file and the
archive member alike; this module is the only place that knows about containers.
"""

from __future__ import annotations

import gzip
import tarfile
import zlib
from collections.abc import Sequence
from pathlib import Path

from obliviate.errors import DataError, DatasetUnavailableError

__all__ = ["read_payload", "read_tar_members"]

_GZIP_MAGIC = b"\x1f\x8b"


def read_payload(path: str | Path) -> bytes:
    """Returns a file's content, decompressed when it is gzip.

    Detection is by the gzip magic number rather than the suffix, so a file renamed after
    decompression (a common accident) still reads correctly.

    Raises:
        DatasetUnavailableError: the file does not exist.
        DataError: the file claims to be gzip but is truncated or corrupt.
    """
    source = Path(path)
    try:
        raw = source.read_bytes()
    except FileNotFoundError:
        raise DatasetUnavailableError(f"file not found: {source}.") from None
    except IsADirectoryError:
        raise DataError(f"{source} is a folder; expected a data file.") from None
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"{source} starts like a gzip file but could not be decompressed ({exc}); "
            "it is probably truncated, so fetch it again."
        ) from None


def read_tar_members(archive: str | Path, members: Sequence[str]) -> dict[str, bytes]:
    """Reads the named regular-file members of a (possibly compressed) tar archive.

    Members are read in memory in a single pass and never extracted, so an archive cannot
    write outside its folder however its member names are crafted.

    Args:
        archive: path to a ``.tar``, ``.tar.gz`` or other tar file that :mod:`tarfile` opens.
        members: member names exactly as stored, e.g. ``"cifar-10-batches-bin/test_batch.bin"``.

    Returns:
        A mapping from each requested member name to its bytes.

    Raises:
        DataError: the archive is unreadable or lacks some requested members.
    """
    source = Path(archive)
    wanted = set(members)
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(source, mode="r:*") as tar:
            for member in tar:
                if member.name not in wanted or not member.isfile():
                    continue
                handle = tar.extractfile(member)
                if handle is None:  # pragma: no cover - isfile() members always have data
                    continue
                with handle:
                    found[member.name] = handle.read()
                if len(found) == len(wanted):
                    break
    except FileNotFoundError:
        raise DatasetUnavailableError(f"archive not found: {source}.") from None
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{source} is not a readable tar archive: {exc}.") from None
    missing = sorted(wanted - found.keys())
    if missing:
        raise DataError(
            f"{source} lacks the expected members {', '.join(missing)}; "
            "it is not the official archive or it is incomplete."
        )
    return found
