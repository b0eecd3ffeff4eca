"""kill -9 trials: the server and the worker die at random points; nothing acknowledged is lost.

One workspace (a small SISA model on 3,000 blobs), one uvicorn server and one worker
(``obliviate worker``) run for the whole session. Each trial

1. streams deletion requests (each a fresh sample, its own ``Idempotency-Key``) from two
   client threads;
2. at a random moment sends SIGKILL to the worker, the server, or both, and restarts what
   it killed (the server on the same port);
3. has the clients retry every request that got no answer, with the *same* key, as a real
   client would;
4. waits until nothing is queued or running, then checks: every acknowledged request is a
   row, and completed; no key made two rows; every sample of the trial was deleted by exactly
   one registry deletion (exactly once in effect).

At the end the model's lineage is verified (no component of the active version has seen a
deleted sample). Writes benchmarks/results/service_crash_trials.{json,md}.

    .venv/bin/python benchmarks/service_crash_trials.py --trials 100   # ~15-25 min on 2 cores
    .venv/bin/python benchmarks/service_crash_trials.py --quick        # 3 trials
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from obliviate import SISAConfig, TrainConfig, Workspace
from obliviate.provenance.schema import DeletionSample, Sample
from obliviate.service import ApiKeyStore
from obliviate.service.tables import IDEMPOTENCY, REQUESTS
from obliviate.testing import make_blobs
from service_common import SERVER, child_env, free_port, machine, write_results

SAMPLES = 3_000
ENV = {
    "OBLIVIATE_SERVICE_BATCH_WINDOW_SECONDS": "0",
    "OBLIVIATE_SERVICE_POLL_SECONDS": "0.05",
    "OBLIVIATE_SERVICE_LEASE_SECONDS": "2",
    "OBLIVIATE_SERVICE_HEARTBEAT_SECONDS": "0.5",
    "OBLIVIATE_SERVICE_MAX_ATTEMPTS": "1000",  # a kill must never exhaust a request
    "OBLIVIATE_SERVICE_RETRY_BACKOFF_SECONDS": "0",
}


class Processes:
    """The server and the worker, killable and restartable."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = child_env(**ENV)
        self.server: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None

    def start_server(self) -> float:
        start = time.perf_counter()
        self.server = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(self.root), str(self.port), "h11", "asyncio"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        while True:
            if self.server.poll() is not None:  # port still held: try again shortly
                time.sleep(0.2)
                return self.start_server()
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return time.perf_counter() - start
            except httpx.HTTPError:
                time.sleep(0.05)

    def start_worker(self) -> None:
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "obliviate.service", "worker", "-w", str(self.root)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    @staticmethod
    def kill(child: subprocess.Popen[bytes] | None) -> None:
        if child is not None and child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()

    def close(self) -> None:
        for child in (self.server, self.worker):
            if child is not None and child.poll() is None:
                child.terminate()
                try:
                    child.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.kill(child)


def build(root: Path) -> str:
    os.environ["OBLIVIATE_EXECUTOR"] = "inline"
    with Workspace.init(root) as ws:
        ws.register(make_blobs(n=SAMPLES, subjects=30), dataset="d")
        ws.train(
            name="m",
            dataset="d",
            config=SISAConfig(
                shards=4,
                slices=2,
                model_options={"hidden": (16,)},
                train=TrainConfig(epochs=1, batch_size=32, lr=0.05),
            ),
        )
        return ApiKeyStore(ws.provenance.engine).create(name="c", scopes=["admin"]).secret


class Client:
    """Sends each deletion until it is acknowledged, with its key fixed across retries."""

    def __init__(self, base: str, secret: str) -> None:
        self.base = base
        self.headers = {"Authorization": f"Bearer {secret}"}
        self.acked: dict[str, str] = {}  # key -> request id
        self.pending: dict[str, str] = {}  # key -> sample (sent, not yet acknowledged)
        self.lock = threading.Lock()

    def send(self, http: httpx.Client, key: str, sample: str) -> bool:
        try:
            response = http.post(
                f"{self.base}/v1/unlearn",
                json={"sample_ids": [sample], "reason": "gdpr-art17-1a"},
                headers={**self.headers, "Idempotency-Key": key},
            )
        except httpx.HTTPError:
            return False
        if response.status_code != 202:
            raise RuntimeError(f"unexpected {response.status_code}: {response.text}")
        with self.lock:
            rid = response.json()["id"]
            if key in self.acked and self.acked[key] != rid:
                raise RuntimeError(f"key {key} answered with two request ids")
            self.acked[key] = rid
            self.pending.pop(key, None)
        return True

    def stream(self, samples: list[str], stop: threading.Event) -> None:
        with httpx.Client(timeout=5) as http:
            for sample in samples:
                if stop.is_set():
                    return
                key = uuid.uuid4().hex
                with self.lock:
                    self.pending[key] = sample
                self.send(http, key, sample)
                time.sleep(0.02)

    def retry_all(self, deadline: float) -> None:
        with httpx.Client(timeout=5) as http:
            while True:
                with self.lock:
                    todo = dict(self.pending)
                if not todo:
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{len(todo)} requests never acknowledged")
                for key, sample in todo.items():
                    self.send(http, key, sample)
                time.sleep(0.1)


