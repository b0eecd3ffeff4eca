"""The tamper-evident audit ledger: RFC 6962 Merkle log, signed checkpoints, receipts.

Every deletion request and its outcome become leaves of an append-only Merkle tree in the
workspace database; checkpoints of the tree are signed (C2SP signed-note, Ed25519) and each
completed deletion gets a signed receipt with an inclusion proof that anyone can check
offline. See ``docs/ledger.md``.
"""

from obliviate.ledger.auditor import LedgerAuditor
from obliviate.ledger.errors import (
    ForkError,
    LedgerError,
    ProofError,
    SignatureError,
    TamperError,
    VerificationError,
)
from obliviate.ledger.jcs import canonicalize
from obliviate.ledger.ledger import Ledger, SignedCheckpoint
from obliviate.ledger.note import Checkpoint, SigningKey, VerifierKey
from obliviate.ledger.pseudonym import Pseudonymizer
from obliviate.ledger.receipt import ReceiptCheck, verify_receipt
from obliviate.ledger.verify import LedgerReport, check_consistent

__all__ = [
    "Checkpoint",
    "ForkError",
    "Ledger",
    "LedgerAuditor",
    "LedgerError",
    "LedgerReport",
    "ProofError",
    "Pseudonymizer",
    "ReceiptCheck",
    "SignatureError",
    "SignedCheckpoint",
    "SigningKey",
    "TamperError",
    "VerificationError",
    "VerifierKey",
    "canonicalize",
    "check_consistent",
    "verify_receipt",
]
