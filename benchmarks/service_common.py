"""Shared pieces of the service benchmarks: a server in a subprocess and a raw HTTP client.

The load generator is a small asyncio HTTP/1.1 client (keep-alive connections, one request
in flight per connection) rather than httpx: on two shared cores httpx's per-request cost
would make the *client* the bottleneck and understate the server.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

SERVER = """
import sys, uvicorn
from obliviate.service import ServiceSettings, create_app
settings = ServiceSettings.from_env(workspace=sys.argv[1])
app = create_app(settings)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), http=sys.argv[3], loop=sys.argv[4],
            log_level="warning", access_log=False)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "OBLIVIATE_EXECUTOR": "inline", "OMP_NUM_THREADS": "1"}
    env.update(extra)
    return env


def start_server(
    workspace: Path,
    *,
    http: str = "h11",
    loop: str = "asyncio",
    env: dict[str, str] | None = None,
    timeout: float = 120.0,
) -> tuple[subprocess.Popen[bytes], str]:
    """Starts ``uvicorn`` over ``workspace`` in a child process; waits for ``/healthz``."""
    port = free_port()
    child = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(workspace), str(port), http, loop],
        env=env or child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if child.poll() is not None:
            raise RuntimeError(f"the server exited with {child.returncode}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return child, base
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    stop(child)
    raise RuntimeError("the server did not start")


def stop(child: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if child.poll() is None:
        child.send_signal(sig)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


@dataclass
class Reply:
    status: int
    body: bytes
    seconds: float


@dataclass
class Connection:
    """One keep-alive HTTP/1.1 connection with one request in flight."""

    host: str
    port: int
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        if self.writer is None or self.reader is None:
            await self.open()
        assert self.writer is not None and self.reader is not None
        lines = [f"POST {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}", "", ""]
        start = time.perf_counter()
        self.writer.write("\r\n".join(lines).encode() + body)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("server closed the connection")
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        payload = await self.reader.readexactly(length) if length else b""
        return Reply(status, payload, time.perf_counter() - start)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


@dataclass
class LoadResult:
    """What a load run saw: latencies of 202s, statuses, acknowledged ids, errors."""

    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    acked: dict[str, str] = field(default_factory=dict)  # idempotency key -> request id
    sent: dict[str, str] = field(default_factory=dict)  # idempotency key -> sample id
    errors: int = 0


async def _one(
    conn: Connection, result: LoadResult, headers: dict[str, str], n: int, samples: int
) -> None:
    key = os.urandom(12).hex()
    sample = f"s{n % samples}"
    result.sent[key] = sample
    body = json.dumps({"sample_ids": [sample], "reason": "gdpr-art17-1a"}).encode()
    try:
        reply = await conn.post("/v1/unlearn", body, {**headers, "Idempotency-Key": key})
    except (ConnectionError, OSError, asyncio.IncompleteReadError, ValueError):
        result.errors += 1
        conn.close()
        return
    result.statuses[reply.status] = result.statuses.get(reply.status, 0) + 1
    if reply.status == 202:
        result.latencies.append(reply.seconds)
        result.acked[key] = json.loads(reply.body)["id"]


async def closed_loop(
    base: str, secret: str, *, connections: int, seconds: float, samples: int
) -> LoadResult:
    """Each connection sends its next request as soon as the previous one is answered."""
    host, port = base.removeprefix("http://").split(":")
    headers = {"Authorization": f"Bearer {secret}"}
    result = LoadResult()
    counter = iter(range(10**9))
    end = time.perf_counter() + seconds

    async def worker() -> None:
        conn = Connection(host, int(port))
        while time.perf_counter() < end:
            await _one(conn, result, headers, next(counter), samples)
        conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    result.seconds = time.perf_counter() - start
    return result


async def open_loop(
    base: str, secret: str, *, rate: float, seconds: float, samples: int, pool: int = 256
) -> LoadResult:
    """Requests start at a fixed ``rate`` (Poisson-free, evenly spaced) whatever the answers.

    Latency is measured from each request's *scheduled* start, so queueing in the client
    when the server falls behind counts (no coordinated omission).
    """
    host, port = base.removeprefix("http://").split(":")
    headers = {"Authorization": f"Bearer {secret}"}
    result = LoadResult()
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(pool):
        idle.put_nowait(Connection(host, int(port)))
    total = int(rate * seconds)
    start = time.perf_counter()

    async def fire(n: int, scheduled: float) -> None:
        conn = await idle.get()
        before = len(result.latencies)
        await _one(conn, result, headers, n, samples)
        if len(result.latencies) > before:  # replace service time by time since schedule
            result.latencies[-1] = time.perf_counter() - scheduled
        idle.put_nowait(conn)

    tasks = []
    for n in range(total):
        scheduled = start + n / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(fire(n, scheduled)))
    await asyncio.gather(*tasks)
    result.seconds = time.perf_counter() - start
    while not idle.empty():
        idle.get_nowait().close()
    return result


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def write_results(name: str, data: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    json_path, md_path = RESULTS / f"{name}.json", RESULTS / f"{name}.md"
    json_path.write_text(json.dumps(data, indent=2) + "\n")
    md_path.write_text(markdown)
    return json_path, md_path


def machine() -> dict[str, Any]:
    load = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "loadavg_1m_at_start": round(load[0], 2),
        "python": sys.version.split()[0],
    }
