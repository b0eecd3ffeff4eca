"""The online random-subset ensemble on Fashion-MNIST chunks, next to one larger model.

Data arrives in chunks. After each chunk: test accuracy of a K-member ensemble (each member
an MLP on a seeded half of every chunk) and of one wider MLP trained on every sample so far
(the same strategy with one member and subset fraction 1). By default both replay: the
stage of chunk c trains on (their subsets of) chunks 0..c; ``--no-replay`` streams. Then
the cost of deleting one sample, paired: the ensemble (only members that saw it retrain,
from the chunk holding it) against the single model (which always saw it), for a sample of
the first and of the last chunk. Writes benchmarks/results/online_ensemble.{json,md,png}.

    .venv/bin/python benchmarks/online_ensemble.py           # ~10 min on 2 idle cores
    .venv/bin/python benchmarks/online_ensemble.py --quick   # seconds-long smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from obliviate import TrainConfig, Workspace, load_dataset
from obliviate.strategies.exact.ensemble import OnlineEnsemble
from obliviate.strategies.exact.ensemble_config import EnsembleConfig

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DATA = HERE.parents[1] / "shared" / "data"


def _accuracy(model: Any, test: Any) -> float:
    return float((model.predict(test.features).labels == test.labels).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--chunks", type=int, default=5)
    parser.add_argument("--chunk-size", type=int, default=2000)
    parser.add_argument("--test-size", type=int, default=3000)
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--fraction", type=float, default=0.5)
    parser.add_argument("--member-hidden", type=int, default=64)
    parser.add_argument("--single-hidden", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per chunk")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--no-replay", action="store_true", help="train each chunk stage on that chunk only"
    )
    parser.add_argument("--out", default="online_ensemble")
    args = parser.parse_args()
    if args.quick:
        args.chunks, args.chunk_size, args.test_size, args.epochs, args.reps = 3, 200, 300, 1, 1
        args.out = "online_ensemble_quick"
    torch.use_deterministic_algorithms(True)
    started = time.perf_counter()
    pool = load_dataset(args.dataset, data_dir=DATA)
    test = load_dataset(args.dataset, split="test", data_dir=DATA)
    rng = np.random.default_rng(0)
    rows = rng.permutation(len(pool.labels))
    chunks = [
        pool.subset(rows[c * args.chunk_size : (c + 1) * args.chunk_size])
        for c in range(args.chunks)
    ]
    test = test.subset(rng.permutation(len(test.labels))[: args.test_size])
    train = TrainConfig(epochs=args.epochs, batch_size=32, lr=0.05, momentum=0.9)
    ens_cfg = EnsembleConfig(
        members=args.members,
        subset_fraction=args.fraction,
        model_options={"hidden": (args.member_hidden,)},
        train=train,
        replay=not args.no_replay,
    )
    one_cfg = EnsembleConfig(
        members=1,
        subset_fraction=1.0,
        model_options={"hidden": (args.single_hidden,)},
        train=train,
        replay=not args.no_replay,
    )
    scratch = Path(tempfile.mkdtemp(prefix="obliviate-ens-"))
    curve: list[dict[str, float]] = []
    try:
        with Workspace.init(scratch) as ws:
            ws.register(chunks[0], dataset="d")
            ens = ws.train(name="ens", dataset="d", strategy="ensemble", config=ens_cfg)
            one = ws.train(name="one", dataset="d", strategy="ensemble", config=one_cfg)
            assert isinstance(ens, OnlineEnsemble) and isinstance(one, OnlineEnsemble)
            for c in range(args.chunks):
                if c:
                    ws.register(chunks[c], dataset="d")
                    t0 = time.perf_counter()
                    ens.add_data()
                    t1 = time.perf_counter()
                    one.add_data()
                    t2 = time.perf_counter()
                else:
                    t0 = t1 = t2 = 0.0
                curve.append(
                    {
                        "chunk": c + 1,
                        "samples": (c + 1) * args.chunk_size,
                        "acc_ensemble": _accuracy(ens, test),
                        "acc_single": _accuracy(one, test),
                        "add_seconds_ensemble": t1 - t0,
                        "add_seconds_single": t2 - t1,
                    }
                )
                print(json.dumps(curve[-1]), flush=True)
            costs: dict[str, list[dict[str, float]]] = {"first": [], "last": []}
            for rep in range(args.reps):
                for where, chunk in (("first", chunks[0]), ("last", chunks[-1])):
                    victim = [str(chunk.sample_ids[rep])]
                    t0 = time.perf_counter()
                    r_ens = ens.forget(sample_ids=victim, reason="benchmark")
                    t1 = time.perf_counter()
                    r_one = one.forget(sample_ids=victim, reason="benchmark")
                    t2 = time.perf_counter()
                    costs[where].append(
                        {
                            "ensemble": t1 - t0,
                            "single": t2 - t1,
                            "members_retrained": len(r_ens.affected_components),
                            "passes_ensemble": r_ens.sample_passes,
                            "passes_single": r_one.sample_passes,
                        }
                    )
            verify = ws.verify(model="ens").ok and ws.verify(model="one").ok
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    deletion = {
        where: {k: statistics.median(c[k] for c in runs) for k in runs[0]}
        for where, runs in costs.items()
    }
    meta = {
        "conditions": (
            f"2 cores, load average {os.getloadavg()[0]:.1f} at the end "
            f"(torch threads={torch.get_num_threads()}); "
            f"{args.dataset}: {args.chunks} chunks x {args.chunk_size}, test {args.test_size}; "
            f"ensemble {args.members} x MLP({args.member_hidden}) on {args.fraction:.0%} of each "
            f"chunk; single MLP({args.single_hidden}) on all; {args.epochs} epochs per chunk, "
            f"replay={not args.no_replay}; {args.reps} paired deletions per position; "
            f"wall {time.perf_counter() - started:.0f} s"
        ),
        "args": vars(args),
        "verify_ok": verify,
    }
    RESULTS.mkdir(exist_ok=True)
    payload = {"meta": meta, "curve": curve, "deletion": deletion, "deletion_runs": costs}
    (RESULTS / f"{args.out}.json").write_text(json.dumps(payload, indent=2))
    lines = [
        "# Online random-subset ensemble",
        "",
        f"Conditions: {meta['conditions']}",
        "",
        "| chunk | samples so far | acc ensemble | acc single | add s (ens) | add s (single) |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {p['chunk']} | {p['samples']} | {p['acc_ensemble']:.4f} | {p['acc_single']:.4f} | "
        f"{p['add_seconds_ensemble']:.2f} | {p['add_seconds_single']:.2f} |"
        for p in curve
    ]
    lines += [
        "",
        "Deletion of one sample (medians of paired runs):",
        "",
        "| sample from | ensemble s | single s | members retrained | passes (ens) | "
        "passes (single) |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {where} chunk | {d['ensemble']:.2f} | {d['single']:.2f} | "
        f"{d['members_retrained']:.0f} of {args.members} | {d['passes_ensemble']:.0f} | "
        f"{d['passes_single']:.0f} |"
        for where, d in deletion.items()
    ]
    lines.append(f"\nAll versions verified free of deleted samples: {verify}.")
    (RESULTS / f"{args.out}.md").write_text("\n".join(lines) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    x = [p["samples"] for p in curve]
    ax.plot(x, [p["acc_ensemble"] for p in curve], "o-", label=f"ensemble {args.members}x")
    ax.plot(x, [p["acc_single"] for p in curve], "s--", label="single wider model")
    ax.set_xlabel("training samples so far")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{args.dataset}: accuracy after each chunk")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / f"{args.out}.png", dpi=120)
    plt.close(fig)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