def settle(engine: sa.Engine, keys: set[str], timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with engine.connect() as conn:
            open_ = conn.execute(
                sa.select(sa.func.count())
                .select_from(REQUESTS.join(IDEMPOTENCY, IDEMPOTENCY.c.request_id == REQUESTS.c.id))
                .where(IDEMPOTENCY.c.key.in_(keys), REQUESTS.c.state.in_(("queued", "running")))
            ).scalar()
        if not open_:
            return
        time.sleep(0.1)
    raise TimeoutError("requests still open after the trial")


def check(engine: sa.Engine, client: Client, samples: dict[str, str]) -> dict[str, Any]:
    """Acknowledged -> completed rows; one row per key; each sample deleted exactly once."""
    keys = set(samples)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                IDEMPOTENCY.c.key,
                REQUESTS.c.id,
                REQUESTS.c.state,
                REQUESTS.c.attempts,
                REQUESTS.c.error,
            )
            .join(REQUESTS, REQUESTS.c.id == IDEMPOTENCY.c.request_id)
            .where(IDEMPOTENCY.c.key.in_(keys))
        ).all()
        deletions = dict(
            conn.execute(
                sa.select(Sample.sample_id, sa.func.count(DeletionSample.sample_pk))
                .join(DeletionSample, DeletionSample.sample_pk == Sample.id)
                .where(Sample.sample_id.in_(set(samples.values())))
                .group_by(Sample.sample_id)
            ).all()
        )
    by_key = {r.key: r for r in rows}
    lost = [k for k, rid in client.acked.items() if k in keys and by_key.get(k, None) is None]
    wrong_id = [k for k, rid in client.acked.items() if k in by_key and by_key[k].id != rid]
    not_done = [r.id for r in rows if r.state != "completed"]
    twice = {s: n for s, n in deletions.items() if n != 1}
    missing = sorted(set(samples.values()) - set(deletions))
    return {
        "requests": len(keys),
        "acknowledged": sum(1 for k in client.acked if k in keys),
        "rows": len(rows),
        "lost": len(lost),
        "wrong_id": len(wrong_id),
        "not_completed": len(not_done),
        "deleted_not_once": len(twice),
        "never_deleted": len(missing),
        "max_attempts": max((r.attempts for r in rows), default=0),
        "errors": sorted({f"{r.state}: {r.error}" for r in rows if r.state != "completed"}),
        "ok": not (lost or wrong_id or not_done or twice or missing) and len(rows) == len(keys),
    }


