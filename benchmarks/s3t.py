"""S3T benchmarks: deletion capacity vs B, time to honour one deletion, accuracy vs deletions.

1. Capacity (simulation of the real cut-back code in ``s3t.budget``, no training): uniform
   random deletions, each hitting a uniformly random (shard, slice) cell, for m=5, L=6 and
   cyclic B=1..6. A deletion is *absorbed* when the system honours it exactly without
   training anything and still serves a model afterwards. We count absorbed deletions until
   (a) every shard is exhausted (S3T's rule, retrain only when nothing is left; trend
   m*L*H(m*B)), and (b) the first shard is exhausted (the first retrain under
   ``retrain_when="exhausted"``). SISA baselines under the same definition: SISA as the
   reference code runs it retrains the hit shard on every deletion (0 absorbed); SISA whose
   rolled-back version is served until every shard is empty is S3T with one identity
   sequence (B=1); and the reference repo's ``get_sisa_count`` rule (a shard dies on its
   first hit) gives about m*H(m).
2. Time to honour one deletion: a real S3T model fitted on MNIST with a backbone pretrained
   on Fashion-MNIST training images 0..29,999 (registered non-deletable); >= 50 single-sample
   ``forget`` calls with ``retrain_when="never"`` (no training can happen). Reported: p50/p90
   of the call's wall time and of ``rollback_seconds``.
3. Accuracy vs number of deletions on MNIST test images: S3T (cut-back, never retrained) next
   to SISA (same shards and slices, the same pretrained backbone fine-tuned in full, exact
   retraining of the hit shards after each batch of deletions) on the same data and the same
   deleted ids. SISA's retraining work (sample-passes) is reported alongside.

    .venv/bin/python benchmarks/s3t.py           # full run
    .venv/bin/python benchmarks/s3t.py --quick   # seconds-long smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from obliviate import SISAConfig, TrainConfig, Workspace, load_dataset  # noqa: E402
from obliviate.errors import NotFittedError  # noqa: E402
from obliviate.models.backbone import build_backbone_mlp, pretrain_backbone  # noqa: E402
from obliviate.strategies.exact.s3t import S3TConfig, cyclic, simulate_absorbed  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DATA = Path(os.environ.get("OBLIVIATE_DATA_DIR", "/work/shared/data"))


def harmonic(n: int) -> float:
    return sum(1.0 / k for k in range(1, n + 1))


def capacity(*, shards: int, slices: int, runs: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for budget in range(1, slices + 1):
        seqs = cyclic(slices=slices, budget=budget)
        everything = simulate_absorbed(shards=shards, sequences=seqs, runs=runs, seed=budget)
        first = simulate_absorbed(
            shards=shards, sequences=seqs, runs=runs, seed=100 + budget, until="first"
        )
        rows.append(
            {
                "B": budget,
                "absorbed_until_all_exhausted": float(everything.mean()),
                "absorbed_until_first_exhausted": float(first.mean()),
                "trend_mLH_mB": shards * slices * harmonic(shards * budget),
            }
        )
    # The reference repo's SISA rule: a shard dies on its first hit (one slice, one sequence).
    first_hit = simulate_absorbed(shards=shards, sequences=[(0,)], runs=runs, seed=999)
    rows.append({"B": "sisa_first_hit", "absorbed_until_all_exhausted": float(first_hit.mean())})
    return rows


def _backbone(width: int, depth: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_backbone_mlp(
        input_shape=(1, 28, 28), num_classes=10, width=width, depth=depth, expansion=2
    )


def real_model(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    fashion = load_dataset("fashion_mnist", data_dir=DATA)
    mnist = load_dataset("mnist", data_dir=DATA)
    test = load_dataset("mnist", split="test", data_dir=DATA)
    public = fashion.subset(np.arange(args.pretrain))
    rng = np.random.default_rng(0)
    finetune = mnist.subset(np.sort(rng.choice(len(mnist), args.finetune, replace=False)))
    probe = test.subset(np.arange(args.test))
    victims = [str(i) for i in rng.choice(finetune.sample_ids, args.deletions, replace=False)]
    out: dict[str, Any] = {}

    ws = Workspace.init(scratch / "s3t")
    ws.register(public, dataset="public", deletable=False)
    ws.register(finetune, dataset="mnist")
    t0 = time.perf_counter()
    bb = pretrain_backbone(
        provenance=ws.provenance,
        store=ws.store,
        features=ws.features,
        dataset="public",
        model=_backbone(args.width, args.depth),
        train=TrainConfig(epochs=args.pretrain_epochs, batch_size=128, lr=0.05, momentum=0.9),
    )
    out["pretrain_seconds"] = time.perf_counter() - t0
    train = TrainConfig(epochs=args.epochs, batch_size=32, lr=0.02, momentum=0.9)
    cfg = S3TConfig(
        shards=args.shards,
        slices=args.slices,
        sequences=args.sequences,
        model="backbone_mlp",
        model_options={"width": args.width, "depth": args.depth, "expansion": 2},
        backbone_checkpoint=bb.checkpoint_id,
        pretraining_dataset="public",
        reset_head=True,
        layers_per_stage=1,
        train=train,
        retrain_when="never",
    )
    t0 = time.perf_counter()
    s3t = ws.train(name="s3t", dataset="mnist", strategy="s3t", config=cfg)
    out["s3t_fit_seconds"] = time.perf_counter() - t0
    out["s3t_stage_trainings"] = len(s3t.trie) * args.shards  # type: ignore[attr-defined]
    out["s3t_naive_stage_trainings"] = s3t.trie.naive_trainings() * args.shards  # type: ignore[attr-defined]

    def accuracy(model: Any) -> float:
        try:
            labels = model.predict(probe.features).labels
        except NotFittedError:  # every shard exhausted and never retrained: nothing serves
            return float("nan")
        return float((labels == probe.labels).mean())

    curve: list[dict[str, Any]] = [{"deleted": 0, "s3t": accuracy(s3t)}]
    walls, rollbacks = [], []
    for k, victim in enumerate(victims, start=1):
        start = time.perf_counter()
        result = s3t.forget(sample_ids=[victim])
        walls.append(time.perf_counter() - start)
        rollbacks.append(result.rollback_seconds)
        assert result.samples_retrained == 0
        if k % args.every == 0:
            budget = s3t.budget()  # type: ignore[attr-defined]
            curve.append(
                {
                    "deleted": k,
                    "s3t": accuracy(s3t),
                    "s3t_served_fraction": budget.served_fraction,
                    "s3t_shards_exhausted": budget.shards_exhausted,
                }
            )
    out["verify_ok"] = ws.verify(model="s3t").ok
    ws.close()
    q = statistics.quantiles
    out["latency_ms"] = {
        "n": len(walls),
        "wall_p50": 1000 * statistics.median(walls),
        "wall_p90": 1000 * q(walls, n=10)[-1],
        "rollback_p50": 1000 * statistics.median(rollbacks),
        "rollback_p90": 1000 * q(rollbacks, n=10)[-1],
    }

    # SISA on the same data, same pretrained backbone (fine-tuned in full), same deletions.
    ws = Workspace.init(scratch / "sisa")
    ws.register(finetune, dataset="mnist")
    weights = _backbone(args.width, args.depth)
    weights.load_state_dict(Workspace.open(scratch / "s3t").store.get(bb.checkpoint_id).tensors)
    state = {k: v.clone() for k, v in weights.state_dict().items()}

    def factory() -> torch.nn.Module:
        model = _backbone(args.width, args.depth)
        model.load_state_dict(state)
        return model

    sisa_cfg = SISAConfig(
        shards=args.shards,
        slices=args.slices,
        aggregation="mean_prob",
        train=TrainConfig(epochs=args.epochs, batch_size=32, lr=0.02, momentum=0.9),
    )
    t0 = time.perf_counter()
    sisa = ws.train(name="sisa", dataset="mnist", config=sisa_cfg, model_factory=factory)
    out["sisa_fit_seconds"] = time.perf_counter() - t0
    curve[0]["sisa"] = accuracy(sisa)
    passes = 0.0
    for point in curve[1:]:
        k = point["deleted"]
        batch = victims[k - args.every : k]
        result = sisa.forget(sample_ids=batch)
        passes += result.sample_passes
        point["sisa"] = accuracy(sisa)
        point["sisa_retrain_sample_passes"] = passes
    ws.close()
    out["accuracy_curve"] = curve
    return out


def plot(cap: list[dict[str, Any]], real: dict[str, Any], stem: Path, m: int, L: int) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    rows = [r for r in cap if isinstance(r["B"], int)]
    b = [r["B"] for r in rows]
    ax = axes[0]
    ax.plot(b, [r["absorbed_until_all_exhausted"] for r in rows], "o-", label="S3T: until all")
    ax.plot(b, [r["trend_mLH_mB"] for r in rows], "k--", label="m·L·H(m·B)")
    ax.plot(b, [r["absorbed_until_first_exhausted"] for r in rows], "s-", label="S3T: until first")
    sisa_first = next(r for r in cap if r["B"] == "sisa_first_hit")
    ax.axhline(
        rows[0]["absorbed_until_all_exhausted"],
        color="C3",
        ls=":",
        label="SISA serving rollbacks (= B=1)",
    )
    ax.axhline(
        sisa_first["absorbed_until_all_exhausted"],
        color="C4",
        ls="-.",
        label="SISA, shard dies on first hit",
    )
    ax.axhline(0, color="C5", lw=2, label="SISA retrain-on-delete (0)")
    ax.set_xlabel("sequences per shard B (cyclic)")
    ax.set_ylabel("deletions absorbed without training")
    ax.set_title(f"Capacity, m={m}, L={L}, uniform deletions")
    ax.legend(fontsize=7)
    ax = axes[1]
    curve = real["accuracy_curve"]
    ax.plot(
        [p["deleted"] for p in curve],
        [p["s3t"] for p in curve],
        "o-",
        label="S3T (cut back, no retraining)",
    )
    ax.plot(
        [p["deleted"] for p in curve],
        [p["sisa"] for p in curve],
        "s-",
        label="SISA (retrains hit shards)",
    )
    ax.set_xlabel("deleted samples")
    ax.set_ylabel("MNIST test accuracy")
    ax.set_title("Accuracy vs deletions (same data)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(stem.with_suffix(".png"), dpi=110)


def markdown(cap: list[dict[str, Any]], real: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        "# S3T benchmark",
        "",
        f"Conditions: {platform.processor() or platform.machine()}, torch threads "
        f"{torch.get_num_threads()}, shared machine (other agents running); "
        f"{'quick' if args.quick else 'full'} run.",
        "",
        f"## Deletions absorbed without training (m={args.cap_shards}, L={args.cap_slices}, "
        f"{args.runs} runs)",
        "",
        "| B | until all shards exhausted | m·L·H(m·B) | until first shard exhausted |",
        "|---|---|---|---|",
    ]
    for r in cap:
        if isinstance(r["B"], int):
            lines.append(
                f"| {r['B']} | {r['absorbed_until_all_exhausted']:.1f} | "
                f"{r['trend_mLH_mB']:.1f} | {r['absorbed_until_first_exhausted']:.1f} |"
            )
    first_hit = next(r for r in cap if r["B"] == "sisa_first_hit")
    lines += [
        "",
        f"SISA baselines: retrain-on-delete absorbs 0; serving rolled-back shards equals B=1 "
        f"above; the reference repo's rule (shard dies on first hit) absorbs "
        f"{first_hit['absorbed_until_all_exhausted']:.1f}.",
        "",
        f"## Real model (MNIST fine-tune {args.finetune} samples, backbone pretrained on "
        f"Fashion-MNIST 0..{args.pretrain - 1}; m={args.shards}, L={args.slices}, "
        f"B={args.sequences})",
        "",
        f"Stage trainings with the prefix trie: {real['s3t_stage_trainings']} "
        f"(without sharing: {real['s3t_naive_stage_trainings']}). Fit: S3T "
        f"{real['s3t_fit_seconds']:.1f} s, SISA {real['sisa_fit_seconds']:.1f} s; pretraining "
        f"{real['pretrain_seconds']:.1f} s. Lineage verified after deletions: "
        f"{real['verify_ok']}.",
        "",
        "| time to honour one deletion (ms) | p50 | p90 |",
        "|---|---|---|",
        f"| forget() wall | {real['latency_ms']['wall_p50']:.1f} | "
        f"{real['latency_ms']['wall_p90']:.1f} |",
        f"| rollback_seconds | {real['latency_ms']['rollback_p50']:.1f} | "
        f"{real['latency_ms']['rollback_p90']:.1f} |",
        "",
        f"n = {real['latency_ms']['n']} single-sample deletions; target p50 <= 50 ms, no "
        "training in the request path.",
        "",
        "| deleted | S3T acc | S3T served fraction | shards exhausted | SISA acc | "
        "SISA retrain sample-passes |",
        "|---|---|---|---|---|---|",
    ]
    for p in real["accuracy_curve"]:
        lines.append(
            f"| {p['deleted']} | {p['s3t']:.4f} | {p.get('s3t_served_fraction', 1.0):.2f} | "
            f"{p.get('s3t_shards_exhausted', 0)} | {p['sisa']:.4f} | "
            f"{p.get('sisa_retrain_sample_passes', 0)} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    args = parser.parse_args()
    torch.set_num_threads(1)
    full = not args.quick
    args.cap_shards, args.cap_slices = 5, 6
    args.runs = 1000 if full else 50
    args.pretrain = 30000 if full else 2000
    args.pretrain_epochs = 2 if full else 1
    args.finetune = 3000 if full else 400
    args.test = 2000 if full else 300
    args.shards, args.slices, args.sequences = (5, 4, 4) if full else (2, 2, 2)
    args.width, args.depth = (64, 4) if full else (32, 2)
    args.epochs = 4 if full else 1
    args.deletions = 60 if full else 4
    args.every = 10 if full else 2
    cap = capacity(shards=args.cap_shards, slices=args.cap_slices, runs=args.runs)
    scratch = Path(tempfile.mkdtemp(prefix="obliviate-s3t-"))
    try:
        real = real_model(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / ("s3t" if full else "s3t_quick")
    payload = {"args": vars(args), "capacity": cap, "real": real}
    stem.with_suffix(".json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    stem.with_suffix(".md").write_text(markdown(cap, real, args))
    plot(cap, real, stem, args.cap_shards, args.cap_slices)
    print(stem.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
