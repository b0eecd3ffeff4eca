"""The workspace's :class:`~obliviate.strategies.base.ForgetAuditor`: every forget, logged.

:meth:`Strategy.forget` calls :meth:`LedgerAuditor.received` before the model changes and
:meth:`~LedgerAuditor.completed` or :meth:`~LedgerAuditor.failed` after, so no strategy and
no front end (library, CLI, service) can forget without a trace. ``completed`` appends, in
one transaction, the plan, the component roll-backs or deactivations (old and new
checkpoint ids), the retraining, each activated version (content hashes) and the
``request_completed`` event; then it signs a checkpoint and issues the receipt. The receipt
is issued as soon as the served version no longer contains the samples: for a background
forget that is the exact rollback, and the retraining that follows is logged when it ends
(without a second receipt).
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
import threading
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from obliviate.errors import ConfigError
from obliviate.ledger.events import component_changes
from obliviate.ledger.ledger import Ledger
from obliviate.ledger.pseudonym import commitment
from obliviate.ledger.receipt import sign_receipt
from obliviate.provenance import Provenance
from obliviate.provenance.records import VersionRecord
from obliviate.strategies.base import ForgetResult, Guarantee

__all__ = ["LedgerAuditor", "check_request_id"]

_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_request_id(request_id: str) -> str:
    """Validates a request id (it names the receipt file, so it must be path-safe).

    Raises:
        ConfigError: naming the id and what is allowed.
    """
    if not isinstance(request_id, str) or not _REQUEST_ID.match(request_id):
        raise ConfigError(
            "request_id must be 1-128 letters, digits, '_', '.' or '-', starting with a letter "
            f"or digit; got {request_id!r}."
        )
    return request_id


@dataclass(frozen=True)
class _Received:
    time: str
    subjects: tuple[str, ...]


def _evidence(evidence: Any) -> dict[str, Any] | None:
    """An approximate method's evidence as JSON: non-finite numbers become strings."""
    if not isinstance(evidence, Mapping) or not evidence:
        return None
    out: dict[str, Any] = {}
    for key, value in evidence.items():
        if isinstance(value, str | bool | int):
            out[str(key)] = value
        elif isinstance(value, numbers.Real) and math.isfinite(float(value)):
            out[str(key)] = float(value)
        else:
            out[str(key)] = str(value)
    return out


def _version(record: VersionRecord) -> dict[str, Any]:
    return {"number": record.number, "content_hash": record.content_hash, "kind": record.kind}


