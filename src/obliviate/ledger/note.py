"""C2SP signed notes and tlog checkpoints, signed with Ed25519 through ``cryptography``.

A signed note (c2sp.org/signed-note) is UTF-8 text ending in a newline, a blank line, and
signature lines ``— <key name> <base64(4-byte key id || signature)>``. For Ed25519 the key
id is ``SHA-256(name || 0x0A || 0x01 || public key)[:4]`` and the signature covers the text
(final newline included). A verifier key is written ``<name>+<hex key id>+<base64(0x01 ||
public key)>`` (the "vkey" of Go's ``golang.org/x/mod/sumdb/note``, whose published example
note the tests reproduce byte for byte).

A checkpoint (c2sp.org/tlog-checkpoint) is a note whose text is the log's origin, its tree
size in decimal, and its root hash in base64, one per line. Rotating a key keeps its name
and changes its id, so old checkpoints stay verifiable with the old public key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from obliviate.ledger.errors import LedgerError, SignatureError, VerificationError
from obliviate.ledger.merkle import HASH_SIZE

__all__ = [
    "ALG_ED25519",
    "Checkpoint",
    "OpenedNote",
    "SigningKey",
    "VerifierKey",
    "key_id",
    "open_checkpoint",
    "open_note",
    "sign_checkpoint",
    "sign_note",
]

ALG_ED25519 = 0x01
_DASH = "\u2014 "
_MAX_SIGNATURES = 64
_SIG_LINE = re.compile(r"^\u2014 (\S+) ([A-Za-z0-9+/=]+)$")


def _check_name(name: str) -> str:
    if not name or "+" in name or any(ch.isspace() for ch in name):
        raise LedgerError(f"key names must be non-empty with no spaces or '+'; got {name!r}.")
    return name


def key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte C2SP key id of an Ed25519 key: ``SHA-256(name\\n 0x01 key)[:4]``."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public_key).digest()[:4]


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise VerificationError(f"{what} is not valid base64: {text[:40]!r}.") from None


@dataclass(frozen=True)
class VerifierKey:
    """A public key that checks note signatures: name, 4-byte id and Ed25519 key."""

    name: str
    public_key: bytes
    id: bytes = field(init=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        if len(self.public_key) != 32:
            raise LedgerError(f"an Ed25519 public key has 32 bytes; got {len(self.public_key)}.")
        object.__setattr__(self, "id", key_id(self.name, self.public_key))

    @property
    def key_hash(self) -> str:
        """The key id as 8 lowercase hex digits (as in the vkey string)."""
        return self.id.hex()

    @property
    def vkey(self) -> str:
        """``<name>+<hex id>+<base64(0x01 || public key)>``: the key to publish."""
        material = base64.b64encode(bytes([ALG_ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_hash}+{material}"

    @classmethod
    def parse(cls, vkey: str) -> VerifierKey:
        """Reads a vkey string, checking that its id matches its name and key.

        Raises:
            VerificationError: the string is malformed or its id does not match.
        """
        text = vkey.strip()
        parts = text.split("+", 2)
        if len(parts) != 3 or len(parts[1]) != 8:
            raise VerificationError(
                f"not a verifier key (expected <name>+<8 hex digits>+<base64>): {text[:60]!r}."
            )
        name, hex_id, material = parts
        raw = _b64decode(material, "the verifier key material")
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise VerificationError(
                f"verifier key {name!r} is not an Ed25519 key (type byte 0x01 + 32 bytes)."
            )
        try:
            key = cls(name=name, public_key=raw[1:])
        except LedgerError as exc:
            raise VerificationError(str(exc)) from None
        if key.key_hash != hex_id.lower():
            raise VerificationError(
                f"verifier key {name!r} claims id {hex_id} but its key hashes to {key.key_hash}."
            )
        return key

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is this key's Ed25519 signature of ``message``."""
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True


