"""Keyed pseudonyms: how subject and sample ids appear in the append-only ledger.

The ledger can never be edited, so it must never hold a personal identifier (invariant 5).
Ids appear only as ``HMAC-SHA256(workspace secret, kind || 0x00 || id)``. Whoever holds the
secret can recompute a pseudonym to find a subject's entries; without it the leaves reveal
nothing. Deleting the secret (``<workspace>/ledger/secret``) turns every pseudonym into an
unlinkable token (the accepted erasure pattern for append-only logs; see EDPB CEF 2025 on
the limits of pseudonymisation: while the key exists, a pseudonym is still personal data).
The kind prefix keeps a subject id and an equal sample id from sharing a pseudonym.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from pathlib import Path

from obliviate.ledger.errors import LedgerError
from obliviate.ledger.jcs import canonicalize
from obliviate.ledger.keys import write_private

__all__ = ["SECRET_BYTES", "Pseudonymizer", "commitment"]

SECRET_BYTES = 32


def commitment(pseudonyms: Iterable[str]) -> str:
    """SHA-256 over the canonical JSON of the sorted pseudonyms: commits to a set."""
    return hashlib.sha256(canonicalize(sorted(set(pseudonyms)))).hexdigest()


class Pseudonymizer:
    """Turns ids into keyed pseudonyms with a secret stored at ``path`` (created on use).

    Args:
        path: the secret file (32 random bytes, mode 0600).
        secret: the secret itself, for tests and tools that hold it already.
    """

    def __init__(self, path: Path | None = None, *, secret: bytes | None = None) -> None:
        if path is None and secret is None:
            raise LedgerError("a Pseudonymizer needs a secret file path or a secret.")
        self.path = path
        self._secret = secret

    def _key(self) -> bytes:
        if self._secret is None:
            if self.path is None:  # pragma: no cover - __init__ requires one of the two
                raise LedgerError("no pseudonym secret configured.")
            if not self.path.exists():
                write_private(self.path, secrets.token_bytes(SECRET_BYTES), replace=False)
            if self.path.stat().st_mode & 0o077:
                raise LedgerError(
                    f"the pseudonym secret {self.path} is readable by other users; run "
                    f"`chmod 600 {self.path}`."
                )
            data = self.path.read_bytes()
            if len(data) != SECRET_BYTES:
                raise LedgerError(
                    f"the pseudonym secret {self.path} has {len(data)} bytes, not "
                    f"{SECRET_BYTES}; restore it from backup (pseudonyms depend on it)."
                )
            self._secret = data
        return self._secret

    def _mac(self, kind: str, value: str) -> str:
        message = kind.encode() + b"\x00" + value.encode("utf-8", "surrogatepass")
        return hmac.new(self._key(), message, hashlib.sha256).hexdigest()

    def subject(self, subject_id: str) -> str:
        """The pseudonym of a data subject."""
        return self._mac("subject", subject_id)

    def sample(self, sample_id: str) -> str:
        """The pseudonym of a sample."""
        return self._mac("sample", sample_id)

    def text(self, text: str) -> str:
        """A keyed digest of free text (a deletion reason), never the text itself."""
        return self._mac("text", text)

    def subjects(self, ids: Iterable[str]) -> list[str]:
        """Pseudonyms of several subjects, sorted (the order must not leak anything)."""
        return sorted({self.subject(i) for i in ids})

    def samples(self, ids: Iterable[str]) -> list[str]:
        """Pseudonyms of several samples, sorted."""
        return sorted({self.sample(i) for i in ids})
