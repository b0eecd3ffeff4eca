"""Several workers on PostgreSQL, each with its own connections, forgetting for real."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from obliviate import SISAConfig, TrainConfig, Workspace
from obliviate.provenance.schema import DeletionSample
from obliviate.service import RequestQueue, ServiceSettings, Worker
from obliviate.service.queue import NewRequest
from obliviate.service.worker import BatchOutcome
from obliviate.testing import make_blobs

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.slow]

CONFIG = SISAConfig(
    shards=2,
    slices=1,
    model_options={"hidden": (8,)},
    train=TrainConfig(epochs=1, batch_size=16, lr=0.05),
)


def test_three_workers_share_the_queue_and_forget_each_request_once(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OBLIVIATE_EXECUTOR", "inline")
    root = tmp_path / "ws"
    with Workspace.init(root, database_url=postgres_url) as ws:
        # One dataset per model: a deletion request names one model, and another model on
        # the same dataset keeps a sample deleted through it until its own next forget.
        for name in ("a", "b"):
            ws.register(make_blobs(n=40, subjects=4), dataset=f"d{name}")
            ws.train(name=name, dataset=f"d{name}", config=CONFIG)
    settings = ServiceSettings(
        workspace=root, batch_window_seconds=0.0, max_batch=2, poll_seconds=0.02
    )
    with Workspace.open(root) as ws:
        queue = RequestQueue(ws.provenance.engine, settings=settings)
        ids = [
            queue.submit(
                NewRequest(
                    model="ab"[i % 2],
                    mode="exact",
                    sample_ids=(f"s{i}",),
                    subject_ids=(),
                    reason="gdpr-art17-1a",
                    fingerprint=str(i),
                )
            ).request_id
            for i in range(12)
        ]
    outcomes: list[BatchOutcome] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def record(outcome: BatchOutcome) -> None:
        with lock:
            outcomes.append(outcome)

    def run(owner: str) -> None:
        try:
            with Workspace.open(root) as own:  # its own engine and connections
                queue = RequestQueue(own.provenance.engine, settings=settings)
                worker = Worker(own, queue, owner=owner)
                worker.on_batch = record
                worker.drain(timeout=180)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f"w{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert not errors
    completed = [i for o in outcomes for i in o.completed]
    assert sorted(completed) == sorted(ids)  # each request completed once, by one worker
    assert not any(o.fenced or o.failed or o.denied for o in outcomes)
    with Workspace.open(root) as ws:
        queue = RequestQueue(ws.provenance.engine, settings=settings)
        assert all(queue.get(i).attempts == 1 for i in ids)
        table = DeletionSample.__table__
        with ws.provenance.engine.connect() as conn:
            per_sample = conn.execute(
                sa.select(table.c.sample_pk, sa.func.count()).group_by(table.c.sample_pk)
            ).all()
        assert len(per_sample) == 12 and {n for _, n in per_sample} == {1}
        for name in ("a", "b"):
            assert ws.verify(model=name).ok
