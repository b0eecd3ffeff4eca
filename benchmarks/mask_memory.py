"""Does a pruning mask remember the forget set? Retrain references for prune-then-unlearn.

Jia et al.'s Retrain for a sparse model keeps the original's OMP mask and re-seeds with the
original's training seed, so it starts from the original's own initialisation. But that mask
was found by training on D_f too, and a magnitude mask is tied to the weights it grew from (a
lottery ticket). This script asks whether such a Retrain, which never sees D_f, still
classifies D_f better than unseen data. Per trial (random forgetting of 10%, the Jia
benchmark's settings, seeds and OMP recipe), it trains five references on D_r only:

- dense, fresh initialisation (the dense tables' Retrain in approximate_jia.py);
- dense, the original's initialisation (a control: the same starting point, no mask);
- sparse, fresh initialisation under the original's mask (the sparse tables' Retrain);
- sparse, the original's initialisation under the original's mask (Jia et al.'s Retrain);
- sparse, OMP rerun on D_r from the original's initialisation: its own mask, found without
  D_f, and the same rewind (the only one of the three sparse models that never saw D_f).

"Forget advantage" is forget accuracy minus test accuracy. D_f and the test set are both
unseen by a clean reference and drawn from the same distribution, so a clean reference has an
advantage near 0 (within sampling noise); a large one means information about D_f reached
the model through its starting point or its mask.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/mask_memory.py --jobs 2   # about 17 minutes

Writes benchmarks/results/mask_memory.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import approximate_jia as jia  # noqa: E402

OUT = jia.RESULTS / "mask_memory"
TRIALS = {"fashion_mnist": 2, "fashion_mnist_subset": 6, "cifar10_subset": 6}
REFERENCES = (
    "dense, fresh init",
    "dense, original's init",
    "sparse, fresh init + original's mask",
    "sparse, original's init + original's mask",
    "sparse, OMP rerun on D_r (own mask)",
)
_JIA = "sparse, original's init + original's mask"
_CLEAN = "sparse, OMP rerun on D_r (own mask)"
_ORIGINAL = "original (sparse)"


def cpu_name() -> str:
    """The CPU model (results differ between CPU models in the last bits, so it is named)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def retrain(
    model: nn.Module,
    mask: dict[str, torch.Tensor] | None,
    split: jia.Split,
    seed: int,
    *,
    fresh: bool,
) -> dict[str, float]:
    """Retrain on D_r with the originals' recipe; ``fresh=False`` keeps ``model``'s weights."""
    row = jia.retrain_row(
        original=model, mask=mask, split=split, scale=jia.FULL, seed=seed, reinitialise=fresh
    )
    return {k: v for k, v in row.items() if k != "method"}


