"""SISA on MNIST with the small CNN: accuracy, forget cost, prediction, overhead, rollback.

Every time is a ratio against a baseline measured in the same run (machines are noisy).
Writes benchmarks/results/sisa_mnist.{json,md} and PNG plots.

    .venv/bin/python benchmarks/sisa_mnist.py            # the full run (~25 min on 2 cores)
    .venv/bin/python benchmarks/sisa_mnist.py --quick    # a smoke run on a subset
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from obliviate import RetrainConfig, SampleSet, SISAConfig, TrainConfig, Workspace, load_dataset
from obliviate.models import build_model

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DATA = HERE.parents[1] / "shared" / "data"


def accuracy(model: Any, test: SampleSet, version: int | None = None) -> float:
    return float(np.mean(model.predict(test.features, version=version).labels == test.labels))


def timed_forget(root: Path, name: str, ids: list[str]) -> tuple[float, Any]:
    """End to end: open the workspace, load the model, forget, close (data loading included)."""
    start = time.perf_counter()
    with Workspace.open(root) as ws:
        result = ws.model(name).forget(sample_ids=ids, reason="benchmark")
    return time.perf_counter() - start, result


def plain_loop_seconds(train: SampleSet, config: TrainConfig) -> float:
    """The same model, data and epochs in a bare PyTorch loop (the overhead baseline)."""
    x = torch.from_numpy(train.features)
    y = torch.from_numpy(train.labels)
    torch.manual_seed(0)
    model = build_model("cnn", input_shape=train.feature_shape, num_classes=10)
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum)
    start = time.perf_counter()
    for _ in range(config.epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), config.batch_size):
            idx = perm[i : i + config.batch_size]
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            torch.autograd.backward(loss)
            opt.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="6,000 samples, 1 epoch")
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args()
    torch.use_deterministic_algorithms(True)
    train = load_dataset("mnist", data_dir=DATA)
    test = load_dataset("mnist", split="test", data_dir=DATA)
    epochs = args.epochs
    grid = [(1, 1), (1, 5), (5, 1), (5, 5), (10, 1), (10, 5), (20, 1), (20, 5)]
    if args.quick:
        train = train.subset(np.arange(6000))
        test = test.subset(np.arange(2000))
        epochs = 1
        grid = [(1, 1), (10, 5)]
    config = TrainConfig(epochs=epochs, batch_size=64, lr=0.05, momentum=0.9)
    rng = np.random.default_rng(0)
    scratch = Path(tempfile.mkdtemp(prefix="obliviate-bench-"))
    out: dict[str, Any] = {
        "setup": {
            "dataset": "mnist",
            "train": len(train),
            "test": len(test),
            "model": "cnn (strided, GroupNorm)",
            "train_config": config.to_dict(),
            "torch_threads": torch.get_num_threads(),
        },
        "runs": [],
    }
    try:
        # Baselines: a monolithic model and its full retrain, end to end.
        mono_root = scratch / "mono"
        with Workspace.init(mono_root) as ws:
            ws.register(train, dataset="mnist")
            start = time.perf_counter()
            mono = ws.train(
                name="mono",
                dataset="mnist",
                strategy="retrain",
                config=RetrainConfig(model="cnn", train=config),
            )
            mono_fit = time.perf_counter() - start
            mono_acc = accuracy(mono, test)
        victim = str(train.sample_ids[int(rng.integers(len(train)))])
        full_retrain, _ = timed_forget(mono_root, "mono", [victim])
        plain = plain_loop_seconds(train, config)
        out["baseline"] = {
            "monolithic_fit_seconds": mono_fit,
            "full_retrain_seconds": full_retrain,
            "monolithic_test_accuracy": mono_acc,
            "plain_pytorch_loop_seconds": plain,
        }
        print(
            f"monolithic: acc {mono_acc:.4f} fit {mono_fit:.1f}s full retrain {full_retrain:.1f}s"
        )
        rollbacks: list[float] = []
        for shards, slices in grid:
            root = scratch / f"s{shards}r{slices}"
            sisa_config = SISAConfig(shards=shards, slices=slices, model="cnn", train=config)
            with Workspace.init(root) as ws:
                ws.register(train, dataset="mnist")
                start = time.perf_counter()
                model = ws.train(name="m", dataset="mnist", config=sisa_config)
                fit = time.perf_counter() - start
                acc = accuracy(model, test)
            run: dict[str, Any] = {
                "shards": shards,
                "slices": slices,
                "fit_seconds": fit,
                "test_accuracy": acc,
                "accuracy_gap_to_monolithic": mono_acc - acc,
                "forgets": [],
            }
            remaining = list(train.sample_ids.tolist())
            trials = [1, 1, 1, 10, 100] if shards > 1 else [1, 100]
            for size in trials:
                picks = rng.choice(len(remaining), size=size, replace=False)
                ids = [remaining[i] for i in picks]
                remaining = [r for r in remaining if r not in set(ids)]
                seconds, result = timed_forget(root, "m", ids)
                rollbacks.append(result.rollback_seconds)
                record = {
                    "batch": size,
                    "seconds": seconds,
                    "speedup_vs_full_retrain": full_retrain / seconds,
                    "ratio_to_full_retrain": seconds / full_retrain,
                    "ratio_to_sisa_refit": seconds / fit,
                    "rollback_seconds": result.rollback_seconds,
                    "shards_retrained": len(result.affected_components),
                    "sample_passes": result.sample_passes,
                }
                if shards == 10 and slices == 5 and size == 1 and "rolled_back_accuracy" not in run:
                    with Workspace.open(root) as ws:
                        m = ws.model("m")
                        run["rolled_back_accuracy"] = accuracy(m, test, result.rolled_back_version)
                        run["retrained_accuracy"] = accuracy(m, test, result.version)
                run["forgets"].append(record)
                print(
                    f"S={shards} R={slices} forget {size}: {seconds:.2f}s "
                    f"({full_retrain / seconds:.1f}x faster than full retrain), "
                    f"rollback {result.rollback_seconds * 1000:.0f} ms"
                )
            if shards == 10 and slices == 5:
                with Workspace.open(root) as ws:
                    m = ws.model("m")
                    start = time.perf_counter()
                    m.predict(test.features)
                    cold = time.perf_counter() - start
                    start = time.perf_counter()
                    m.predict(test.features)
                    warm = time.perf_counter() - start
                run["predict_seconds_cold"] = cold
                run["predict_seconds_warm"] = warm
            if shards == 1 and slices == 1:
                run["overhead_vs_plain_loop"] = fit / plain
            out["runs"].append(run)
            print(f"S={shards} R={slices}: acc {acc:.4f} fit {fit:.1f}s")
        out["rollback_seconds_p50"] = statistics.median(rollbacks)
        out["rollback_seconds_max"] = max(rollbacks)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    suffix = "_quick" if args.quick else ""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"sisa_mnist{suffix}.json").write_text(json.dumps(out, indent=2) + "\n")
    (RESULTS / f"sisa_mnist{suffix}.md").write_text(render(out))
    plot(out, suffix)


def _mean_speedup(run: dict[str, Any], batch: int) -> float:
    values = [f["speedup_vs_full_retrain"] for f in run["forgets"] if f["batch"] == batch]
    return float(np.mean(values)) if values else float("nan")


def _mean_seconds(run: dict[str, Any], batch: int) -> float:
    values = [f["seconds"] for f in run["forgets"] if f["batch"] == batch]
    return float(np.mean(values)) if values else float("nan")


def _fmt(value: float, digits: int = 1) -> str:
    return "-" if value != value else f"{value:.{digits}f}x"


def render(out: dict[str, Any]) -> str:
    base = out["baseline"]
    lines = [
        "# SISA on MNIST (small CNN)",
        "",
        f"Setup: {out['setup']['train']} training and {out['setup']['test']} test images, "
        f"{out['setup']['train_config']['epochs']} epochs, batch "
        f"{out['setup']['train_config']['batch_size']}, {out['setup']['torch_threads']} threads.",
        f"Monolithic model: test accuracy {base['monolithic_test_accuracy']:.2%}, full retrain "
        f"end to end {base['full_retrain_seconds']:.1f}s (the baseline of every ratio).",
        "",
        "| S | R | test acc | gap to mono (pts) | fit (s) | forget 1: speed-up | "
        "forget 1 vs S=1 R=1 forget | forget 10 | forget 100 | forget 100 / SISA refit |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    reference = next(r for r in out["runs"] if r["shards"] == 1 and r["slices"] == 1)
    full_in_sisa = _mean_seconds(reference, 1)
    for run in out["runs"]:
        f100 = [f for f in run["forgets"] if f["batch"] == 100]
        lines.append(
            f"| {run['shards']} | {run['slices']} | {run['test_accuracy']:.2%} | "
            f"{100 * run['accuracy_gap_to_monolithic']:.2f} | {run['fit_seconds']:.1f} | "
            f"{_fmt(_mean_speedup(run, 1))} | {_fmt(full_in_sisa / _mean_seconds(run, 1))} | "
            f"{_fmt(_mean_speedup(run, 10))} | {_fmt(_mean_speedup(run, 100), 2)} | "
            f"{f100[0]['ratio_to_sisa_refit']:.2f} |"
        )
    lines += [
        "",
        "Speed-ups are full-retrain time / forget time, both end to end (workspace open, data "
        "loading, training, checkpoints, registry); forget 1 is the mean of 3 random samples. "
        "'vs S=1 R=1 forget' uses the S=1, R=1 forget of one sample (a full retrain through "
        "the same code path, in the same run) as the baseline instead; the gap between the two "
        "columns shows how far the machine drifted. For drift-free ratios of the targets see "
        "sisa_targets.md (paired measurements).",
        "",
    ]
    for run in out["runs"]:
        if "predict_seconds_cold" in run:
            lines.append(
                f"- Prediction, S={run['shards']} R={run['slices']}: 10,000 test images in "
                f"{run['predict_seconds_cold']:.2f}s cold (checkpoints loaded) and "
                f"{run['predict_seconds_warm']:.2f}s warm."
            )
        if "rolled_back_accuracy" in run:
            lines.append(
                f"- Instant exact forgetting, S={run['shards']} R={run['slices']}: rolled-back "
                f"version accuracy {run['rolled_back_accuracy']:.2%} vs retrained "
                f"{run['retrained_accuracy']:.2%}."
            )
        if "overhead_vs_plain_loop" in run:
            lines.append(
                "- Overhead: S=1 R=1 fit / plain PyTorch loop = "
                f"{run['overhead_vs_plain_loop']:.3f} ({base['plain_pytorch_loop_seconds']:.1f}s "
                "plain)."
            )
    lines.append(
        f"- Rollback to an exact served version: p50 {out['rollback_seconds_p50'] * 1000:.0f} ms, "
        f"max {out['rollback_seconds_max'] * 1000:.0f} ms over every forget above."
    )
    return "\n".join(lines) + "\n"


def plot(out: dict[str, Any], suffix: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for slices, marker in ((1, "o"), (5, "s")):
        runs = [r for r in out["runs"] if r["slices"] == slices]
        shards = [r["shards"] for r in runs]
        left.plot(
            shards,
            [100 * r["test_accuracy"] for r in runs],
            marker=marker,
            label=f"SISA R={slices}",
        )
        for batch, style in ((1, "-"), (10, "--"), (100, ":")):
            right.plot(
                shards,
                [_mean_speedup(r, batch) for r in runs],
                style,
                marker=marker,
                label=f"R={slices}, {batch} deleted",
            )
    left.axhline(
        100 * out["baseline"]["monolithic_test_accuracy"], color="k", ls="--", label="monolithic"
    )
    left.set(
        xlabel="shards S", ylabel="test accuracy (%)", title="Accuracy vs shards", xscale="log"
    )
    right.axhline(1.0, color="k", lw=0.8)
    right.axhline(10.0, color="r", lw=0.8, ls="--", label="10x target")
    right.set(
        xlabel="shards S",
        ylabel="full retrain time / forget time",
        title="Forget speed-up (end to end)",
        xscale="log",
        yscale="log",
    )
    left.legend()
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / f"sisa_mnist{suffix}.png", dpi=120)


if __name__ == "__main__":
    main()