class LedgerAuditor:
    """Logs deletion requests to a :class:`Ledger` and issues their receipts.

    Args:
        ledger: the audit log.
        provenance: the registry (to read the versions a forget moved between).
        receipts_dir: where receipts are written as ``<request_id>.json``.
    """

    def __init__(self, *, ledger: Ledger, provenance: Provenance, receipts_dir: Path) -> None:
        self.ledger = ledger
        self.provenance = provenance
        self.receipts_dir = receipts_dir
        self._received: dict[str, _Received] = {}
        self._lock = threading.Lock()

    def receipt_path(self, request_id: str) -> Path:
        """Where the receipt of ``request_id`` is written."""
        return self.receipts_dir / f"{check_request_id(request_id)}.json"

    # --------------------------------------------------------------- ForgetAuditor protocol
    def received(
        self,
        *,
        request_id: str,
        model: str,
        guarantee: Guarantee,
        sample_ids: Sequence[str],
        subject_ids: Sequence[str],
        reason: str,
    ) -> None:
        """Logs ``request_received`` (pseudonyms and a keyed reason digest only)."""
        check_request_id(request_id)
        names = self.ledger.pseudonyms
        subjects = names.subjects(subject_ids)
        event = self.ledger.event(
            "request_received",
            request_id=request_id,
            model=model,
            guarantee=Guarantee(guarantee).value,
            subjects=subjects,
            samples=names.samples(sample_ids),
            reason_digest=names.text(reason) if reason else None,
        )
        self.ledger.append(event)
        with self._lock:
            self._received[request_id] = _Received(time=event["time"], subjects=tuple(subjects))

    def completed(self, result: ForgetResult) -> ForgetResult:
        """Logs the outcome, signs a checkpoint and attaches (and writes) the receipt."""
        with self._lock:
            received = self._received.pop(result.request_id, None)
        events, served = self._outcome_events(result)
        names = self.ledger.pseudonyms
        samples = names.samples([*result.forgotten_sample_ids, *result.already_deleted_ids])
        before = self._version_or_none(result.model, result.version_before)
        evidence = getattr(result, "evidence", None)
        done = self.ledger.event(
            "request_completed",
            request_id=result.request_id,
            model=result.model,
            guarantee=result.guarantee.value,
            noop=result.noop,
            version_before=None if before is None else _version(before),
            version_after=None if served is None else _version(served),
            forgotten=len(result.forgotten_sample_ids),
            samples_commitment=commitment(samples),
            evidence=_evidence(evidence),
        )
        indices = self.ledger.append_many([*events, done])
        signed = self.ledger.checkpoint()
        receipt = sign_receipt(
            key=self.ledger.signing_key(),
            event=done,
            leaf_index=indices[-1],
            checkpoint_note=signed.note,
            tree_size=signed.checkpoint.size,
            proof=self.ledger.inclusion_proof(indices[-1], signed.checkpoint.size),
            subjects=received.subjects if received else (),
            samples=samples,
            received_at=received.time if received else done["time"],
        )
        self._write(result.request_id, receipt)
        if result.pending is not None and served is not None:
            result.pending.add_done_callback(self._background_done(result, served))
        return replace(result, receipt=receipt)

    def failed(self, *, request_id: str, model: str, error: BaseException) -> None:
        """Logs ``request_failed`` with the error's class name (messages may hold ids)."""
        with self._lock:
            self._received.pop(request_id, None)
        try:
            self.ledger.append(
                self.ledger.event(
                    "request_failed",
                    request_id=request_id,
                    model=model,
                    error=type(error).__name__,
                )
            )
        except Exception as exc:  # never hide the forget's own error behind the ledger's
            error.add_note(f"obliviate: the audit ledger could not record this failure: {exc}")

    # --------------------------------------------------------------------------- helpers
    def _version_or_none(self, model: str, number: int | None) -> VersionRecord | None:
        return None if number is None else self.provenance.version(model=model, number=number)

    def _outcome_events(
        self, result: ForgetResult
    ) -> tuple[list[dict[str, Any]], VersionRecord | None]:
        """Plan, roll-back and retrain events; and the version served at the end."""
        rid, model = result.request_id, result.model
        before = self._version_or_none(model, result.version_before)
        events = [
            self.ledger.event(
                "plan",
                request_id=rid,
                model=model,
                version_before=result.version_before,
                affected_components=list(result.affected_components),
                earliest_slices=dict(result.earliest_slices),
                forgotten=len(result.forgotten_sample_ids),
                already_deleted=len(result.already_deleted_ids),
            )
        ]
        served = before
        rolled = self._version_or_none(model, result.rolled_back_version)
        if rolled is not None:
            events += self._move(rid, "components_rolled_back", served, rolled)
            served = rolled
        final = self._version_or_none(model, result.version)
        if final is not None and (served is None or final.number != served.number):
            events += self._move(rid, "components_retrained", served, final)
            served = final
        return events, served

    def _move(
        self, request_id: str, kind: str, old: VersionRecord | None, new: VersionRecord
    ) -> list[dict[str, Any]]:
        return [
            self.ledger.event(
                kind,
                request_id=request_id,
                model=new.model,
                from_version=None if old is None else old.number,
                to_version=new.number,
                changes=component_changes(old.components if old else {}, new.components),
            ),
            self.ledger.event(
                "version_activated", request_id=request_id, model=new.model, version=_version(new)
            ),
        ]

    def _background_done(self, result: ForgetResult, served: VersionRecord) -> Any:
        def on_done(future: Future[ForgetResult]) -> None:
            error = future.exception()
            if error is not None:
                self.failed(request_id=result.request_id, model=result.model, error=error)
                return
            final_result = future.result()
            final = self._version_or_none(result.model, final_result.version)
            if final is not None and final.number != served.number:
                self.ledger.append_many(
                    self._move(result.request_id, "components_retrained", served, final)
                )

        return on_done

    def _write(self, request_id: str, receipt: Mapping[str, Any]) -> None:
        path = self.receipt_path(request_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(receipt, handle, indent=2, ensure_ascii=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
