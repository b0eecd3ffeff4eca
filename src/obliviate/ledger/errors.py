"""The ledger's errors, grafted onto :mod:`obliviate.errors`.

::

    ObliviateError
     └─ LedgerError(RuntimeError)             the audit ledger is misused or unavailable
          └─ VerificationError(ValueError)    evidence failed to check out
               ├─ ProofError                  an inclusion or consistency proof is wrong
               ├─ TamperError                 the stored log does not match its own hashes
               ├─ ForkError                   two checkpoints describe different histories
               └─ SignatureError              a signature is bad, or from an unknown key

Every :class:`VerificationError` message says what failed and where (``leaf 17 does not
match its stored hash``), so an auditor can act on the one line the CLI prints.
"""

from __future__ import annotations

from obliviate.errors import ObliviateError

__all__ = [
    "ForkError",
    "LedgerError",
    "ProofError",
    "SignatureError",
    "TamperError",
    "VerificationError",
]


class LedgerError(ObliviateError, RuntimeError):
    """The audit ledger was misused, or its files or tables are missing."""


class VerificationError(LedgerError, ValueError):
    """Evidence (a proof, a checkpoint, a receipt, the log itself) failed to verify."""


class ProofError(VerificationError):
    """An inclusion or consistency proof does not lead to the claimed root."""


class TamperError(VerificationError):
    """The stored log disagrees with its own hashes: a leaf or subtree was changed."""


class ForkError(VerificationError):
    """Two checkpoints of the same log are not consistent: history was rewritten."""


class SignatureError(VerificationError):
    """A signature does not verify, or it was made by a key the verifier does not trust."""
