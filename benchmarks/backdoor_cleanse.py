"""Backdoor cleanse: forget BadNets-poisoned samples with each method, next to Retrain.

The trojan-removal application of Jia et al. ("Model Sparsity Can Simplify Machine
Unlearning", NeurIPS 2023): 10% of the training images get a 3x3 white square in the
bottom-right corner and the label of the target class (BadNets, Gu et al. 2017). A model
trained on them sends triggered images to the target class. Once the poisoned samples are
found, every unlearning method forgets them (forget set = the poisoned samples as trained;
retain set = the clean rest); Retrain trains from scratch on the clean rest. Reported: attack
success rate (ASR: triggered test images whose true label is not the target, classified as
the target) and clean test accuracy, before and after, on the dense model and on the
90%-sparse OMP model. Same recipes as benchmarks/approximate_jia.py (its tuned step sizes for
random forgetting when results/approximate_jia_tuned.json exists: learning rate and epochs,
the sparse model taking the sparse search's picks where that file has them).

    .venv/bin/python benchmarks/backdoor_cleanse.py            # ~2 minutes on 2 cores
    .venv/bin/python benchmarks/backdoor_cleanse.py --quick

Writes benchmarks/results/backdoor_cleanse.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from approximate_jia import (  # noqa: E402
    _LABEL,
    FULL,
    METHOD_ORDER,
    SCALES,
    clean_json,
    configured,
    default_configs,
    load_setting,
    mode_choices,
    originals,
    tuned_path,
)
from obliviate.data.backdoor import attack_success_rate, poison  # noqa: E402
from obliviate.errors import ObliviateError  # noqa: E402
from obliviate.evaluation import accuracy, predict_proba  # noqa: E402
from obliviate.strategies.approximate import METHODS, LabelledData  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
TARGET = 0


def scores(model: nn.Module, test: LabelledData) -> dict[str, float]:
    """Clean test accuracy and attack success rate, in percent."""
    return {
        "clean_acc": accuracy(
            probabilities=predict_proba(model, test.features), labels=test.labels.numpy()
        ),
        "asr": attack_success_rate(
            predict_proba=lambda x: predict_proba(model, x),
            features=test.features,
            labels=test.labels,
            target_label=TARGET,
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--scale", choices=sorted(SCALES), default="full")
    # The 6,000-image setting: the 50,000-image one costs ten times as much per method.
    parser.add_argument("--dataset", choices=list(FULL.train), default="fashion_mnist_subset")
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--methods", nargs="+", default=METHOD_ORDER)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "backdoor_cleanse")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    scale_name = "quick" if args.quick else args.scale
    scale = SCALES[scale_name]
    train, test = load_setting(args.dataset, scale, validation=False)
    poisoned = poison(
        features=train.features,
        labels=train.labels,
        fraction=args.fraction,
        target_label=TARGET,
        seed=args.seed,
    )
    dirty = LabelledData(features=poisoned.features, labels=poisoned.labels)
    index = torch.from_numpy(poisoned.poisoned_index)
    clean_rows = torch.from_numpy(np.setdiff1d(np.arange(len(dirty)), poisoned.poisoned_index))
    forget, retain = dirty.subset(index), dirty.subset(clean_rows)
    dense, sparse, mask, _ = originals(args.dataset, dirty, scale, args.seed)
    base = default_configs(scale)
    choices: dict[str, dict[str, Any]] = {}
    tuned_file = tuned_path(scale_name)
    if tuned_file.exists():
        choices = json.loads(tuned_file.read_text())["choices"]
    retrain_cfg = METHODS.get("retrain").config_class(
        lr=scale.lr, epochs=scale.epochs, batch_size=64, schedule="cosine"
    )
    tables: list[dict[str, Any]] = []
    for mode, label, model, model_mask in (
        ("dense", "dense", dense, None),
        ("sparse", "90% sparse", sparse, mask),
    ):
        # Each mode's tuned picks for random forgetting (sparse falls back to dense ones).
        chosen = mode_choices(choices, args.dataset, "random", mode)
        configs = {m: configured(base[m], m, chosen.get(m)) for m in args.methods}
        rows: list[dict[str, Any]] = [{"method": "original (poisoned)", **scores(model, test)}]
        common = {"forget": forget, "retain": retain, "seed": args.seed, "mask": model_mask}
        reference = METHODS.get("retrain")(retrain_cfg).unlearn(model=model, **common)
        rows.append(
            {"method": "retrain", **scores(reference.model, test), "seconds": reference.seconds}
        )
        for name in args.methods:
            try:
                result = METHODS.get(name)(configs[name]).unlearn(model=model, **common)
            except ObliviateError as exc:
                rows.append({"method": name, "error": str(exc)})
                continue
            rows.append({"method": name, **scores(result.model, test), "seconds": result.seconds})
        tables.append({"mode": label, "rows": rows})
        print(label, json.dumps(rows, indent=1), flush=True)
    conditions = (
        f"{_LABEL[scale_name]}{args.dataset}: {len(dirty)} training "
        f"images, {len(forget)} poisoned ({args.fraction:.0%}, 3x3 white patch bottom-right, "
        f"target class {TARGET}), {len(test)} test images; small CNN trained "
        f"{scale.epochs} epochs; sparse = OMP 90%; seed {args.seed}; one run; CPU "
        f"{platform.machine()}, 1 torch thread, load average {os.getloadavg()[0]:.1f} at the "
        f"end (shared machine); total {time.perf_counter() - started:.0f} s."
    )
    report = {"conditions": conditions, "quick": args.quick, "tables": tables}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(clean_json(report), indent=2))
    args.out.with_suffix(".md").write_text(markdown(report))
    plot(report, args.out.with_suffix(".png"))
    print(markdown(report))


def markdown(report: dict[str, Any]) -> str:
    lines = ["# Backdoor cleanse: forgetting BadNets-poisoned samples", "", report["conditions"]]
    for table in report["tables"]:
        lines += [
            "",
            f"## {table['mode']}",
            "",
            "| model | ASR % (lower is better) | clean test acc % | RTE (s) |",
            "|---|---|---|---|",
        ]
        for r in table["rows"]:
            if "error" in r:
                lines.append(f"| {r['method']} | failed: {r['error'][:80]} | | |")
                continue
            seconds = f"{r['seconds']:.1f}" if "seconds" in r else "-"
            lines.append(f"| {r['method']} | {r['asr']:.2f} | {r['clean_acc']:.2f} | {seconds} |")
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    fig, axes = plt.subplots(1, len(report["tables"]), figsize=(6 * len(report["tables"]), 4))
    for ax, table in zip(np.atleast_1d(axes), report["tables"], strict=True):
        rows = [r for r in table["rows"] if "error" not in r]
        names = [r["method"].replace(" (poisoned)", "") for r in rows]
        x = np.arange(len(rows))
        ax.bar(x - 0.2, [r["asr"] for r in rows], width=0.4, label="ASR %")
        ax.bar(x + 0.2, [r["clean_acc"] for r in rows], width=0.4, label="clean acc %")
        ax.set_xticks(x, names, rotation=60, ha="right", fontsize=8)
        ax.set_title(table["mode"])
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
