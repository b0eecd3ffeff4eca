"""Audit-ledger benchmark: append throughput, proof cost at 10^4..10^6 leaves, full verify.

Targets (issue "tamper-evident audit ledger"): >= 10,000 durable appends/s (group commit,
``append_many``), <= 1 ms per inclusion/consistency proof generated and verified at
1,000,000 leaves, and the time to verify a whole 1,000,000-leaf log.

Because the shared machine is noisy, throughput is also reported as a ratio to a baseline
measured in the same run, interleaved batch by batch: inserting the same canonical event
rows into a plain table (no hashing, no tree), in the same SQLite database with the same
durability (WAL, synchronous=FULL, one commit per batch). Events are realistic
``request_completed``-sized JSON (~0.6 kB). Writes benchmarks/results/ledger_bench.{json,md,png}.

    .venv/bin/python benchmarks/ledger_bench.py            # ~3-5 minutes on 2 cores
    .venv/bin/python benchmarks/ledger_bench.py --quick    # seconds
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import matplotlib
import sqlalchemy as sa

from obliviate.ledger import Ledger, canonicalize
from obliviate.ledger.events import event, rfc3339
from obliviate.ledger.merkle import verify_consistency, verify_inclusion
from obliviate.provenance.engine import SQLITE_BEGIN_OPTION

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def make_events(start: int, n: int) -> list[dict[str, Any]]:
    """``request_completed``-like events with pseudonym-sized hex fields."""
    now = rfc3339()
    out = []
    for i in range(start, start + n):
        h = f"{i:064x}"
        out.append(
            event(
                "request_completed",
                request_id=f"{i:032x}",
                model="mnist-sisa",
                time=now,
                guarantee="exact",
                noop=False,
                version_before={"number": i, "content_hash": h, "kind": "trained"},
                version_after={"number": i + 1, "content_hash": h[::-1], "kind": "retrained"},
                forgotten=3,
                samples_commitment=h,
                evidence=None,
            )
        )
    return out


def baseline_table(engine: sa.Engine) -> sa.Table:
    meta = sa.MetaData()
    table = sa.Table(
        "plain_log",
        meta,
        sa.Column("idx", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("event", sa.Text(), nullable=False),
    )
    meta.create_all(engine)
    return table


def throughput(ledger: Ledger, engine: sa.Engine, *, batches: int, batch: int) -> dict[str, Any]:
    """Interleaved: one ledger batch, then one plain-insert batch of the same events."""
    table = baseline_table(engine)
    writer = engine.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
    ledger_rates, plain_rates, ratios = [], [], []
    offset = ledger.size
    for b in range(batches):
        evts = make_events(offset + b * batch, batch)
        start = time.perf_counter()
        ledger.append_many(evts)
        t_ledger = time.perf_counter() - start
        start = time.perf_counter()
        rows = [
            {"idx": offset + b * batch + i, "event": canonicalize(e).decode()}
            for i, e in enumerate(evts)
        ]
        with writer.begin() as conn:
            conn.execute(sa.insert(table), rows)
        t_plain = time.perf_counter() - start
        ledger_rates.append(batch / t_ledger)
        plain_rates.append(batch / t_plain)
        ratios.append(t_ledger / t_plain)
    single = []
    for i in range(50):
        start = time.perf_counter()
        ledger.append(make_events(10**9 + i, 1)[0])
        single.append(time.perf_counter() - start)
    return {
        "batch": batch,
        "batches": batches,
        "ledger_events_per_s_median": statistics.median(ledger_rates),
        "ledger_events_per_s_min": min(ledger_rates),
        "plain_insert_events_per_s_median": statistics.median(plain_rates),
        "ledger_over_plain_time_ratio_median": statistics.median(ratios),
        "single_append_ms_median": statistics.median(single) * 1e3,
    }


def grow(ledger: Ledger, target: int, *, batch: int = 20_000) -> float:
    start = time.perf_counter()
    while ledger.size < target:
        n = min(batch, target - ledger.size)
        ledger.append_many(make_events(ledger.size, n))
    return time.perf_counter() - start


def proofs(ledger: Ledger, *, samples: int, rng: random.Random) -> dict[str, Any]:
    """Median proof generation (warm cache / fresh ledger object) and verification times."""
    size = ledger.size
    root = ledger.root()
    gen, gen_cold, ver, cgen, cver = [], [], [], [], []
    cold = Ledger(ledger._engine, directory=ledger.directory)
    for _ in range(samples):
        index = rng.randrange(size)
        start = time.perf_counter()
        proof = cold.inclusion_proof(index, size)
        gen_cold.append(time.perf_counter() - start)
        start = time.perf_counter()
        proof = ledger.inclusion_proof(index, size)
        gen.append(time.perf_counter() - start)
        leaf = ledger.leaf_hash(index)
        start = time.perf_counter()
        verify_inclusion(index=index, size=size, leaf=leaf, proof=proof, root=root)
        ver.append(time.perf_counter() - start)
        old = rng.randrange(1, size)
        old_root = ledger.root(old)
        start = time.perf_counter()
        cproof = ledger.consistency_proof(old, size)
        cgen.append(time.perf_counter() - start)
        start = time.perf_counter()
        verify_consistency(
            old_size=old, new_size=size, old_root=old_root, new_root=root, proof=cproof
        )
        cver.append(time.perf_counter() - start)
        cold = Ledger(ledger._engine, directory=ledger.directory) if _ % 10 == 9 else cold
    ms = 1e3
    return {
        "size": size,
        "inclusion_gen_ms": statistics.median(gen) * ms,
        "inclusion_gen_cold_ms": statistics.median(gen_cold) * ms,
        "inclusion_verify_ms": statistics.median(ver) * ms,
        "consistency_gen_ms": statistics.median(cgen) * ms,
        "consistency_verify_ms": statistics.median(cver) * ms,
        "proof_hashes": len(proof),
    }


def write(results: dict[str, Any], name: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    t = results["throughput"]
    lines = [
        "# Audit ledger benchmark",
        "",
        f"Conditions: {results['conditions']}",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| append_many throughput (batch {t['batch']}, median) | "
        f"{t['ledger_events_per_s_median']:,.0f} events/s | >= 10,000 events/s |",
        f"| append_many throughput (worst batch) | "
        f"{t['ledger_events_per_s_min']:,.0f} events/s | |",
        f"| plain durable insert, same rows (baseline) | "
        f"{t['plain_insert_events_per_s_median']:,.0f} events/s | |",
        f"| ledger / baseline time per batch (median) | "
        f"{t['ledger_over_plain_time_ratio_median']:.2f}x | |",
        f"| single append + commit (median) | {t['single_append_ms_median']:.2f} ms | |",
    ]
    for p in results["proofs"]:
        n = f"{p['size']:,}"
        lines += [
            f"| inclusion proof generation at {n} (warm / cold) | "
            f"{p['inclusion_gen_ms']:.3f} / {p['inclusion_gen_cold_ms']:.3f} ms | <= 1 ms |",
            f"| inclusion proof verification at {n} | "
            f"{p['inclusion_verify_ms']:.3f} ms | <= 1 ms |",
            f"| consistency proof generation at {n} | {p['consistency_gen_ms']:.3f} ms | <= 1 ms |",
            f"| consistency proof verification at {n} | "
            f"{p['consistency_verify_ms']:.3f} ms | <= 1 ms |",
        ]
    v = results["verify"]
    lines += [
        f"| build log of {v['size']:,} leaves (append_many, 20k batches) | "
        f"{results['build_seconds']:.1f} s | |",
        f"| verify whole log of {v['size']:,} leaves | {v['seconds']:.1f} s | |",
    ]
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    sizes = [p["size"] for p in results["proofs"]]
    for key, label in [
        ("inclusion_gen_ms", "inclusion gen (warm)"),
        ("inclusion_gen_cold_ms", "inclusion gen (cold)"),
        ("inclusion_verify_ms", "inclusion verify"),
        ("consistency_gen_ms", "consistency gen"),
        ("consistency_verify_ms", "consistency verify"),
    ]:
        ax.plot(sizes, [p[key] for p in results["proofs"]], marker="o", label=label)
    ax.axhline(1.0, color="grey", linestyle="--", label="1 ms target")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("leaves in the log")
    ax.set_ylabel("median time (ms)")
    ax.set_title("Audit-ledger proof cost (SQLite)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / f"{name}.png", dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, seconds-long")
    parser.add_argument("--leaves", type=int, default=1_000_000)
    args = parser.parse_args()
    sizes = [1_000, 10_000] if args.quick else [10_000, 100_000, args.leaves]
    name = "ledger_bench_quick" if args.quick else "ledger_bench"
    scratch = Path(tempfile.mkdtemp(prefix="obliviate-ledger-"))
    rng = random.Random(0)
    try:
        ledger = Ledger.open(f"sqlite:///{scratch / 'registry.db'}", directory=scratch / "ledger")
        tput = throughput(ledger, ledger._engine, batches=5 if args.quick else 20, batch=1_000)
        results: dict[str, Any] = {
            "conditions": "SQLite file (WAL, synchronous=FULL), 2 shared CPU cores with other "
            "agents running; medians",
            "throughput": tput,
            "proofs": [],
        }
        build = 0.0
        for size in sizes:
            build += grow(ledger, size)
            results["proofs"].append(proofs(ledger, samples=50 if args.quick else 200, rng=rng))
            print(json.dumps(results["proofs"][-1]))  # noqa: T201
        results["build_seconds"] = build
        report = ledger.verify()
        results["verify"] = {"size": report.size, "seconds": report.seconds}
        print(json.dumps(tput), json.dumps(results["verify"]))  # noqa: T201
        ledger.close()
        write(results, name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