def trial(
    n: int, procs: Processes, engine: sa.Engine, secret: str, pool: list[str], rng: random.Random
) -> dict[str, Any]:
    target = rng.choices(["worker", "server", "both"], weights=[5, 4, 1])[0]
    per_trial = 16
    samples = [pool.pop() for _ in range(per_trial)]
    client = Client(procs.base, secret)
    stop = threading.Event()
    halves = [samples[: per_trial // 2], samples[per_trial // 2 :]]
    threads = [threading.Thread(target=client.stream, args=(h, stop)) for h in halves]
    for thread in threads:
        thread.start()
    kill_after = rng.uniform(0.05, 0.6)
    time.sleep(kill_after)
    with engine.connect() as conn:
        running = conn.execute(
            sa.select(sa.func.count()).where(REQUESTS.c.state == "running")
        ).scalar()
    started = time.perf_counter()
    if target in ("worker", "both"):
        procs.kill(procs.worker)
    if target in ("server", "both"):
        procs.kill(procs.server)
    for thread in threads:
        thread.join()
    restart = 0.0
    if target in ("server", "both"):
        restart = procs.start_server()
    if target in ("worker", "both"):
        procs.start_worker()
    client.retry_all(time.monotonic() + 120)
    keys = {k for k in client.acked} | set(client.pending)
    with engine.connect() as conn:
        sent = dict(
            conn.execute(
                sa.select(IDEMPOTENCY.c.key, REQUESTS.c.sample_ids)
                .join(REQUESTS, REQUESTS.c.id == IDEMPOTENCY.c.request_id)
                .where(IDEMPOTENCY.c.key.in_(keys))
            ).all()
        )
    samples_by_key = {k: v[0] for k, v in sent.items()}
    settle(engine, keys, timeout=300)
    recovered = time.perf_counter() - started
    outcome = check(engine, client, samples_by_key)
    return {
        "trial": n,
        "killed": target,
        "kill_after_seconds": round(kill_after, 3),
        "running_at_kill": int(running or 0),
        "server_restart_seconds": round(restart, 2),
        "recovery_seconds": round(recovered, 2),
        **outcome,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 trials")
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument(
        "--budget-minutes", type=float, default=15.0, help="stop starting trials after this"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    trials = 3 if args.quick else args.trials
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="obliviate-crash-")) / "ws"
    secret = build(root)
    pool = [f"s{i}" for i in range(SAMPLES)]
    rng.shuffle(pool)
    info = machine()
    procs = Processes(root)
    engine = sa.create_engine(f"sqlite:///{root / 'registry.db'}")
    results: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        procs.start_server()
        procs.start_worker()
        for n in range(trials):
            if time.monotonic() - started > args.budget_minutes * 60:
                break
            results.append(trial(n, procs, engine, secret, pool, rng))
            last = results[-1]
            print(
                f"trial {n}: killed {last['killed']} after {last['kill_after_seconds']} s, "
                f"{last['acknowledged']}/{last['requests']} acked, ok={last['ok']}, "
                f"recovered in {last['recovery_seconds']} s",
                flush=True,
            )
    finally:
        procs.close()
        engine.dispose()
    with Workspace.open(root) as ws:
        lineage_ok = bool(ws.verify(model="m").ok)
    failed = [r["trial"] for r in results if not r["ok"]]
    recovery = sorted(r["recovery_seconds"] for r in results)
    data = {
        "benchmark": "service_crash_trials",
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "conditions": {
            **info,
            "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
            "workspace": f"SQLite; SISA S=4 R=2 on {SAMPLES} blobs",
            "settings": ENV,
            "requested_trials": trials,
            "budget_minutes": args.budget_minutes,
            "seed": args.seed,
        },
        "trials_run": len(results),
        "kills": {
            t: sum(1 for r in results if r["killed"] == t) for t in ("worker", "server", "both")
        },
        "kills_with_work_running": sum(1 for r in results if r["running_at_kill"]),
        "requests": sum(r["requests"] for r in results),
        "acknowledged": sum(r["acknowledged"] for r in results),
        "lost": sum(r["lost"] for r in results),
        "deleted_not_once": sum(r["deleted_not_once"] for r in results),
        "failed_trials": failed,
        "lineage_verified": lineage_ok,
        "recovery_seconds_median": recovery[len(recovery) // 2] if recovery else None,
        "recovery_seconds_max": recovery[-1] if recovery else None,
        "trials": results,
    }
    lines = [
        "# kill -9 trials of the unlearning service",
        "",
        f"Recorded {data['recorded_at']}; {info['cpus']} shared cores (1-min load average "
        f"{info['loadavg_1m_at_start']} at start, {data['conditions']['loadavg_1m_at_end']} at "
        f"end). Lease 2 s, heartbeat 0.5 s, batch window 0.",
        "",
        "| trials run | kills (worker / server / both) | kills with work running | requests | "
        "acknowledged | lost | deleted not exactly once | failed trials | lineage verified |",
        "|---:|---|---:|---:|---:|---:|---:|---|---|",
        f"| {len(results)} of {trials} | {data['kills']['worker']} / {data['kills']['server']} / "
        f"{data['kills']['both']} | {data['kills_with_work_running']} | {data['requests']} | "
        f"{data['acknowledged']} | {data['lost']} | {data['deleted_not_once']} | "
        f"{failed or 'none'} | {lineage_ok} |",
        "",
        f"Recovery (kill to every request of the trial completed): median "
        f"{data['recovery_seconds_median']} s, max {data['recovery_seconds_max']} s.",
        "",
    ]
    write_results("service_crash_trials", data, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
