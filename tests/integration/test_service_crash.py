"""Crash tests with real processes: SIGKILL a worker mid-retrain and a server mid-request.

The promise under test (invariant 4): every acknowledged deletion request completes, and
exactly once in effect: each sample is deleted by one registry deletion, and the final model
equals an uninterrupted run bit for bit.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from obliviate import SISAConfig, TrainConfig, Workspace
from obliviate.service import ApiKeyStore, RequestQueue, ServiceSettings, Worker, create_app
from obliviate.service.queue import NewRequest
from obliviate.testing import make_blobs
from tests.service_helpers import deletions_per_sample

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONFIG = SISAConfig(
    shards=2,
    slices=2,
    model_options={"hidden": (8,)},
    train=TrainConfig(epochs=2, batch_size=16, lr=0.05),
)
# Makes every shard retrain in the child sleep first, so the kill lands mid-retrain.
SLOW_WORKER = """
import sys, time
import obliviate.strategies.exact.shard_trainer as st
original = st.ShardTrainer.run
def slow(self, *args, **kwargs):
    time.sleep(60)
    return original(self, *args, **kwargs)
st.ShardTrainer.run = slow
from obliviate.service.__main__ import app
app(sys.argv[1:], prog_name="worker")
"""


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("OBLIVIATE_EXECUTOR", "inline")
    return {**os.environ, "OBLIVIATE_EXECUTOR": "inline", "OMP_NUM_THREADS": "1"}


@pytest.fixture
def ws_path(tmp_path: Path, env: dict[str, str]) -> Path:
    root = tmp_path / "ws"
    with Workspace.init(root) as ws:
        ws.register(make_blobs(n=40, subjects=4), dataset="d")
        ws.train(name="m", dataset="d", config=CONFIG)
    return root


def _settings(path: Path, **changes: object) -> ServiceSettings:
    return ServiceSettings(workspace=path, batch_window_seconds=0.0, poll_seconds=0.05).replace(
        **changes
    )


def _wait(condition: object, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_worker_killed_mid_retrain_is_redelivered_and_finished(
    ws_path: Path, env: dict[str, str]
) -> None:
    reference = ws_path.parent / "reference"
    shutil.copytree(ws_path, reference)
    with Workspace.open(reference) as ws:
        ws.forget(model="m", sample_ids=["s3"])
        expected = ws.provenance.active_version("m")
    settings = _settings(ws_path, lease_seconds=1.5, heartbeat_seconds=0.5)
    with Workspace.open(ws_path) as ws:
        queue = RequestQueue(ws.provenance.engine, settings=settings)
        request_id = queue.submit(_new("s3")).request_id
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                SLOW_WORKER,
                "worker",
                "-w",
                str(ws_path),
                "--batch-window",
                "0",
                "--lease-seconds",
                "1.5",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:

            def mid_retrain() -> bool:
                active = ws.provenance.active_version("m")
                return active is not None and active.kind == "rolled_back"

            _wait(mid_retrain, 120, "the child to roll back and start retraining")
            assert queue.get(request_id).state == "running"
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=30)
        finally:
            if child.poll() is None:
                os.kill(child.pid, signal.SIGKILL)
                child.wait()
        Worker(ws, queue, owner="rescuer").drain(timeout=120)
        record = queue.get(request_id)
        assert record.state == "completed" and record.attempts == 2
        final = ws.provenance.active_version("m")
        assert final is not None and final.kind == "retrained"
        assert expected is not None and final.content_hash == expected.content_hash
        assert set(deletions_per_sample(ws).values()) == {1}
        assert ws.verify(model="m").ok


def _new(*ids: str, key: str | None = None) -> NewRequest:
    return NewRequest(
        model="m",
        mode="exact",
        sample_ids=ids,
        subject_ids=(),
        reason="gdpr-art17-1a",
        fingerprint=",".join(ids),
        idempotency_key=key,
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(ws_path: Path, env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = _free_port()
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "obliviate.service",
            "serve",
            "-w",
            str(ws_path),
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        _wait(up, 120, "the server to start")
        yield child, base
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
        child.wait()


def test_server_killed_mid_request_loses_no_acknowledged_request(
    ws_path: Path, server: tuple[subprocess.Popen[bytes], str]
) -> None:
    child, base = server
    with Workspace.open(ws_path) as ws:
        secret = ApiKeyStore(ws.provenance.engine).create(name="t", scopes=["admin"]).secret
    headers = {"Authorization": f"Bearer {secret}"}
    sent: dict[str, str] = {}  # idempotency key -> sample id
    acked: dict[str, str] = {}  # idempotency key -> request id
    lock = threading.Lock()
    counter = itertools.count()  # clients send until the server dies
    failures: list[Exception] = []

    def client() -> None:
        with httpx.Client(base_url=base, timeout=5) as http:
            for i in counter:
                key = uuid.uuid4().hex
                with lock:
                    sent[key] = f"s{i % 40}"
                try:
                    response = http.post(
                        "/v1/unlearn",
                        json={"sample_ids": [sent[key]], "reason": "gdpr-art17-1a"},
                        headers={**headers, "Idempotency-Key": key},
                    )
                except httpx.HTTPError as exc:
                    failures.append(exc)  # the server died under us
                    return
                if response.status_code == 202:
                    with lock:
                        acked[key] = response.json()["id"]

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    _wait(lambda: len(acked) >= 8, 60, "some acknowledgements")
    os.kill(child.pid, signal.SIGKILL)  # requests are in flight right now
    for thread in threads:
        thread.join(timeout=30)
    assert len(acked) >= 8 and failures  # killed with requests in flight
    settings = _settings(ws_path)
    with Workspace.open(ws_path) as ws:
        queue = RequestQueue(ws.provenance.engine, settings=settings)
        for request_id in acked.values():
            assert queue.get(request_id).state == "queued"  # every 202 was durable
        # Clients retry everything not acknowledged, with the same keys: a request that was
        # committed before the kill is replayed, not stored twice.
        app = create_app(settings, workspace=ws)
        with TestClient(app) as http:
            for key, sample in sent.items():
                response = http.post(
                    "/v1/unlearn",
                    json={"sample_ids": [sample], "reason": "gdpr-art17-1a"},
                    headers={**headers, "Idempotency-Key": key},
                )
                assert response.status_code == 202
                if key in acked:
                    assert response.json()["id"] == acked[key]
        assert sum(queue.counts().values()) == len(sent)
        Worker(ws, queue).drain(timeout=120)
        assert queue.counts()["completed"] == len(sent)
        assert len(deletions_per_sample(ws)) == len(set(sent.values()))
        assert set(deletions_per_sample(ws).values()) == {1}
        assert ws.verify(model="m").ok
