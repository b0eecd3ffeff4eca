"""Every forget is logged and gets a receipt that verifies offline; no ids reach the ledger."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from obliviate import SISAConfig, TrainConfig, Workspace
from obliviate.errors import ConfigError, UnknownSampleError
from obliviate.ledger import (
    ProofError,
    SignatureError,
    SigningKey,
    VerificationError,
    canonicalize,
    verify_receipt,
)
from obliviate.ledger.schema import CHECKPOINTS, HEAD, LEAVES, NODES
from obliviate.testing import make_blobs

CONFIG = SISAConfig(shards=2, slices=2, train=TrainConfig(epochs=1, batch_size=8))
REASON = "Art. 17(1)(a): Zoë Example withdrew consent"


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    with Workspace.init(tmp_path / "ws") as workspace:
        workspace.register(make_blobs(n=40, subjects=4, id_prefix="sample-"), dataset="d")
        workspace.train(name="m", dataset="d", config=CONFIG)
        yield workspace


def types(ws: Workspace, request_id: str) -> list[str]:
    return [e["type"] for _, e in ws.ledger.events_for(request_id)]


def dump_ledger(ws: Workspace) -> str:
    parts = []
    with ws.provenance.engine.connect() as conn:
        for table in (HEAD, LEAVES, NODES, CHECKPOINTS):
            for row in conn.execute(sa.select(table)):
                parts.extend(str(v) for v in row)
    return "\n".join(parts)


def test_forget_by_subject_is_logged_with_a_verifiable_receipt(ws: Workspace) -> None:
    result = ws.forget(model="m", subject_ids=["u1"], reason=REASON, request_id="req-1")
    assert types(ws, "req-1") == [
        "request_received",
        "plan",
        "components_rolled_back",
        "version_activated",
        "components_retrained",
        "version_activated",
        "request_completed",
    ]
    receipt = result.receipt
    assert receipt is not None
    on_disk = json.loads((ws.root / "receipts" / "req-1.json").read_text())
    assert on_disk == receipt
    body = receipt["body"]
    before = ws.provenance.version(model="m", number=1)
    after = ws.provenance.active_version("m")
    assert after is not None and after.number == result.version
    assert body["version_before"]["content_hash"] == before.content_hash
    assert body["version_after"]["content_hash"] == after.content_hash
    assert body["guarantee"] == "exact" and body["subjects"] == [ws.ledger.pseudonyms.subject("u1")]
    assert len(body["samples"]) == len(result.forgotten_sample_ids) == 10
    check = verify_receipt(on_disk, keys=ws.ledger.public_keys())
    assert check.request_id == "req-1" and check.pinned
    assert ws.ledger.read_event(check.leaf_index)["type"] == "request_completed"
    rolled = ws.ledger.events_for("req-1")[2][1]
    assert {c["component"] for c in rolled["changes"]} == set(result.affected_components)
    ws.ledger.verify()


def test_the_ledger_holds_no_personal_identifiers(ws: Workspace) -> None:
    result = ws.forget(model="m", subject_ids=["u1"], reason=REASON, request_id="req-2")
    ws.forget(model="m", sample_ids=["sample-2"], reason=REASON)
    text = dump_ledger(ws)
    assert ws.ledger.size > 10
    for sample in [*result.forgotten_sample_ids, "sample-2"]:
        assert sample not in text
    assert '"u1"' not in text and "u1," not in text
    assert "Zoë" not in text and "withdrew consent" not in text and REASON not in text
    assert ws.ledger.pseudonyms.subject("u1") in text


def test_background_forget_gets_its_receipt_at_rollback(ws: Workspace) -> None:
    result = ws.forget(model="m", sample_ids=["sample-5"], background=True, request_id="bg")
    assert result.receipt is not None
    body = result.receipt["body"]
    assert body["version_after"]["number"] == result.rolled_back_version
    done = result.wait(timeout=60)
    assert done.version is not None and done.version != result.rolled_back_version
    for model in ws._strategies:  # wait for the background thread's audit callback
        close = getattr(model, "close", None)
        if callable(close):
            close()
    assert types(ws, "bg")[-2:] == ["components_retrained", "version_activated"]
    assert ws.ledger.events_for("bg")[-1][1]["version"]["number"] == done.version
    assert len(list((ws.root / "receipts").glob("*.json"))) == 1
    verify_receipt(result.receipt, keys=ws.ledger.public_keys())


def test_noop_forget_still_gets_a_receipt(ws: Workspace) -> None:
    ws.forget(model="m", sample_ids=["sample-7"])
    again = ws.forget(model="m", sample_ids=["sample-7"], request_id="again")
    assert again.noop and again.receipt is not None
    body = again.receipt["body"]
    assert body["noop"] and body["version_before"] == body["version_after"]
    assert types(ws, "again") == ["request_received", "plan", "request_completed"]
    verify_receipt(again.receipt, keys=ws.ledger.public_keys())


def test_failed_forget_is_logged_without_its_ids(ws: Workspace) -> None:
    with pytest.raises(UnknownSampleError):
        ws.forget(model="m", sample_ids=["nobody-42"], request_id="bad")
    assert types(ws, "bad") == ["request_received", "request_failed"]
    assert ws.ledger.events_for("bad")[-1][1]["error"] == "UnknownSampleError"
    assert "nobody-42" not in dump_ledger(ws)
    assert not (ws.root / "receipts" / "bad.json").exists()


def test_unsafe_request_ids_are_refused_before_anything_happens(ws: Workspace) -> None:
    size = ws.ledger.size
    with pytest.raises(ConfigError, match="request_id"):
        ws.forget(model="m", sample_ids=["sample-1"], request_id="../../etc/passwd")
    assert ws.ledger.size == size
    assert ws.provenance.active_version("m") is not None
    assert ws.provenance.active_version("m").number == 1  # type: ignore[union-attr]


def _receipt(ws: Workspace) -> dict[str, Any]:
    receipt = ws.forget(model="m", sample_ids=["sample-3"], request_id="r").receipt
    assert receipt is not None
    return copy.deepcopy(dict(receipt))


def test_tampered_receipts_are_rejected(ws: Workspace) -> None:
    receipt = _receipt(ws)
    keys = ws.ledger.public_keys()
    changed = copy.deepcopy(receipt)
    changed["body"]["guarantee"] = "approximate"
    with pytest.raises(SignatureError, match="changed after signing"):
        verify_receipt(changed, keys=keys)
    stranger = SigningKey.generate(ws.ledger.origin)
    with pytest.raises(SignatureError, match="not among the trusted keys"):
        verify_receipt(receipt, keys=[stranger.verifier])
    unpinned = verify_receipt(receipt)
    assert not unpinned.pinned
    with pytest.raises(VerificationError, match="lacks"):
        verify_receipt({"body": {}, "signature": {}})


def test_a_resigned_receipt_with_a_bad_proof_fails_the_proof(ws: Workspace) -> None:
    receipt = _receipt(ws)
    body = receipt["body"]
    body["leaf_index"] = body["leaf_index"] - 1  # points at another leaf
    key = ws.ledger.signing_key()
    receipt["signature"]["value"] = base64.b64encode(key.sign(canonicalize(body))).decode()
    with pytest.raises(ProofError, match="inclusion proof for leaf"):
        verify_receipt(receipt, keys=ws.ledger.public_keys())
