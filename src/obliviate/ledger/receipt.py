"""Deletion receipts: signed JSON a controller (or anyone holding it) can check offline.

A receipt is ``{"body": ..., "signature": ...}``. The body names the request, the
pseudonymous subjects and samples, the guarantee (exact, or approximate with its evidence),
the model version hashes before and after, when the request was received and completed,
and the proof that its ``request_completed`` event is in the audit log: the event itself
(so the verifier recomputes the leaf hash), the leaf index, the inclusion proof, and a
signed C2SP checkpoint. The signature is Ed25519 over the RFC 8785 JSON of the body, by the
same key that signed the checkpoint (its verifier key is embedded and must be pinned:
``--public-key`` or the workspace's keys).

Verification (:func:`verify_receipt`) needs no database: receipt signature, checkpoint
signature, leaf hash, inclusion proof, and that the body agrees with the logged event.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from obliviate.ledger.errors import SignatureError, VerificationError
from obliviate.ledger.jcs import canonicalize
from obliviate.ledger.merkle import leaf_hash, verify_inclusion
from obliviate.ledger.note import SigningKey, VerifierKey, open_checkpoint
from obliviate.ledger.pseudonym import commitment

__all__ = ["FORMAT_VERSION", "RECEIPT_KIND", "ReceiptCheck", "sign_receipt", "verify_receipt"]

RECEIPT_KIND = "obliviate.deletion_receipt"
FORMAT_VERSION = 1
_BODY_FIELDS = (
    "kind",
    "format_version",
    "receipt_id",
    "request_id",
    "model",
    "subjects",
    "samples",
    "samples_commitment",
    "guarantee",
    "evidence",
    "noop",
    "version_before",
    "version_after",
    "received_at",
    "completed_at",
    "event",
    "leaf_index",
    "tree_size",
    "inclusion_proof",
    "checkpoint",
)


def sign_receipt(
    *,
    key: SigningKey,
    event: Mapping[str, Any],
    leaf_index: int,
    checkpoint_note: str,
    tree_size: int,
    proof: Sequence[bytes],
    subjects: Sequence[str],
    samples: Sequence[str],
    received_at: str,
) -> dict[str, Any]:
    """Builds and signs the receipt for a logged ``request_completed`` event."""
    body: dict[str, Any] = {
        "kind": RECEIPT_KIND,
        "format_version": FORMAT_VERSION,
        "receipt_id": uuid.uuid4().hex,
        "request_id": event["request_id"],
        "model": event["model"],
        "subjects": sorted(subjects),
        "samples": sorted(samples),
        "samples_commitment": event["samples_commitment"],
        "guarantee": event["guarantee"],
        "evidence": event.get("evidence"),
        "noop": event["noop"],
        "version_before": event["version_before"],
        "version_after": event["version_after"],
        "received_at": received_at,
        "completed_at": event["time"],
        "event": dict(event),
        "leaf_index": leaf_index,
        "tree_size": tree_size,
        "inclusion_proof": [base64.b64encode(p).decode() for p in proof],
        "checkpoint": checkpoint_note,
    }
    signature = key.sign(canonicalize(body))
    return {
        "body": body,
        "signature": {
            "algorithm": "ed25519",
            "key": key.verifier.vkey,
            "key_name": key.name,
            "key_id": key.verifier.key_hash,
            "value": base64.b64encode(signature).decode(),
        },
    }


@dataclass(frozen=True)
class ReceiptCheck:
    """What a verified receipt proves.

    Attributes:
        request_id: the deletion request.
        guarantee: ``"exact"`` or ``"approximate"``.
        leaf_index: where its completion event sits in the log.
        tree_size: the size of the signed checkpoint it was proved against.
        root: that checkpoint's root hash.
        key: the public key that signed receipt and checkpoint.
        pinned: the key was among the trusted keys given (``False``: only the embedded key
            was used, which proves integrity but not who signed).
    """

    request_id: str
    guarantee: str
    leaf_index: int
    tree_size: int
    root: bytes
    key: VerifierKey
    pinned: bool


def _field(data: Mapping[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = data.get(name)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise VerificationError(f"the receipt's {name!r} is missing or malformed.")
    return value


def verify_receipt(
    receipt: Mapping[str, Any], *, keys: Sequence[VerifierKey] | None = None
) -> ReceiptCheck:
    """Checks a receipt offline (see the module docstring).

    Args:
        receipt: the parsed receipt JSON.
        keys: trusted public keys; the receipt's key must be one of them. ``None`` trusts
            the key embedded in the receipt (integrity only; the result says so).

    Raises:
        VerificationError: the receipt is malformed or disagrees with its own event.
        SignatureError: a signature is bad, or by a key that is not trusted.
        ProofError: the inclusion proof does not lead to the checkpoint's root.
    """
    if not isinstance(receipt, Mapping):
        raise VerificationError("a receipt is a JSON object with 'body' and 'signature'.")
    body = _field(receipt, "body", Mapping)
    sig = _field(receipt, "signature", Mapping)
    missing = [f for f in _BODY_FIELDS if f not in body]
    if missing:
        raise VerificationError(f"the receipt body lacks {missing}.")
    if body["kind"] != RECEIPT_KIND or body["format_version"] != FORMAT_VERSION:
        raise VerificationError(
            f"not a format-{FORMAT_VERSION} {RECEIPT_KIND} (kind {body['kind']!r})."
        )
    embedded = VerifierKey.parse(str(_field(sig, "key", str)))
    trusted = list(keys) if keys is not None else [embedded]
    if embedded not in trusted:
        raise SignatureError(
            f"the receipt is signed by key {embedded.name}+{embedded.key_hash}, which is not "
            f"among the trusted keys ({', '.join(k.name + '+' + k.key_hash for k in trusted)})."
        )
    try:
        signature = base64.b64decode(str(_field(sig, "value", str)), validate=True)
    except (binascii.Error, ValueError):
        raise VerificationError("the receipt signature is not base64.") from None
    if not embedded.verify(canonicalize(body), signature):
        raise SignatureError(
            "the receipt signature does not verify: the receipt was changed after signing."
        )
    checkpoint, _ = open_checkpoint(str(_field(body, "checkpoint", str)), trusted)
    tree_size = _field(body, "tree_size", int)
    if checkpoint.size != tree_size:
        raise VerificationError(
            f"the receipt claims tree size {tree_size} but its checkpoint is of size "
            f"{checkpoint.size}."
        )
    event = _field(body, "event", Mapping)
    expectations = {
        "type": "request_completed",
        "request_id": body["request_id"],
        "model": body["model"],
        "guarantee": body["guarantee"],
        "version_before": body["version_before"],
        "version_after": body["version_after"],
        "samples_commitment": body["samples_commitment"],
        "time": body["completed_at"],
    }
    for name, expected in expectations.items():
        if event.get(name) != expected:
            raise VerificationError(
                f"the receipt's {name!r} ({expected!r}) differs from its logged event "
                f"({event.get(name)!r})."
            )
    if commitment(body["samples"]) != body["samples_commitment"]:
        raise VerificationError("the receipt's samples do not match its samples_commitment.")
    try:
        proof = [base64.b64decode(p, validate=True) for p in body["inclusion_proof"]]
    except (binascii.Error, ValueError, TypeError):
        raise VerificationError("the receipt's inclusion proof is not a list of base64.") from None
    index = _field(body, "leaf_index", int)
    verify_inclusion(
        index=index,
        size=checkpoint.size,
        leaf=leaf_hash(canonicalize(event)),
        proof=proof,
        root=checkpoint.root,
    )
    return ReceiptCheck(
        request_id=str(body["request_id"]),
        guarantee=str(body["guarantee"]),
        leaf_index=index,
        tree_size=checkpoint.size,
        root=checkpoint.root,
        key=embedded,
        pinned=keys is not None,
    )
