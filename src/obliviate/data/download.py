"""Checksums and downloads for dataset files.

A file is trusted only after its digest matches the published one, whether it came from
disk or from the network. Downloads go to a temporary file beside the target and are
renamed into place only after verification, so an interrupted or corrupt download never
leaves a file that a later run would mistake for the real one.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

from obliviate.errors import ChecksumError, ConfigError, DatasetUnavailableError

__all__ = ["RemoteFile", "download_file", "verify_file"]

_CHUNK = 1 << 20
_HEX_LENGTHS = {"sha256": 64, "md5": 32}
_HEX = re.compile(r"^[0-9a-f]+$")

# (resolved path, size, mtime_ns, digests) of files already verified in this process, so a
# dataset loaded twice is hashed once. A rewritten file changes size or mtime and is rehashed.
_Digests = tuple[tuple[str, str], ...]
_VERIFIED: set[tuple[str, int, int, _Digests]] = set()


@dataclass(frozen=True)
class RemoteFile:
    """One file a dataset needs: its name in the dataset folder, its sources and its digest.

    Attributes:
        filename: path relative to the dataset folder, e.g. ``"train-images-idx3-ubyte.gz"``.
        urls: mirrors to try in order; empty when the file cannot be downloaded.
        sha256: published SHA-256 (hex), when known.
        md5: published MD5 (hex), when known; several datasets publish only MD5.
    """

    filename: str
    urls: tuple[str, ...] = ()
    sha256: str | None = None
    md5: str | None = None

    def __post_init__(self) -> None:
        for algorithm, length in _HEX_LENGTHS.items():
            value = getattr(self, algorithm)
            if value is not None and (len(value) != length or not _HEX.match(value)):
                raise ConfigError(
                    f"{self.filename}: {algorithm} must be {length} lowercase hex digits; "
                    f"got {value!r}."
                )

    @property
    def digests(self) -> _Digests:
        """``(algorithm, expected hex)`` pairs for every digest that is known."""
        pairs = (("sha256", self.sha256), ("md5", self.md5))
        return tuple((algorithm, value) for algorithm, value in pairs if value is not None)


def _digest_chunks(chunks: Iterable[bytes], algorithms: Iterable[str]) -> dict[str, str]:
    hashers = {name: hashlib.new(name) for name in algorithms}
    for chunk in chunks:
        for hasher in hashers.values():
            hasher.update(chunk)
    return {name: hasher.hexdigest() for name, hasher in hashers.items()}


def _file_chunks(path: Path) -> Iterable[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            yield chunk


def _check(actual: dict[str, str], remote: RemoteFile, where: Path) -> None:
    for algorithm, expected in remote.digests:
        if actual[algorithm] != expected:
            advice = (
                "delete it so that it is downloaded again, or replace it with the official file"
                if remote.urls
                else "replace it with the official file"
            )
            raise ChecksumError(
                f"checksum mismatch for {where}: expected {algorithm} {expected}, "
                f"got {actual[algorithm]}. The file is corrupt, truncated or a different "
                f"version; {advice}."
            )


def verify_file(path: Path, remote: RemoteFile) -> None:
    """Checks ``path`` against every digest ``remote`` publishes; no digest means no check.

    Raises:
        ChecksumError: naming the file, the expected and the actual digest.
    """
    if not remote.digests:
        return
    if _verified_key(path, remote) in _VERIFIED:
        return
    actual = _digest_chunks(_file_chunks(path), (algorithm for algorithm, _ in remote.digests))
    _check(actual, remote, path)
    _VERIFIED.add(_verified_key(path, remote))


def _verified_key(path: Path, remote: RemoteFile) -> tuple[str, int, int, _Digests]:
    stat = path.stat()
    return (str(path.resolve()), stat.st_size, stat.st_mtime_ns, remote.digests)


def _fetch(url: str, target: Path, remote: RemoteFile, timeout: float) -> None:
    """Downloads ``url`` to ``target`` through a verified temporary file."""
    fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    temp = Path(temp_name)
    try:
        hashers = {name: hashlib.new(name) for name, _ in remote.digests}
        with os.fdopen(fd, "wb") as out, urlopen(url, timeout=timeout) as response:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                for hasher in hashers.values():
                    hasher.update(chunk)
        _check({name: h.hexdigest() for name, h in hashers.items()}, remote, target)
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def download_file(remote: RemoteFile, folder: Path, *, timeout: float = 60.0) -> Path:
    """Downloads ``remote`` into ``folder``, trying each mirror until one verifies.

    Args:
        remote: the file, its mirrors and digests.
        folder: the dataset folder; created when missing.
        timeout: seconds to wait on an unresponsive server before trying the next mirror.

    Returns:
        The path of the verified file.

    Raises:
        ChecksumError: a mirror answered but served bytes with the wrong digest, and no
            other mirror served the right ones.
        DatasetUnavailableError: no mirror could be reached; the message lists each failure.
    """
    target = folder / remote.filename
    if not remote.urls:
        raise DatasetUnavailableError(f"{remote.filename} has no download URL.")
    target.parent.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    mismatch: ChecksumError | None = None
    for url in remote.urls:
        try:
            _fetch(url, target, remote, timeout)
        except ChecksumError as exc:
            mismatch = mismatch or exc
            failures.append(f"{url}: {exc}")
        except (URLError, OSError, http.client.HTTPException, ValueError) as exc:
            failures.append(f"{url}: {type(exc).__name__}: {exc}")
        else:
            if remote.digests:  # verified while streaming; the next load need not hash again
                _VERIFIED.add(_verified_key(target, remote))
            return target
    if mismatch is not None:
        raise mismatch
    raise DatasetUnavailableError(f"could not download {remote.filename}: {'; '.join(failures)}")
