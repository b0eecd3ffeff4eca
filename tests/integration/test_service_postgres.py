"""Several workers on PostgreSQL forgetting for real, for models that share one dataset.

Two tiers: worker threads, each with its own engine and connections, and worker processes
(``python -m obliviate.service worker --drain``), as a deployment runs them. A request names
one model; its completion enqueues a follow-up for every other model of the dataset that
still holds its samples, so every model ends up verified whichever worker ran what.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from obliviate import SISAConfig, TrainConfig, Workspace
from obliviate.service import RequestQueue, ServiceSettings, Worker
from obliviate.service.queue import NewRequest, RequestRecord
from obliviate.service.tables import REQUESTS
from obliviate.service.worker import BatchOutcome
from obliviate.testing import make_blobs
from tests.service_helpers import deletions_per_sample

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.slow]

CONFIG = SISAConfig(
    shards=2,
    slices=1,
    model_options={"hidden": (8,)},
    train=TrainConfig(epochs=1, batch_size=16, lr=0.05),
)


def _request(model: str, *ids: str, subject: str | None = None) -> NewRequest:
    return NewRequest(
        model=model,
        mode="exact",
        sample_ids=ids,
        subject_ids=() if subject is None else (subject,),
        reason="gdpr-art17-1a",
        fingerprint=f"{model}:{ids}:{subject}",
    )


def _rows(ws: Workspace) -> list[RequestRecord]:
    with ws.provenance.engine.connect() as conn:
        return [RequestRecord.from_row(r) for r in conn.execute(sa.select(REQUESTS)).mappings()]


def _check_exactly_once(ws: Workspace, parents: list[str], models: tuple[str, ...]) -> None:
    """Every request completed at its first attempt; one follow-up per parent and model."""
    rows = _rows(ws)
    assert {r.state for r in rows} == {"completed"}
    assert all(r.attempts == 1 and r.lease_owner is None for r in rows)
    assert {r.id for r in rows if r.parent_id is None} == set(parents)
    by_id = {r.id: r for r in rows}
    children = [r for r in rows if r.parent_id is not None]
    links = [(r.parent_id, r.model) for r in children]
    assert len(links) == len(set(links))  # never two follow-ups of one parent for one model
    for child in children:
        parent = by_id[str(child.parent_id)]
        assert child.model != parent.model and child.id in parent.follow_up_ids
        assert child.follow_up_ids == ()
    deleted = ws.provenance.samples(dataset="d", status="deleted")
    per_sample = deletions_per_sample(ws)
    assert set(per_sample) == set(deleted.pk.tolist()) and set(per_sample.values()) == {1}
    for name in models:
        assert ws.verify(model=name).ok, name


def test_three_worker_threads_share_the_queue_and_forget_each_request_once(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OBLIVIATE_EXECUTOR", "inline")
    root = tmp_path / "ws"
    with Workspace.init(root, database_url=postgres_url) as ws:
        ws.register(make_blobs(n=40, subjects=4), dataset="d")
        for name in ("a", "b"):
            ws.train(name=name, dataset="d", config=CONFIG)
    settings = ServiceSettings(
        workspace=root, batch_window_seconds=0.0, max_batch=2, poll_seconds=0.02
    )
    with Workspace.open(root) as ws:
        queue = RequestQueue(ws.provenance.engine, settings=settings)
        ids = [queue.submit(_request("ab"[i % 2], f"s{i}")).request_id for i in range(12)]
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
    assert not any(o.fenced or o.failed or o.denied for o in outcomes)
    completed = [i for o in outcomes for i in o.completed]
    assert len(completed) == len(set(completed))  # each request completed once, by one worker
    with Workspace.open(root) as ws:
        assert set(completed) == {r.id for r in _rows(ws)}
        _check_exactly_once(ws, ids, ("a", "b"))


def test_three_worker_processes_share_the_queue_and_forget_each_request_once(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OBLIVIATE_EXECUTOR", "inline")
    root = tmp_path / "ws"
    with Workspace.init(root, database_url=postgres_url) as ws:
        ws.register(make_blobs(n=60, subjects=6), dataset="d")
        for name in ("a", "b"):
            ws.train(name=name, dataset="d", config=CONFIG)
        ws.train(name="c", dataset="d", config=CONFIG, sample_ids=[f"s{i}" for i in range(30, 60)])
        queue = RequestQueue(ws.provenance.engine, settings=ServiceSettings(workspace=root))
        parents = [queue.submit(_request("abc"[i % 3], f"s{i}")).request_id for i in range(12)]
        parents += [
            queue.submit(_request("b", subject="u5")).request_id,  # s5, s11, ... s59
            queue.submit(_request("c", "s40", "s41")).request_id,
        ]
    env = {
        **os.environ,
        "OBLIVIATE_EXECUTOR": "inline",
        "OMP_NUM_THREADS": "1",
        "OBLIVIATE_SERVICE_MAX_BATCH": "2",
        "OBLIVIATE_SERVICE_POLL_SECONDS": "0.05",
    }
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "obliviate.service",
                "worker",
                "-w",
                str(root),
                "--drain",
                "--batch-window",
                "0",
                "--owner",
                f"p{i}",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    reports: list[str] = []
    busy = 0  # processes that ran at least one batch
    try:
        for child in workers:
            _, stderr = child.communicate(timeout=150)
            assert child.returncode == 0, stderr
            own = [line for line in stderr.splitlines() if ": batch " in line]
            reports += own
            busy += bool(own)
    finally:
        for child in workers:
            if child.poll() is None:
                child.kill()
                child.wait()
    with Workspace.open(root) as ws:
        rows = _rows(ws)
        # Every completion was reported by exactly one process (the CLI prints each batch).
        assert sum(int(line.split(" completed ")[1].split(",")[0]) for line in reports) == len(rows)
        assert all(", denied 0, failed 0, fenced 0" in line for line in reports)
        assert busy >= 2  # the processes shared the queue (all three, in practice)
        assert len(rows) > len(parents)  # follow-ups ran too
        _check_exactly_once(ws, parents, ("a", "b", "c"))
