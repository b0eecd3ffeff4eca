"""One error tree for everything obliviate raises.

Every error subclasses :class:`ObliviateError` *and* the builtin a caller would naturally
catch, so ``except ValueError`` keeps working while ``except ObliviateError`` catches all of
ours. Messages say what was expected, what was got, and what to do.

::

    ObliviateError
     ├─ ConfigError(ValueError)               invalid configuration; lists every bad field
     ├─ UnknownNameError(KeyError)            registry lookup; lists the valid names
     ├─ DataError(ValueError)                 bad samples: duplicates, NaN, ranges, shapes
     │    ├─ DatasetUnavailableError(FileNotFoundError)   cannot find or download a dataset
     │    └─ ChecksumError                    a downloaded or local file has the wrong digest
     ├─ ProvenanceError(RuntimeError)         the registry is inconsistent or misused
     │    ├─ UnknownSampleError(KeyError)     ids that were never registered
     │    ├─ AlreadyDeletedError              ids deleted by an earlier request
     │    ├─ LineageError                     a model version has seen a deleted sample
     │    └─ NonDeletableError                a declared non-deletable sample (S3T backbone data)
     ├─ StorageError(OSError)                 checkpoint store failures
     │    └─ CorruptCheckpointError           content does not match its hash
     ├─ WorkspaceError(RuntimeError)          missing, uninitialised or locked workspace
     ├─ NotFittedError(RuntimeError)          predict/forget before fit
     │    └─ TooFewModelsError                too few valid ensemble members left to serve
     ├─ TrainingError(RuntimeError)           non-finite loss or diverged training
     ├─ LedgerError(RuntimeError)             the audit ledger (obliviate.ledger.errors)
     │    └─ VerificationError(ValueError)    a proof, signature or log check failed:
     │         ProofError, TamperError, ForkError, SignatureError
     └─ ServiceError(RuntimeError)            the HTTP service (obliviate.service.errors)
          ├─ UnknownRequestError(KeyError)    no such deletion request
          ├─ IdempotencyConflictError         a reused Idempotency-Key with another body
          └─ AuthError(PermissionError)       missing, unknown, revoked or under-scoped key

The subclasses named with their module live next to the code that raises them.
"""

from __future__ import annotations

__all__ = [
    "AlreadyDeletedError",
    "ChecksumError",
    "ConfigError",
    "CorruptCheckpointError",
    "DataError",
    "DatasetUnavailableError",
    "LineageError",
    "NotFittedError",
    "ObliviateError",
    "ProvenanceError",
    "StorageError",
    "TrainingError",
    "UnknownNameError",
    "UnknownSampleError",
    "WorkspaceError",
]


class ObliviateError(Exception):
    """Root of every error obliviate raises on purpose."""

    def __str__(self) -> str:
        # KeyError subclasses would otherwise render their message in quotes.
        return str(self.args[0]) if self.args else self.__class__.__name__


class ConfigError(ObliviateError, ValueError):
    """A configuration value is invalid; the message lists every invalid field at once."""


class UnknownNameError(ObliviateError, KeyError):
    """A name is not registered; the message lists the names that are."""


class DataError(ObliviateError, ValueError):
    """Samples are malformed: duplicate ids, NaN, out-of-range labels, mismatched lengths."""


class DatasetUnavailableError(DataError, FileNotFoundError):
    """A dataset is neither on disk nor downloadable; the message says where to put it."""


class ChecksumError(DataError):
    """A dataset file does not have the published digest."""


class ProvenanceError(ObliviateError, RuntimeError):
    """The provenance registry was asked something inconsistent."""


class UnknownSampleError(ProvenanceError, KeyError):
    """Sample or subject ids that were never registered in the dataset."""


class AlreadyDeletedError(ProvenanceError):
    """Sample ids that an earlier deletion already removed."""


class LineageError(ProvenanceError):
    """A model version's lineage includes a deleted sample, or the lineage is broken."""


class StorageError(ObliviateError, OSError):
    """The checkpoint store could not read or write."""


class CorruptCheckpointError(StorageError):
    """A checkpoint's content does not match its content hash."""


class WorkspaceError(ObliviateError, RuntimeError):
    """The workspace is missing, not initialised, or used incorrectly."""


class NotFittedError(ObliviateError, RuntimeError):
    """A model was used before it was trained."""


class TrainingError(ObliviateError, RuntimeError):
    """Training produced a non-finite loss or otherwise failed."""
