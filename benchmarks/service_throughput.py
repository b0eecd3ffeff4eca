"""Sustained ``POST /v1/unlearn`` acceptance with durable commits: rate and latency.

A real uvicorn server (child process, SQLite workspace, ``synchronous=FULL``, group commit)
is driven over loopback by the asyncio raw-HTTP client of ``service_common``:

1. **closed loop**: ``--connections`` keep-alive connections, each sending its next request
   as soon as the last was answered: the most the server accepts per second;
2. **open loop** at ``--rate`` (the target, 1,000/s by default) and at half the measured
   maximum: requests start on schedule whatever the answers, and latency counts from the
   scheduled start, so a server that falls behind shows it (no coordinated omission).

Afterwards every acknowledged (202) request is looked up in the request table: an
acknowledged request that is not there would be a lost request. Target: >= 1,000/s with p99
<= 50 ms on 2 cores. Writes benchmarks/results/service_throughput.{json,md,png}.

    .venv/bin/python benchmarks/service_throughput.py            # ~1 minute
    .venv/bin/python benchmarks/service_throughput.py --quick    # ~20 seconds
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from obliviate import SISAConfig, TrainConfig, Workspace
from obliviate.service import ApiKeyStore
from obliviate.service.tables import REQUESTS
from obliviate.testing import make_blobs
from service_common import (
    LoadResult,
    closed_loop,
    machine,
    open_loop,
    percentile,
    start_server,
    stop,
    write_results,
)

SAMPLES = 200


def make_workspace(root: Path) -> str:
    """A workspace with one tiny SISA model (the POST path never trains) and an admin key."""
    os.environ["OBLIVIATE_EXECUTOR"] = "inline"
    with Workspace.init(root) as ws:
        ws.register(make_blobs(n=SAMPLES, subjects=10), dataset="d")
        ws.train(
            name="m",
            dataset="d",
            config=SISAConfig(
                shards=2, slices=1, model_options={"hidden": (8,)}, train=TrainConfig(epochs=1)
            ),
        )
        return ApiKeyStore(ws.provenance.engine).create(name="bench", scopes=["admin"]).secret


def summarise(name: str, result: LoadResult) -> dict[str, Any]:
    accepted = result.statuses.get(202, 0)
    ms = [s * 1000 for s in result.latencies]
    return {
        "phase": name,
        "seconds": round(result.seconds, 3),
        "sent": len(result.sent),
        "accepted": accepted,
        "accepted_per_second": round(accepted / result.seconds, 1) if result.seconds else 0.0,
        "statuses": {str(k): v for k, v in sorted(result.statuses.items())},
        "errors": result.errors,
        "p50_ms": round(percentile(ms, 50), 2),
        "p90_ms": round(percentile(ms, 90), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(max(ms), 2) if ms else None,
        "mean_ms": round(statistics.fmean(ms), 2) if ms else None,
    }


def verify(root: Path, results: list[LoadResult]) -> dict[str, int]:
    """Every acknowledged request id is a committed row (read from a fresh connection)."""
    acked = {rid for r in results for rid in r.acked.values()}
    engine = sa.create_engine(f"sqlite:///{root / 'registry.db'}")
    try:
        with engine.connect() as conn:
            stored = set(conn.execute(sa.select(REQUESTS.c.id)).scalars())
    finally:
        engine.dispose()
    return {"acknowledged": len(acked), "found": len(acked & stored), "rows": len(stored)}


def plot(phases: list[tuple[str, LoadResult]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (hist, cdf) = plt.subplots(1, 2, figsize=(11, 4))
    for name, result in phases:
        ms = sorted(s * 1000 for s in result.latencies)
        if not ms:
            continue
        hist.hist(ms, bins=60, alpha=0.5, label=name)
        cdf.plot(ms, [i / len(ms) for i in range(1, len(ms) + 1)], label=name)
    hist.set_xlabel("202 latency (ms)")
    hist.set_ylabel("requests")
    hist.set_yscale("log")
    hist.legend(fontsize=8)
    cdf.set_xscale("log")
    cdf.axvline(50, color="grey", linestyle="--", linewidth=1)
    cdf.text(52, 0.05, "50 ms", color="grey", fontsize=8)
    cdf.set_xlabel("202 latency (ms, log)")
    cdf.set_ylabel("fraction of requests")
    cdf.legend(fontsize=8)
    fig.suptitle("POST /v1/unlearn on loopback (uvicorn + SQLite, durable group commits)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rate", type=float, default=1000.0, help="open-loop target rate")
    parser.add_argument(
        "--http", default="auto", help="uvicorn HTTP implementation (auto: as obliviate serve)"
    )
    parser.add_argument("--loop", default="auto", help="uvicorn event loop (auto: uvloop)")
    args = parser.parse_args()
    seconds = 3.0 if args.quick else args.seconds
    scratch = Path(tempfile.mkdtemp(prefix="obliviate-throughput-"))
    root = scratch / "ws"
    secret = make_workspace(root)
    # The client shares the machine and imported torch too: keep its full collections from
    # stalling the load generator's event loop (that would show up as server latency).
    gc.collect()
    gc.freeze()
    info = machine()
    server, base = start_server(root, http=args.http, loop=args.loop)
    phases: list[tuple[str, LoadResult]] = []
    try:
        warm = asyncio.run(closed_loop(base, secret, connections=8, seconds=1.0, samples=SAMPLES))
        phases.append(("warm-up", warm))
        top = asyncio.run(
            closed_loop(
                base, secret, connections=args.connections, seconds=seconds, samples=SAMPLES
            )
        )
        phases.append((f"closed loop, {args.connections} connections", top))
        max_rate = top.statuses.get(202, 0) / top.seconds
        target = asyncio.run(
            open_loop(base, secret, rate=args.rate, seconds=seconds, samples=SAMPLES)
        )
        phases.append((f"open loop at {args.rate:.0f}/s", target))
        half = max(10.0, round(max_rate / 2))
        easy = asyncio.run(open_loop(base, secret, rate=half, seconds=seconds, samples=SAMPLES))
        phases.append((f"open loop at {half:.0f}/s (half the max)", easy))
    finally:
        stop(server)
    check = verify(root, [r for _, r in phases])
    rows = [summarise(name, result) for name, result in phases[1:]]
    at_target = rows[1]
    met = (
        at_target["accepted_per_second"] >= 0.98 * args.rate
        and at_target["p99_ms"] <= 50
        and at_target["statuses"] == {"202": at_target["sent"]}
    )
    data: dict[str, Any] = {
        "benchmark": "service_throughput",
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "conditions": {
            **info,
            "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
            "server": f"uvicorn --http {args.http} --loop {args.loop}, 1 process",
            "database": "SQLite WAL, synchronous=FULL, group commit",
            "client": "asyncio raw HTTP/1.1, keep-alive, same machine",
            "phase_seconds": seconds,
        },
        "target": {"rate_per_second": args.rate, "p99_ms": 50, "met": met},
        "phases": rows,
        "durability_check": check,
    }
    plot(phases[1:], Path(write_results("service_throughput", data, "")[0]).with_suffix(".png"))
    lines = [
        "# POST /v1/unlearn throughput and latency (durable group commits)",
        "",
        f"Recorded {data['recorded_at']} on {info['cpus']} shared cores (1-min load average "
        f"{info['loadavg_1m_at_start']} at start, {data['conditions']['loadavg_1m_at_end']} at "
        f"end); server `uvicorn --http {args.http} --loop {args.loop}`, SQLite "
        "`synchronous=FULL`; client and server on the same machine.",
        "",
        "| phase | sent | 202 | 202/s | p50 ms | p90 ms | p99 ms | max ms | other statuses |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        other = {k: v for k, v in row["statuses"].items() if k != "202"}
        lines.append(
            f"| {row['phase']} | {row['sent']} | {row['accepted']} | "
            f"{row['accepted_per_second']} | {row['p50_ms']} | {row['p90_ms']} | "
            f"{row['p99_ms']} | {row['max_ms']} | {other or '-'}"
            f"{' errors ' + str(row['errors']) if row['errors'] else ''} |"
        )
    lines += [
        "",
        f"Target (>= {args.rate:.0f}/s with p99 <= 50 ms): **{'met' if met else 'not met'}**.",
        f"Durability: {check['found']} of {check['acknowledged']} acknowledged requests are "
        f"rows in the table ({check['rows']} rows in all).",
        "",
    ]
    write_results("service_throughput", data, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
