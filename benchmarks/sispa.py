"""SISPA against SISA's vote: accuracy at S in {5, 10, 20}, and forget time broken down.

SISA and SISPA are fitted in one workspace with the same shard configuration and seed, so
their shard models are bitwise identical and any accuracy gap is the aggregator's. Each
forget removes one random training sample from both models, interleaved (SISA, then SISPA,
then SISPA held-out), and ratios are taken per pair because the shared machine drifts.
SISPA's forget time is split into shard retraining, embeddings and aggregator training.

Held-out mode fits its aggregator on a non-deletable split taken from the training pool
(``--heldout`` samples on top of the deletable ones), so it sees more data than SISA: the
table says so.

    .venv/bin/python benchmarks/sispa.py            # full run, ~15 min on 2 idle cores
    .venv/bin/python benchmarks/sispa.py --quick    # seconds-long smoke run
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

from obliviate import SISAConfig, TrainConfig, Workspace, load_dataset
from obliviate.strategies.exact.sispa import SISPA
from obliviate.strategies.exact.sispa_config import SISPAConfig

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DATA = HERE.parents[1] / "shared" / "data"


def _split(name: str, train_size: int, heldout: int, test_size: int) -> tuple[Any, Any, Any]:
    pool = load_dataset(name, data_dir=DATA)
    test = load_dataset(name, split="test", data_dir=DATA)
    rng = np.random.default_rng(0)
    rows = rng.permutation(len(pool.labels))
    train = pool.subset(rows[:train_size])
    held = pool.subset(rows[train_size : train_size + heldout])
    test = test.subset(rng.permutation(len(test.labels))[:test_size])
    return train, held, test


def _accuracy(model: Any, test: Any) -> float:
    return float((model.predict(test.features).labels == test.labels).mean())


def _timed_forget(model: Any, ids: list[str]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = model.forget(sample_ids=ids, reason="benchmark")
    return time.perf_counter() - start, result


def _variants(args: argparse.Namespace, agg_train: TrainConfig) -> dict[str, dict[str, Any]]:
    """SISPA configurations compared with SISA, by name (the SISPAConfig fields they set)."""
    return {
        "sispa": {"aggregator_train": agg_train},
        "sispa_ridge": {
            "aggregator": "ridge",
            "aggregator_input": "logits",
            "aggregator_options": {"l2": args.ridge_l2},
        },
        "sispa_heldout": {
            "aggregator": "ridge",
            "aggregator_input": "logits",
            "aggregator_options": {"l2": args.ridge_l2},
            "aggregator_data": "heldout",
            "heldout_dataset": "held",
        },
    }


def run_case(
    dataset: str, shards: int, data: tuple[Any, Any, Any], args: argparse.Namespace
) -> dict[str, Any]:
    train, held, test = data
    shard_train = TrainConfig(epochs=args.epochs, batch_size=32, lr=0.05, momentum=0.9)
    agg_train = TrainConfig(epochs=args.agg_epochs, batch_size=128, optimizer="adam", lr=1e-3)
    common: dict[str, Any] = {
        "shards": shards,
        "slices": 1,
        "model": "mlp",
        "model_options": {"hidden": (args.hidden,)},
        "train": shard_train,
        "seed": 0,
    }
    variants = _variants(args, agg_train)
    scratch = Path(tempfile.mkdtemp(prefix="obliviate-sispa-"))
    try:
        with Workspace.init(scratch) as ws:
            ws.register(train, dataset="d")
            ws.register(held, dataset="held", deletable=False)
            t0 = time.perf_counter()
            sisa = ws.train(name="sisa", dataset="d", config=SISAConfig(**common))
            row: dict[str, Any] = {
                "dataset": dataset,
                "shards": shards,
                "acc_sisa": _accuracy(sisa, test),
                "fit_seconds_sisa": time.perf_counter() - t0,
            }
            models: dict[str, SISPA] = {}
            for name, fields in variants.items():
                t0 = time.perf_counter()
                model = ws.train(
                    name=name, dataset="d", strategy="sispa", config=SISPAConfig(**common, **fields)
                )
                assert isinstance(model, SISPA) and model.last_timings is not None
                models[name] = model
                row[f"fit_seconds_{name}"] = time.perf_counter() - t0
                row[f"fit_aggregator_seconds_{name}"] = model.last_timings.aggregator
                row[f"acc_{name}"] = _accuracy(model, test)
            rng = np.random.default_rng(shards)
            for _ in range(args.warmup):  # first forgets pay one-time costs (code paths, caches)
                victim = [str(train.sample_ids[rng.integers(len(train.sample_ids))])]
                for model in (sisa, *models.values()):
                    model.forget(sample_ids=victim, reason="warm-up")
            pairs: list[dict[str, float]] = []
            for _ in range(args.reps):
                victim = [str(train.sample_ids[rng.integers(len(train.sample_ids))])]
                pair = {"sisa": _timed_forget(sisa, victim)[0]}
                for name, model in models.items():
                    pair[name] = _timed_forget(model, victim)[0]
                    t = model.last_timings
                    assert t is not None
                    pair[f"{name}_shards"] = t.shards
                    pair[f"{name}_embeddings"] = t.embeddings
                    pair[f"{name}_aggregator"] = t.aggregator
                    pair[f"{name}_ratio"] = pair[name] / pair["sisa"]
                pairs.append(pair)
            for key in pairs[0]:
                row[f"forget_{key}_median"] = statistics.median(p[key] for p in pairs)
            for name in models:
                row[f"forget_{name}_ratio_range"] = [
                    min(p[f"{name}_ratio"] for p in pairs),
                    max(p[f"{name}_ratio"] for p in pairs),
                ]
            row["verify_ok"] = all(ws.verify(model=m).ok for m in ("sisa", *models))
            return row
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


_LABELS = {
    "sispa": "SISPA (MLP on embeddings)",
    "sispa_ridge": "SISPA (ridge on logits)",
    "sispa_heldout": "SISPA held-out\\* (ridge on logits)",
}


def _markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# SISPA vs SISA (vote)",
        "",
        f"Conditions: {meta['conditions']}",
        "",
        "## Accuracy",
        "",
        "| dataset | S | SISA vote | " + " | ".join(_LABELS.values()) + " |",
        "|---|---|---|" + "---|" * len(_LABELS),
    ]
    for r in rows:
        accs = " | ".join(f"{r[f'acc_{name}']:.4f}" for name in _LABELS)
        lines.append(f"| {r['dataset']} | {r['shards']} | {r['acc_sisa']:.4f} | {accs} |")
    lines += [
        "",
        "## Forget time (median of paired forgets of one random sample)",
        "",
        "| dataset | S | variant | forget s | shards / embeddings / aggregator s | SISA s | "
        "ratio (median, range) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for name, label in _LABELS.items():
            low, high = r[f"forget_{name}_ratio_range"]
            lines.append(
                f"| {r['dataset']} | {r['shards']} | {label} | {r[f'forget_{name}_median']:.3f} | "
                f"{r[f'forget_{name}_shards_median']:.3f} / "
                f"{r[f'forget_{name}_embeddings_median']:.3f} / "
                f"{r[f'forget_{name}_aggregator_median']:.3f} | "
                f"{r['forget_sisa_median']:.3f} | "
                f"{r[f'forget_{name}_ratio_median']:.2f} ({low:.2f}-{high:.2f}) |"
            )
    lines += [
        "",
        f"\\* held-out mode fits the aggregator on {meta['heldout']} extra non-deletable "
        "samples, so it sees more data than SISA.",
        "Ratio = SISPA / SISA forget time per pair (the machine drifts). The shard phase of "
        "SISPA is SISA's retrain of the same shard.",
        "",
        "Target (Fashion-MNIST, S=20): SISPA accuracy > SISA vote and forget time <= 1.5x SISA:",
        "",
    ]
    for name, label in _LABELS.items():
        lines.append(f"- {label}: {meta['targets'].get(name, 'n/a')}")
    return "\n".join(lines) + "\n"


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({r["dataset"] for r in rows})
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 3.6), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        sub = [r for r in rows if r["dataset"] == dataset]
        s = [r["shards"] for r in sub]
        ax.plot(s, [r["acc_sisa"] for r in sub], "o-", label="SISA vote")
        for name, marker in zip(_LABELS, ("s-", "d-", "^--"), strict=True):
            label = _LABELS[name].replace("\\", "")
            ax.plot(s, [r[f"acc_{name}"] for r in sub], marker, label=label)
        ax.set_title(dataset)
        ax.set_xlabel("shards S")
        ax.set_ylabel("test accuracy")
        ax.set_xticks(s)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    parser.add_argument("--train-size", type=int, default=6000)
    parser.add_argument("--heldout", type=int, default=1000)
    parser.add_argument("--test-size", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--agg-epochs", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1, help="untimed forgets per model first")
    parser.add_argument("--ridge-l2", type=float, default=1e-3)
    parser.add_argument("--shards", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--datasets", nargs="+", default=["mnist", "fashion_mnist"])
    parser.add_argument("--out", default="sispa")
    args = parser.parse_args()
    if args.quick:
        args.train_size, args.heldout, args.test_size = 600, 200, 300
        args.epochs, args.agg_epochs, args.reps, args.shards = 2, 2, 1, [5]
        args.warmup = 0
        args.datasets, args.out = ["fashion_mnist"], "sispa_quick"
    torch.use_deterministic_algorithms(True)
    started = time.perf_counter()
    rows = []
    for name in args.datasets:
        data = _split(name, args.train_size, args.heldout, args.test_size)
        for shards in args.shards:
            rows.append(run_case(name, shards, data, args))
            print(json.dumps(rows[-1]), flush=True)
    target = [r for r in rows if r["dataset"] == "fashion_mnist" and r["shards"] == 20]
    targets: dict[str, str] = {}
    for name in _LABELS:
        if target:
            better = target[0][f"acc_{name}"] > target[0]["acc_sisa"]
            ratio = target[0][f"forget_{name}_ratio_median"]
            targets[name] = (
                f"accuracy {target[0][f'acc_{name}']:.4f} vs {target[0]['acc_sisa']:.4f} "
                f"({'met' if better else 'missed'}); forget ratio {ratio:.2f} "
                f"({'met' if ratio <= 1.5 else 'missed'})"
            )
    meta = {
        "conditions": (
            f"torch threads={torch.get_num_threads()}, executor inline; "
            f"train={args.train_size}, held-out={args.heldout}, test={args.test_size}; "
            f"MLP hidden={args.hidden}, {args.epochs} shard epochs, {args.agg_epochs} epochs "
            f"for the MLP aggregator, ridge l2={args.ridge_l2}; {args.warmup} untimed warm-up "
            f"forget(s), then {args.reps} paired forgets per case; wall "
            f"{time.perf_counter() - started:.0f} s"
        ),
        "heldout": args.heldout,
        "args": vars(args),
        "targets": targets,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    (RESULTS / f"{args.out}.md").write_text(_markdown(rows, meta))
    _plot(rows, RESULTS / f"{args.out}.png")
    print(_markdown(rows, meta))


if __name__ == "__main__":
    main()
