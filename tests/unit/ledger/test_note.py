"""C2SP signed notes and checkpoints: the Go sumdb/note vector, keys, tampering."""

from __future__ import annotations

import base64

import pytest

from obliviate.ledger.errors import LedgerError, SignatureError, VerificationError
from obliviate.ledger.merkle import EMPTY_ROOT
from obliviate.ledger.note import (
    Checkpoint,
    SigningKey,
    VerifierKey,
    open_checkpoint,
    open_note,
    sign_checkpoint,
    sign_note,
)

# golang.org/x/mod/sumdb/note's documented example (keys and the signed note).
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n\u2014 PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


def go_key() -> SigningKey:
    seed = base64.b64decode(GO_SKEY.split("+", 4)[4])[1:]
    return SigningKey.from_seed("PeterNeumann", seed)


def test_reproduces_the_go_note_byte_for_byte() -> None:
    key = go_key()
    assert key.verifier.vkey == GO_VKEY
    assert sign_note(GO_TEXT, [key]) == GO_NOTE
    opened = open_note(GO_NOTE, [VerifierKey.parse(GO_VKEY)])
    assert opened.text == GO_TEXT
    assert opened.signed_by == (VerifierKey.parse(GO_VKEY),)


def test_changed_text_or_signature_is_rejected() -> None:
    vkey = VerifierKey.parse(GO_VKEY)
    with pytest.raises(SignatureError, match="does not verify"):
        open_note(GO_NOTE.replace("cryptography", "cryptographY"), [vkey])
    other = SigningKey.generate("PeterNeumann")
    with pytest.raises(SignatureError, match="not signed by any trusted key"):
        open_note(GO_NOTE, [other.verifier])


def test_unknown_signers_are_ignored_but_one_trusted_signature_is_needed() -> None:
    a, b = SigningKey.generate("log.example/a"), SigningKey.generate("log.example/b")
    note = sign_note("hello\n", [a, b])
    assert open_note(note, [b.verifier]).signed_by == (b.verifier,)


@pytest.mark.parametrize(
    "vkey",
    [
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong id
        "PeterNeumann+c74f20a3+AhpeNkHFDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # not type 1
        "PeterNeumann+c74f20a3",
        "nonsense",
    ],
)
def test_malformed_vkeys_are_rejected(vkey: str) -> None:
    with pytest.raises(VerificationError):
        VerifierKey.parse(vkey)


def test_key_names_and_texts_are_validated() -> None:
    with pytest.raises(LedgerError, match="key names"):
        SigningKey.generate("a b")
    with pytest.raises(LedgerError, match="newline"):
        sign_note("no newline", [go_key()])


def test_pem_round_trip_keeps_the_key() -> None:
    key = SigningKey.generate("obliviate/x")
    again = SigningKey.from_pem("obliviate/x", key.to_pem())
    assert again.verifier == key.verifier
    with pytest.raises(LedgerError, match="cannot read"):
        SigningKey.from_pem("obliviate/x", b"-----BEGIN NOTHING-----")


def test_checkpoint_round_trip_and_tampering() -> None:
    key = SigningKey.generate("obliviate/abc")
    cp = Checkpoint(origin="obliviate/abc", size=8, root=EMPTY_ROOT)
    note = sign_checkpoint(cp, key)
    assert note.startswith("obliviate/abc\n8\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n")
    parsed, signers = open_checkpoint(note, [key.verifier], origin="obliviate/abc")
    assert parsed == cp and signers == (key.verifier,)
    with pytest.raises(SignatureError):
        open_checkpoint(note.replace("\n8\n", "\n9\n"), [key.verifier])
    with pytest.raises(VerificationError, match="not 'other'"):
        open_checkpoint(note, [key.verifier], origin="other")
    rotated = SigningKey.generate("obliviate/abc")
    assert rotated.verifier.id != key.verifier.id
    with pytest.raises(SignatureError, match="trusted"):
        open_checkpoint(note, [rotated.verifier])
