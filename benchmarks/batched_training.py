"""Batched (torch.func) shard training against one shard at a time, on MNIST.

Trains S shard models (MLP and small CNN) on disjoint MNIST shards, once with the
sequential loop (``train_epochs`` per shard, the way SISA trains) and once with
``train_batched`` (all shards in one vmapped model), alternating the two in pairs because
the shared machine drifts. Reports the median paired throughput ratio (sample-passes per
second, batched / sequential) and the test accuracy of both ensembles (majority vote) and
of the average shard. Writes benchmarks/results/batched_training.{json,md,png}.

    .venv/bin/python benchmarks/batched_training.py           # a few minutes on 2 cores
    .venv/bin/python benchmarks/batched_training.py --quick   # seconds
    .venv/bin/python benchmarks/batched_training.py --threads 1   # writes ..._t1.*
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from obliviate import load_dataset
from obliviate.models import build_model
from obliviate.training import TrainConfig, make_optimizer, make_scheduler, train_epochs
from obliviate.training.batched import SlotRun, train_batched

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DATA = HERE.parents[1] / "shared" / "data"
# (label, zoo kind, options): small shards, where one-at-a-time training is bound by
# per-step overhead, and wider ones, where it is bound by arithmetic.
MODELS: list[tuple[str, str, dict[str, Any]]] = [
    ("mlp-32", "mlp", {"hidden": (32,)}),
    ("mlp-128", "mlp", {"hidden": (128,)}),
    ("cnn-8/16", "cnn", {"channels": (8, 16), "hidden": 32}),
    ("cnn-16/32", "cnn", {"channels": (16, 32), "hidden": 128}),
]


def _slots(
    kind: str,
    options: dict[str, Any],
    x: torch.Tensor,
    y: torch.Tensor,
    shards: int,
    config: TrainConfig,
) -> list[SlotRun]:
    runs = []
    for s, (xs, ys) in enumerate(zip(x.chunk(shards), y.chunk(shards), strict=True)):
        torch.manual_seed(s)
        model = build_model(kind, input_shape=tuple(x.shape[1:]), num_classes=10, **options)
        optimizer = make_optimizer(config, model)
        keys = np.random.default_rng(s).integers(0, 2**63, len(xs), dtype=np.uint64)
        runs.append(
            SlotRun(
                name=f"shard-{s}",
                model=model,
                optimizer=optimizer,
                scheduler=make_scheduler(config, optimizer, total_epochs=config.epochs),
                features=xs.contiguous(),
                labels=ys.contiguous(),
                order_keys=keys,
                stage_sizes=[len(xs)],
                first_stage=0,
                last_stage=0,
                order_seed=s,
            )
        )
    return runs


def _sequential(runs: list[SlotRun], config: TrainConfig) -> None:
    for run in runs:
        train_epochs(
            model=run.model,
            optimizer=run.optimizer,
            scheduler=run.scheduler,
            features=run.features,
            labels=run.labels,
            order_keys=run.order_keys,
            config=config,
            seed=run.order_seed,
            first_epoch=0,
            epochs=config.epochs,
        )


def _batched(runs: list[SlotRun], config: TrainConfig) -> None:
    train_batched(
        slots=runs,
        config=config,
        stage_epochs=[config.epochs],
        on_stage_end=lambda slot, stage, stats: None,
    )


def _accuracy(runs: list[SlotRun], x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    votes = torch.zeros(len(x), 10)
    shard_acc = []
    with torch.inference_mode():
        for run in runs:
            run.model.eval()
            pred = run.model(x).argmax(1)
            shard_acc.append(float((pred == y).float().mean()))
            votes[torch.arange(len(x)), pred] += 1
    return float((votes.argmax(1) == y).float().mean()), float(np.mean(shard_acc))


def measure(
    label: str,
    kind: str,
    options: dict[str, Any],
    shards: int,
    per_shard: int,
    config: TrainConfig,
    pairs: int,
) -> dict[str, Any]:
    train = load_dataset("mnist", data_dir=DATA)
    test = load_dataset("mnist", split="test", data_dir=DATA)
    n = shards * per_shard
    shape = (-1, 784) if kind == "mlp" else (-1, 1, 28, 28)
    x = torch.from_numpy(train.features[:n]).reshape(shape)
    y = torch.from_numpy(train.labels[:n])
    xt = torch.from_numpy(test.features[:2000]).reshape(shape)
    yt = torch.from_numpy(test.labels[:2000])
    passes = n * config.epochs
    rows = []
    accuracy: dict[str, tuple[float, float]] = {}
    for pair in range(pairs):
        order = ("sequential", "batched") if pair % 2 == 0 else ("batched", "sequential")
        timing = {}
        for which in order:
            runs = _slots(kind, options, x, y, shards, config)
            start = time.perf_counter()
            (_sequential if which == "sequential" else _batched)(runs, config)
            timing[which] = time.perf_counter() - start
            accuracy[which] = _accuracy(runs, xt, yt)
        rows.append(
            {
                "sequential_s": timing["sequential"],
                "batched_s": timing["batched"],
                "ratio": timing["sequential"] / timing["batched"],
            }
        )
    ratios = [r["ratio"] for r in rows]
    return {
        "model": label,
        "batch_size": config.batch_size,
        "shards": shards,
        "samples": n,
        "sample_passes": passes,
        "pairs": rows,
        "median_ratio": statistics.median(ratios),
        "min_ratio": min(ratios),
        "max_ratio": max(ratios),
        "sequential_passes_per_s": passes / statistics.median(r["sequential_s"] for r in rows),
        "batched_passes_per_s": passes / statistics.median(r["batched_s"] for r in rows),
        "vote_accuracy": {k: v[0] for k, v in accuracy.items()},
        "mean_shard_accuracy": {k: v[1] for k, v in accuracy.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny run (seconds)")
    parser.add_argument("--shards", type=int, default=10)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    per_shard, epochs, pairs = (100, 1, 1) if args.quick else (500, 2, 3)
    load_before = os.getloadavg()
    results = []
    for batch in args.batch_sizes:
        config = TrainConfig(epochs=epochs, batch_size=batch, lr=0.05, momentum=0.9)
        for label, kind, options in MODELS:
            measure(label, kind, options, args.shards, 20, config, 1)  # warm-up (vmap, kernels)
            results.append(measure(label, kind, options, args.shards, per_shard, config, pairs))
            print(label, batch, f"{results[-1]['median_ratio']:.2f}x", flush=True)
    report: dict[str, Any] = {
        "conditions": {
            "torch_threads": args.threads,
            "cpu_count": os.cpu_count(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
            "quick": args.quick,
            "train": {"epochs": epochs, "lr": 0.05, "momentum": 0.9},
            "note": "shared machine; paired, alternating order; medians of paired ratios",
        },
        "results": results,
    }
    suffix = ("_quick" if args.quick else "") + (f"_t{args.threads}" if args.threads == 1 else "")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"batched_training{suffix}.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Batched (torch.func) vs one-shard-at-a-time training",
        "",
        f"S={args.shards} shards, {per_shard} MNIST samples each, {epochs} epochs, SGD "
        f"(momentum 0.9), torch threads {args.threads}, {pairs} alternating pairs after a "
        "warm-up; load average "
        f"{load_before[0]:.1f} before, {report['conditions']['loadavg_after'][0]:.1f} after "
        "(shared machine).",
        "",
        "| model | batch | sequential passes/s | batched passes/s | speed-up (median, range) "
        "| vote acc. seq / batched | mean shard acc. seq / batched |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['model']} | {r['batch_size']} | {r['sequential_passes_per_s']:.0f} | "
            f"{r['batched_passes_per_s']:.0f} | {r['median_ratio']:.2f}x "
            f"({r['min_ratio']:.2f}-{r['max_ratio']:.2f}) | "
            f"{r['vote_accuracy']['sequential']:.3f} / {r['vote_accuracy']['batched']:.3f} | "
            f"{r['mean_shard_accuracy']['sequential']:.3f} / "
            f"{r['mean_shard_accuracy']['batched']:.3f} |"
        )
    (RESULTS / f"batched_training{suffix}.md").write_text("\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    labels = sorted({r["model"] for r in results}, key=[m[0] for m in MODELS].index)
    batches = sorted({r["batch_size"] for r in results})
    xs = np.arange(len(labels))
    width = 0.8 / len(batches)
    for i, batch in enumerate(batches):
        ratios = [
            next(r["median_ratio"] for r in results if r["model"] == m and r["batch_size"] == batch)
            for m in labels
        ]
        ax.bar(xs + (i - (len(batches) - 1) / 2) * width, ratios, width, label=f"batch {batch}")
    ax.axhline(2.0, color="red", linestyle="--", linewidth=0.8, label="target 2x")
    ax.axhline(1.0, color="grey", linestyle=":", linewidth=0.8)
    ax.set_xticks(xs, labels)
    ax.set_ylabel("batched / sequential throughput")
    ax.set_title(f"S={args.shards} shards, {args.threads} torch thread(s)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / f"batched_training{suffix}.png", dpi=120)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
