"""SISA fit wall time: the local process pool against in-process training, over S.

Fits a SISA model on an MNIST subset with S shards, once with the inline executor and once
with a 2-worker process pool (spawned once and warmed up, so pool start-up is reported
separately), alternating in pairs because the shared machine drifts. Also times the
batched trainer both ways at S=10 (one group per worker). Both executors give bitwise the
same checkpoints (checked here on the ids). Writes benchmarks/results/executors.{json,md,png}.

    .venv/bin/python benchmarks/executors.py           # several minutes on 2 cores
    .venv/bin/python benchmarks/executors.py --quick   # well under a minute
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from obliviate import SampleSet, SISAConfig, TrainConfig, Workspace, load_dataset
from obliviate.training.executors import Executor, InlineExecutor, ProcessExecutor

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DATA = HERE.parents[1] / "shared" / "data"


def _square(x: int) -> int:
    return x * x


def fit_seconds(
    scratch: Path, data: SampleSet, config: SISAConfig, executor: Executor
) -> tuple[float, dict[str, str | None]]:
    root = Path(tempfile.mkdtemp(dir=scratch))
    try:
        with Workspace.init(root) as ws:
            ws.register(data, dataset="mnist")
            model = ws.create(name="m", dataset="mnist", config=config)
            model.context = replace(model.context, executor=executor)
            start = time.perf_counter()
            model.fit()
            seconds = time.perf_counter() - start
            version = ws.provenance.active_version("m")
            assert version is not None
            return seconds, dict(version.components)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny run")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    torch.use_deterministic_algorithms(True)
    samples, epochs, pairs, shard_counts = (
        (1000, 1, 1, [2, 5]) if args.quick else (6000, 2, 3, [2, 5, 10, 20])
    )
    full = load_dataset("mnist", data_dir=DATA)
    data = full.subset(list(range(samples)))
    train = TrainConfig(epochs=epochs, batch_size=64, lr=0.05, momentum=0.9)
    inline = InlineExecutor(threads=1)
    pool = ProcessExecutor(workers=args.workers, threads_per_worker=1)
    load_before = os.getloadavg()
    start = time.perf_counter()
    pool.run(fn=_square, tasks=list(range(args.workers)))
    spawn_seconds = time.perf_counter() - start
    scratch = Path(tempfile.mkdtemp(prefix="obliviate-executors-"))
    warm = SISAConfig(shards=args.workers, model="mlp", train=replace(train, epochs=1))
    fit_seconds(scratch, data.subset(list(range(200))), warm, pool)  # workers import obliviate
    rows: list[dict[str, Any]] = []
    try:
        cases = [(s, "sequential") for s in shard_counts] + [(10, "batched")]
        for shards, trainer in cases:
            config = SISAConfig(
                shards=shards,
                slices=1,
                model="mlp",
                train=train,
                trainer=trainer,
                batch_slots=max(shards // args.workers, 1) if trainer == "batched" else None,
            )
            times: dict[str, list[float]] = {"inline": [], "process": []}
            ids: dict[str, dict[str, str | None]] = {}
            for pair in range(pairs):
                order = ("inline", "process") if pair % 2 == 0 else ("process", "inline")
                for which in order:
                    executor: Executor = inline if which == "inline" else pool
                    seconds, ids[which] = fit_seconds(scratch, data, config, executor)
                    times[which].append(seconds)
            ratios = [a / b for a, b in zip(times["inline"], times["process"], strict=True)]
            rows.append(
                {
                    "shards": shards,
                    "trainer": trainer,
                    "inline_s": statistics.median(times["inline"]),
                    "process_s": statistics.median(times["process"]),
                    "speedup_median": statistics.median(ratios),
                    "speedup_range": [min(ratios), max(ratios)],
                    "identical_checkpoints": ids["inline"] == ids["process"],
                    "all_inline_s": times["inline"],
                    "all_process_s": times["process"],
                }
            )
    finally:
        pool.close()
        shutil.rmtree(scratch, ignore_errors=True)
    report: dict[str, Any] = {
        "conditions": {
            "cpu_count": os.cpu_count(),
            "workers": args.workers,
            "threads_per_worker": 1,
            "inline_torch_threads": 1,
            "pool_spawn_seconds": spawn_seconds,
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
            "samples": samples,
            "train": train.to_dict(),
            "quick": args.quick,
        },
        "results": rows,
    }
    suffix = "_quick" if args.quick else ""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"executors{suffix}.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# SISA fit: process pool vs inline",
        "",
        f"{samples} MNIST samples, MLP (128 hidden), 1 slice, {epochs} epochs; pool of "
        f"{args.workers} spawned workers x 1 torch thread (start-up {spawn_seconds:.1f} s, "
        f"excluded); inline runs with 1 torch thread too (same bits); {pairs} alternating "
        f"pairs; load average {load_before[0]:.1f} before, "
        f"{report['conditions']['loadavg_after'][0]:.1f} after (shared machine).",
        "",
        "| S | trainer | inline s | process s | speed-up (median, range) | same checkpoints |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['shards']} | {r['trainer']} | {r['inline_s']:.2f} | {r['process_s']:.2f} | "
            f"{r['speedup_median']:.2f}x ({r['speedup_range'][0]:.2f}-{r['speedup_range'][1]:.2f})"
            f" | {'yes' if r['identical_checkpoints'] else 'NO'} |"
        )
    (RESULTS / f"executors{suffix}.md").write_text("\n".join(lines) + "\n")
    seq = [r for r in rows if r["trainer"] == "sequential"]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot([r["shards"] for r in seq], [r["inline_s"] for r in seq], "o-", label="inline")
    ax.plot([r["shards"] for r in seq], [r["process_s"] for r in seq], "s-", label="process pool")
    ax.set_xlabel("shards S (same total data)")
    ax.set_ylabel("fit wall time (s)")
    ax.set_title("SISA fit, sequential trainer")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / f"executors{suffix}.png", dpi=120)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