def overlap(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Fraction of ``a``'s kept weights that ``b`` keeps too."""
    kept = sum(float(a[n].sum()) for n in a)
    shared = sum(float((a[n] * b[n]).sum()) for n in a)
    return shared / kept


def trial(dataset: str, seed: int) -> dict[str, Any]:
    """One trial's five references (and the originals) on the same random split."""
    torch.set_num_threads(1)
    scale = jia.FULL
    train, test = jia.load_setting(dataset, scale, validation=False)
    dense, sparse, mask, _ = jia.originals(dataset, train, scale, seed)
    split = jia.make_split(train, test, "random", seed)
    init = jia.initialisation(dataset, train.sample_shape, seed)
    # The same OMP pipeline from the same initialisation, on D_r alone.
    _, clean, clean_mask, clean_seconds = jia.originals(dataset, split.retain, scale, seed)
    rows = {
        "original (dense)": jia.metrics(dense, split),
        "original (sparse)": jia.metrics(sparse, split),
        REFERENCES[0]: retrain(dense, None, split, seed, fresh=True),
        REFERENCES[1]: retrain(init, None, split, seed, fresh=False),
        REFERENCES[2]: retrain(sparse, mask, split, seed, fresh=True),
        REFERENCES[3]: retrain(init, mask, split, seed, fresh=False),
        REFERENCES[4]: {**jia.metrics(clean, split), "seconds": clean_seconds},
    }
    for row in rows.values():
        row["advantage"] = (100.0 - row["UA"]) - row["TA"]
    print(f"{dataset} seed {seed} done", flush=True)
    return {
        "dataset": dataset,
        "seed": seed,
        "forget": len(split.forget),
        "mask_overlap": overlap(mask, clean_mask),
        "rows": rows,
    }


def summarise(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per dataset and reference: means and standard deviations over the trials."""
    out = []
    for dataset in dict.fromkeys(t["dataset"] for t in trials):
        mine = [t for t in trials if t["dataset"] == dataset]
        rows = {}
        for name in mine[0]["rows"]:
            cells = {
                key: [t["rows"][name][key] for t in mine]
                for key in ("UA", "RA", "TA", "MIA", "advantage")
            }
            rows[name] = {
                **{k: float(np.mean(v)) for k, v in cells.items()},
                **{f"{k}_std": float(np.std(v)) for k, v in cells.items()},
            }
        out.append(
            {
                "dataset": dataset,
                "trials": len(mine),
                "seeds": [t["seed"] for t in mine],
                "forget": mine[0]["forget"],
                "mask_overlap": float(np.mean([t["mask_overlap"] for t in mine])),
                "rows": rows,
            }
        )
    return out


def markdown(report: dict[str, Any]) -> str:
    lines = ["# Does a pruning mask remember the forget set?", "", report["conditions"], ""]
    for s in report["summaries"]:
        lines += [
            f"## {s['dataset']}, random forgetting ({s['forget']} samples)",
            "",
            f"{s['trials']} trials (seeds {s['seeds']}). Cells: mean ± std over trials. "
            "The OMP rerun on D_r keeps "
            f"{s['mask_overlap']:.1%} of the original mask's weights.",
            "",
            "| model | UA | RA | TA | MIA-Efficacy | forget advantage (forget acc - TA) |",
            "|---|---|---|---|---|---|",
        ]
        for name, r in s["rows"].items():
            cells = " | ".join(
                f"{r[k]:.2f} ± {r[k + '_std']:.2f}" for k in ("UA", "RA", "TA", "MIA")
            )
            lines.append(
                f"| {name} | {cells} | **{r['advantage']:+.2f}** ± {r['advantage_std']:.2f} |"
            )
        jia_row, clean = s["rows"][_JIA], s["rows"][_CLEAN]
        kept = jia_row["advantage"] / s["rows"][_ORIGINAL]["advantage"]
        lines += [
            "",
            f"Jia et al.'s sparse Retrain classifies D_f {jia_row['advantage']:+.2f} points "
            f"better than unseen test data ({kept:.0%} of the sparse original's "
            f"{s['rows'][_ORIGINAL]['advantage']:+.2f}); the OMP rerun on D_r, which never saw "
            f"D_f, {clean['advantage']:+.2f}. Gap between the two as a reference (Avg. Gap of "
            f"one against the other): {jia.avg_gap(jia_row, clean):.2f}.",
            "",
        ]
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    summaries = report["summaries"]
    fig, axes = plt.subplots(1, len(summaries), figsize=(4.6 * len(summaries), 4.2), squeeze=False)
    for ax, s in zip(axes[0], summaries, strict=True):
        names = [_ORIGINAL, *REFERENCES]
        values = [s["rows"][n]["advantage"] for n in names]
        errors = [s["rows"][n]["advantage_std"] for n in names]
        colours = ["tab:gray", "tab:blue", "tab:blue", "tab:orange", "tab:red", "tab:green"]
        ax.barh(range(len(names)), values, xerr=errors, color=colours)
        ax.set_yticks(range(len(names)), [n.replace(", ", ",\n", 1) for n in names], fontsize=7)
        ax.invert_yaxis()
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_xlabel("forget accuracy - test accuracy (points)")
        ax.set_title(f"{s['dataset']} ({s['trials']} trials)", fontsize=9)
    fig.suptitle(
        "How much better than unseen data each model classifies D_f (grey: the original, "
        "trained on it; the others never were)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", choices=list(TRIALS), default=list(TRIALS))
    parser.add_argument("--trials", type=int, default=None, help="override trials per dataset")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--render", action="store_true", help="redo .md and .png from .json")
    args = parser.parse_args()
    if args.render:
        render(json.loads(args.out.with_suffix(".json").read_text()), args.out)
        return
    started = time.perf_counter()
    work = [
        (d, jia.TRIAL_STRIDE * t) for d in args.datasets for t in range(args.trials or TRIALS[d])
    ]
    trials = jia._map(trial, work, args.jobs)
    scale = jia.FULL
    conditions = (
        f"Small CNN, the Jia benchmark's full scale: every model trained {scale.epochs} epochs "
        f"(SGD lr {scale.lr}, cosine, batch 64); sparse = OMP at {scale.sparsity:.0%} of "
        "conv+linear weights, rewound to epoch 1; the same seeds, splits and originals as "
        f"approximate_jia.py's reported trials. CPU {cpu_name()}, 1 torch thread per "
        f"process, {args.jobs} processes; total {time.perf_counter() - started:.0f} s."
    )
    report = {"conditions": conditions, "summaries": summarise(trials), "trials": trials}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(jia.clean_json(report), indent=2))
    render(report, args.out)


def render(report: dict[str, Any], out: Path) -> None:
    """Writes the Markdown table and the plot (``--render`` redoes them from the JSON)."""
    out.with_suffix(".md").write_text(markdown(report))
    plot(report, out.with_suffix(".png"))
    print(markdown(report))


if __name__ == "__main__":
    main()
