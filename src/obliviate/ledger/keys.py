"""The workspace's checkpoint signing keys: one active Ed25519 key, old public keys kept.

::

    <workspace>/ledger/keys/
      active.pem          the signing key (PKCS#8 PEM, mode 0600)
      <key id>.vkey       every public key this log has used, active or retired

Rotation writes a new private key in place of the old one (the old private key is gone, so
it can sign nothing more) and keeps the old public key, because checkpoints and receipts it
signed must stay verifiable. All keys share the log's name; the key id tells them apart.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from obliviate.ledger.errors import LedgerError
from obliviate.ledger.note import SigningKey, VerifierKey

__all__ = ["Keyring", "write_private"]

_ACTIVE = "active.pem"


def write_private(path: Path, data: bytes, *, replace: bool) -> bool:
    """Writes ``data`` to ``path`` with mode 0600 (atomically).

    Returns:
        ``False`` when ``replace`` is false and another process created ``path`` first.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        tmp.unlink(missing_ok=True)


class Keyring:
    """Signing keys of one log, kept in a directory.

    Args:
        directory: where the keys live (created on first use).
        name: the key name, normally the log's origin.
    """

    def __init__(self, directory: Path, *, name: str) -> None:
        self.directory = directory
        self.name = name
        self._active: SigningKey | None = None

    def _load_active(self) -> SigningKey | None:
        path = self.directory / _ACTIVE
        try:
            pem = path.read_bytes()
        except FileNotFoundError:
            return None
        if path.stat().st_mode & 0o077:
            raise LedgerError(
                f"the signing key {path} is readable by other users; run `chmod 600 {path}`."
            )
        return SigningKey.from_pem(self.name, pem)

    def _publish(self, key: VerifierKey) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.directory / f"{key.key_hash}.vkey"
        if not path.exists():
            tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
            tmp.write_text(key.vkey + "\n")
            os.replace(tmp, path)

    def active(self) -> SigningKey:
        """The current signing key, generated on first use."""
        if self._active is None:
            key = self._load_active()
            if key is None:
                fresh = SigningKey.generate(self.name)
                if write_private(self.directory / _ACTIVE, fresh.to_pem(), replace=False):
                    key = fresh
                else:  # another process won the race; use its key
                    key = self._load_active()
                    if key is None:  # pragma: no cover - the winner's file exists by now
                        raise LedgerError(f"cannot read the signing key in {self.directory}.")
            self._publish(key.verifier)
            self._active = key
        return self._active

    def reload(self) -> None:
        """Forgets the cached key (another process may have rotated it)."""
        self._active = None

    def rotate(self) -> tuple[VerifierKey, VerifierKey]:
        """Replaces the signing key; returns ``(old, new)`` public keys."""
        old = self.active().verifier
        fresh = SigningKey.generate(self.name)
        self._publish(fresh.verifier)
        write_private(self.directory / _ACTIVE, fresh.to_pem(), replace=True)
        self._active = fresh
        return old, fresh.verifier

    def public_keys(self) -> list[VerifierKey]:
        """Every public key this log has used (active and retired), oldest first."""
        if not self.directory.is_dir():
            return []
        paths = sorted(self.directory.glob("*.vkey"), key=lambda p: (p.stat().st_mtime_ns, p))
        return [VerifierKey.parse(p.read_text()) for p in paths]
