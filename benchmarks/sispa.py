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
    scratch = Path(tempfile.mkdtemp(prefix="obliviate-sispa-"))
    try:
        with Workspace.init(scratch) as ws:
            ws.register(train, dataset="d")
            ws.register(held, dataset="held", deletable=False)
            t0 = time.perf_counter()
            sisa = ws.train(name="sisa", dataset="d", config=SISAConfig(**common))
            t1 = time.perf_counter()
            sispa = ws.train(
                name="sispa",
                dataset="d",
                strategy="sispa",
                config=SISPAConfig(**common, aggregator_train=agg_train),
            )
            t2 = time.perf_counter()
            sispa_h = ws.train(
                name="sispa_h",
                dataset="d",
                strategy="sispa",
                config=SISPAConfig(
                    **common,
                    aggregator=args.heldout_aggregator,
                    aggregator_train=agg_train,
                    aggregator_data="heldout",
                    heldout_dataset="held",
                ),
            )
            assert isinstance(sispa, SISPA) and isinstance(sispa_h, SISPA)
            fit_timings = sispa.last_timings
            row: dict[str, Any] = {
                "dataset": dataset,
                "shards": shards,
                "acc_sisa_vote": _accuracy(sisa, test),
                "acc_sispa": _accuracy(sispa, test),
                "acc_sispa_heldout": _accuracy(sispa_h, test),
                "fit_seconds_sisa": t1 - t0,
                "fit_seconds_sispa": t2 - t1,
                "fit_aggregator_seconds": fit_timings.aggregator if fit_timings else None,
            }
            rng = np.random.default_rng(shards)
            pairs: list[dict[str, float]] = []
            for _ in range(args.reps):
                victim = [str(train.sample_ids[rng.integers(len(train.sample_ids))])]
                s_sisa, _ = _timed_forget(sisa, victim)
                s_sispa, _ = _timed_forget(sispa, victim)
                t = sispa.last_timings
                s_held, _ = _timed_forget(sispa_h, victim)
                th = sispa_h.last_timings
                assert t is not None and th is not None
                pairs.append(
                    {
                        "sisa": s_sisa,
                        "sispa": s_sispa,
                        "sispa_shards": t.shards,
                        "sispa_embeddings": t.embeddings,
                        "sispa_aggregator": t.aggregator,
                        "sispa_heldout": s_held,
                        "heldout_embeddings": th.embeddings,
                        "heldout_aggregator": th.aggregator,
                        "ratio": s_sispa / s_sisa,
                        "ratio_heldout": s_held / s_sisa,
                    }
                )
            for key in pairs[0]:
                row[f"forget_{key}_median"] = statistics.median(p[key] for p in pairs)
            row["forget_ratio_range"] = [
                min(p["ratio"] for p in pairs),
                max(p["ratio"] for p in pairs),
            ]
            row["verify_ok"] = all(ws.verify(model=m).ok for m in ("sisa", "sispa", "sispa_h"))
            return row
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# SISPA vs SISA (vote)",
        "",
        f"Conditions: {meta['conditions']}",
        "",
        "| dataset | S | acc SISA vote | acc SISPA | acc SISPA held-out\\* | forget SISA s | "
        "forget SISPA s (shards / emb / agg) | ratio | forget held-out s | ratio held-out |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['shards']} | {r['acc_sisa_vote']:.4f} | {r['acc_sispa']:.4f} | "
            f"{r['acc_sispa_heldout']:.4f} | {r['forget_sisa_median']:.3f} | "
            f"{r['forget_sispa_median']:.3f} ({r['forget_sispa_shards_median']:.3f} / "
            f"{r['forget_sispa_embeddings_median']:.3f} / "
            f"{r['forget_sispa_aggregator_median']:.3f}) | {r['forget_ratio_median']:.2f} | "
            f"{r['forget_sispa_heldout_median']:.3f} | "
            f"{r['forget_ratio_heldout_median']:.2f} |"
        )
    lines += [
        "",
        f"\\* held-out mode fits the aggregator on {meta['heldout']} extra non-deletable samples "
        f"({meta['args']['heldout_aggregator']} aggregator).",
        "Times are medians of paired forgets of one random sample; ratio = SISPA / SISA per pair.",
        "",
        f"Target (Fashion-MNIST, S=20): SISPA accuracy > SISA vote: {meta['target_accuracy']}; "
        f"forget time <= 1.5x SISA: {meta['target_time']} (held-out mode: "
        f"{meta['target_time_heldout']}).",
    ]
    return "\n".join(lines) + "\n"


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({r["dataset"] for r in rows})
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 3.6), squeeze=False)
    for ax, name in zip(axes[0], datasets, strict=True):
        sub = [r for r in rows if r["dataset"] == name]
        s = [r["shards"] for r in sub]
        ax.plot(s, [r["acc_sisa_vote"] for r in sub], "o-", label="SISA vote")
        ax.plot(s, [r["acc_sispa"] for r in sub], "s-", label="SISPA (train)")
        ax.plot(s, [r["acc_sispa_heldout"] for r in sub], "^--", label="SISPA (held-out)")
        ax.set_title(name)
        ax.set_xlabel("shards S")
        ax.set_ylabel("test accuracy")
        ax.set_xticks(s)
        ax.legend()
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
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--heldout-aggregator", default="linear", choices=["mlp", "linear"])
    parser.add_argument("--shards", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--datasets", nargs="+", default=["mnist", "fashion_mnist"])
    parser.add_argument("--out", default="sispa")
    args = parser.parse_args()
    if args.quick:
        args.train_size, args.heldout, args.test_size = 600, 200, 300
        args.epochs, args.agg_epochs, args.reps, args.shards = 2, 2, 1, [5]
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
    meta = {
        "conditions": (
            f"CPU shared with other agents (torch threads={torch.get_num_threads()}); "
            f"train={args.train_size}, held-out={args.heldout}, test={args.test_size}; "
            f"MLP hidden={args.hidden}, {args.epochs} shard epochs, {args.agg_epochs} aggregator "
            f"epochs; held-out variant uses the {args.heldout_aggregator!r} aggregator; "
            f"{args.reps} paired forgets per case; wall {time.perf_counter() - started:.0f} s"
        ),
        "heldout": args.heldout,
        "args": vars(args),
        "target_accuracy": (
            "n/a" if not target else str(target[0]["acc_sispa"] > target[0]["acc_sisa_vote"])
        ),
        "target_time": "n/a" if not target else str(target[0]["forget_ratio_median"] <= 1.5),
        "target_time_heldout": (
            "n/a" if not target else str(target[0]["forget_ratio_heldout_median"] <= 1.5)
        ),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    (RESULTS / f"{args.out}.md").write_text(_markdown(rows, meta))
    _plot(rows, RESULTS / f"{args.out}.png")
    print(_markdown(rows, meta))


if __name__ == "__main__":
    main()