class SigningKey:
    """An Ed25519 private key with a note key name."""

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        self.name = _check_name(name)
        self._key = private_key
        public = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.verifier = VerifierKey(name=name, public_key=public)

    @classmethod
    def generate(cls, name: str) -> SigningKey:
        """A fresh random key called ``name``."""
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, name: str, seed: bytes) -> SigningKey:
        """The key with this 32-byte RFC 8032 seed (for test vectors and key import)."""
        return cls(name, Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def from_pem(cls, name: str, pem: bytes) -> SigningKey:
        """Reads an unencrypted PKCS#8 PEM Ed25519 key.

        Raises:
            LedgerError: the PEM does not hold an Ed25519 private key.
        """
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise LedgerError(f"cannot read the signing key {name!r}: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise LedgerError(f"the signing key {name!r} is not an Ed25519 key.")
        return cls(name, key)

    def to_pem(self) -> bytes:
        """Unencrypted PKCS#8 PEM (the file holding it must be mode 0600)."""
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def id(self) -> bytes:
        """The 4-byte key id."""
        return self.verifier.id

    def sign(self, message: bytes) -> bytes:
        """The raw 64-byte Ed25519 signature of ``message``."""
        return self._key.sign(message)


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise LedgerError("note text must end with a newline.")
    if any(ord(ch) < 0x20 and ch != "\n" for ch in text):
        raise LedgerError("note text must not contain control characters other than newline.")


def sign_note(text: str, keys: Sequence[SigningKey]) -> str:
    """``text`` as a signed note, with one signature line per key."""
    _check_text(text)
    if not keys:
        raise LedgerError("a signed note needs at least one signing key.")
    message = text.encode()
    lines = [f"{_DASH}{k.name} {base64.b64encode(k.id + k.sign(message)).decode()}\n" for k in keys]
    return text + "\n" + "".join(lines)


@dataclass(frozen=True)
class OpenedNote:
    """A note whose signatures were checked: its text and the keys that signed it."""

    text: str
    signed_by: tuple[VerifierKey, ...]


def open_note(note: str, keys: Iterable[VerifierKey]) -> OpenedNote:
    """Verifies a signed note against trusted keys and returns its text.

    Signatures by unknown keys are ignored (C2SP); a signature by a known key that fails
    rejects the whole note; at least one known key must have signed.

    Raises:
        VerificationError: the note is malformed.
        SignatureError: no trusted key signed it, or a trusted key's signature is bad.
    """
    if not note.endswith("\n"):
        raise VerificationError("a signed note must end with a newline.")
    split = note.rfind("\n\n")
    if split < 0:
        raise VerificationError("a signed note needs a blank line before its signatures.")
    text, block = note[: split + 1], note[split + 2 :]
    sig_lines = block.splitlines()
    if not sig_lines:
        raise VerificationError("the note has no signature lines.")
    if len(sig_lines) > _MAX_SIGNATURES:
        raise VerificationError(f"the note has more than {_MAX_SIGNATURES} signatures.")
    trusted = {(k.name, k.id): k for k in keys}
    message = text.encode()
    signed: list[VerifierKey] = []
    for line in sig_lines:
        match = _SIG_LINE.match(line)
        if match is None:
            raise VerificationError(f"malformed signature line {line[:60]!r}.")
        name, blob = match.group(1), _b64decode(match.group(2), "a note signature")
        if len(blob) < 5:
            raise VerificationError(f"the signature by {name!r} is too short.")
        key = trusted.get((name, blob[:4]))
        if key is None:
            continue
        if not key.verify(message, blob[4:]):
            raise SignatureError(
                f"the signature by key {name}+{blob[:4].hex()} does not verify: the note was "
                "changed after signing, or the signature is forged."
            )
        signed.append(key)
    if not signed:
        seen = ", ".join(
            f"{m.group(1)}+{_b64decode(m.group(2), 'a note signature')[:4].hex()}"
            for m in (_SIG_LINE.match(line) for line in sig_lines)
            if m is not None
        )
        known = ", ".join(f"{n}+{i.hex()}" for n, i in trusted) or "none"
        raise SignatureError(
            f"the note is not signed by any trusted key (signed by: {seen}; trusted: {known})."
        )
    return OpenedNote(text=text, signed_by=tuple(signed))


@dataclass(frozen=True)
class Checkpoint:
    """A log state: origin, tree size and root hash (c2sp.org/tlog-checkpoint)."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise LedgerError(f"a checkpoint origin is one non-empty line; got {self.origin!r}.")
        if self.size < 0 or len(self.root) != HASH_SIZE:
            raise LedgerError("a checkpoint needs a size >= 0 and a 32-byte root hash.")

    def text(self) -> str:
        """The checkpoint body: the note text that gets signed."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode()]
        return "\n".join([*lines, *self.extensions]) + "\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Reads a checkpoint body.

        Raises:
            VerificationError: the body is not a checkpoint.
        """
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise VerificationError("a checkpoint has an origin, a size and a root line.")
        origin, size_text, root_text, *rest = lines[:-1]
        if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
            raise VerificationError(f"checkpoint tree size {size_text!r} is not a decimal.")
        root = _b64decode(root_text, "the checkpoint root hash")
        if len(root) != HASH_SIZE:
            raise VerificationError(f"the checkpoint root hash has {len(root)} bytes, not 32.")
        return cls(origin=origin, size=int(size_text), root=root, extensions=tuple(rest))


def sign_checkpoint(checkpoint: Checkpoint, key: SigningKey) -> str:
    """The checkpoint as a signed note."""
    return sign_note(checkpoint.text(), [key])


def open_checkpoint(
    note: str, keys: Iterable[VerifierKey], *, origin: str | None = None
) -> tuple[Checkpoint, tuple[VerifierKey, ...]]:
    """Verifies a signed checkpoint and parses it.

    Raises:
        SignatureError: no trusted key signed it, or a signature is bad.
        VerificationError: it is not a checkpoint, or it is for another log's ``origin``.
    """
    opened = open_note(note, keys)
    checkpoint = Checkpoint.parse(opened.text)
    if origin is not None and checkpoint.origin != origin:
        raise VerificationError(f"the checkpoint is for log {checkpoint.origin!r}, not {origin!r}.")
    return checkpoint, opened.signed_by
