"""How far the Jia benchmark's tuned picks hold up on more validation folds than they were
searched on.

``approximate_jia.py --tune`` ranks settings by the Avg. Gap between means over three
validation folds of each small setting (seeds 1-3) and keeps the lowest. With per-fold spreads
of several points of UA and MIA, the lowest of dozens of three-fold gaps is an optimistic
estimate of what the pick does on folds it has not seen. This script re-runs chosen methods,
at their tuned picks, on more folds of the same validation settings (seeds 1..N; the first
three are the search's own) and reports the gap over the search's three folds next to the gap
over all of them. It reads results/approximate_jia_tuned.json and never touches the reported
runs' seeds or the official test split. ``--first-seed`` and ``--folds`` run other folds
(the search's own are then left out, and their column is empty). Each table also has the
original's row: how far the validation original's TA sits from its Retrain's is one way in
which a validation setting can differ from the reported one.

    .venv/bin/python benchmarks/jia_validation_folds.py --jobs 2   # about 6 minutes on 2 cores
    # twelve folds no search has seen, the CIFAR-10 subset only (207 s on 2 cores)
    .venv/bin/python benchmarks/jia_validation_folds.py --jobs 2 --datasets cifar10_subset \
        --first-seed 21 --folds 12 --out benchmarks/results/jia_validation_folds_21_32

Writes benchmarks/results/jia_validation_folds.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import approximate_jia as jia  # noqa: E402

OUT = jia.RESULTS / "jia_validation_folds"
# Folds per setting: the search's three plus more (a CIFAR-10 subset fold is cheaper).
FOLDS = {"cifar10_subset": 9, "fashion_mnist_subset": 6}
SCENARIO = "random"  # the scenario whose tables miss the target


def fold_rows(
    dataset: str, seed: int, methods: list[str], choices: dict[str, Any]
) -> dict[str, list[dict[str, Any]]]:
    """One validation fold: per mode, Retrain's row and each method's row at its pick."""
    torch.set_num_threads(1)
    scale = jia.FULL
    base = jia.default_configs(scale)
    train, test = jia.load_setting(dataset, scale, validation=True)
    dense, sparse, mask, _ = jia.originals(dataset, train, scale, seed=seed)
    split = jia.make_split(train, test, SCENARIO, seed=seed)
    out: dict[str, list[dict[str, Any]]] = {}
    for mode, model, model_mask in (("dense", dense, None), ("sparse", sparse, mask)):
        picks = jia.mode_choices(choices, dataset, SCENARIO, mode)
        common: dict[str, Any] = {
            "original": model,
            "mask": model_mask,
            "split": split,
            "seed": seed,
        }
        rows = [
            jia.retrain_row(**common, scale=scale),
            {"method": "original", **jia.metrics(model, split), "seconds": 0.0},
        ]
        for name in methods:
            config = jia.configured(base[name], name, picks.get(name))
            rows.append(jia.method_row(name=name, config=config, **common))
        out[mode] = rows
    print(f"{dataset} fold {seed} done", flush=True)
    return out


def summarise(
    dataset: str,
    mode: str,
    folds: dict[int, dict[str, list[dict[str, Any]]]],
    methods: list[str],
    choices: dict[str, Any],
) -> dict[str, Any]:
    """Gaps between means over the search's three folds and over every fold, next to the gap
    the search recorded for the pick (which differs from the first where the search ran on a
    CPU that rounds differently: the folds' models are then not the same)."""
    picks = jia.mode_choices(choices, dataset, SCENARIO, mode)

    def gap_over(seeds: list[int], name: str) -> dict[str, Any]:
        ref = jia._mean_row("retrain", [folds[s][mode][0] for s in seeds])
        row = jia._mean_row(name, [jia._named(folds[s][mode], name) for s in seeds])
        return jia.with_gaps([ref, row])[1]

    every = sorted(folds)
    searched = [s for s in jia.validation_seeds(dataset) if s in folds]
    nothing = {"avg_gap": float("nan")}
    return {
        "dataset": dataset,
        "mode": mode,
        "folds": len(folds),
        "seeds": every,
        "retrain": jia._mean_row("retrain", [folds[s][mode][0] for s in every]),
        "original": gap_over(every, "original"),
        "methods": {
            name: {
                "search_gap": picks.get(name, {}).get("gap", float("nan")),
                "searched_folds": gap_over(searched, name) if searched else nothing,
                "all_folds": gap_over(every, name),
            }
            for name in methods
        },
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Tuned picks on more validation folds (random forgetting)",
        "",
        report["conditions"],
        "",
        "| setting | model | method | gap the search recorded | gap, search's 3 folds here "
        "| gap, all folds | UA | RA | TA | MIA | RTE / Retrain |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in report["summaries"]:
        r = s["retrain"]
        lines.append(
            f"| {s['dataset']} | {s['mode']} | retrain ({s['folds']} folds) | - | - | - | "
            f"{r['UA']:.2f} | {r['RA']:.2f} | {r['TA']:.2f} | {r['MIA']:.2f} | 1.000 |"
        )
        o = s["original"]
        lines.append(
            f"| {s['dataset']} | {s['mode']} | original | - | - | {o['avg_gap']:.2f} | "
            f"{o['UA']:.2f} | {o['RA']:.2f} | {o['TA']:.2f} | {o['MIA']:.2f} | - |"
        )
        for name, m in s["methods"].items():
            a = m["all_folds"]
            lines.append(
                f"| {s['dataset']} | {s['mode']} | {name} | {m['search_gap']:.2f} "
                f"| {_shown(m['searched_folds']['avg_gap'])} "
                f"| **{a['avg_gap']:.2f}** | {a['UA']:.2f} | {a['RA']:.2f} | {a['TA']:.2f} "
                f"| {a['MIA']:.2f} | {a['time_ratio']:.3f} |"
            )
    return "\n".join(lines) + "\n"


def _shown(gap: float) -> str:
    return "-" if math.isnan(gap) else f"{gap:.2f}"  # NaN: none of the search's folds ran


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", choices=list(FOLDS), default=list(FOLDS))
    parser.add_argument("--methods", nargs="+", default=["eu_k", "neggrad_eu_k"])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--first-seed", type=int, default=1, help="the first fold's seed")
    parser.add_argument(
        "--folds", type=int, default=None, help="folds per setting (default: FOLDS)"
    )
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.first_seed < 1 or (args.folds is not None and args.folds < 1):
        raise SystemExit("--first-seed and --folds must be at least 1")
    started = time.perf_counter()
    choices = json.loads(jia.TUNED.read_text())["choices"]
    seeds = {
        d: list(range(args.first_seed, args.first_seed + (args.folds or FOLDS[d])))
        for d in args.datasets
    }
    reported = sorted({s for d in seeds for s in seeds[d] if s % jia.TRIAL_STRIDE == 0})
    if reported:
        raise SystemExit(f"seeds {reported} are reported trials' seeds (0, 100, ..., 900)")
    work = [(d, seed, args.methods, choices) for d in args.datasets for seed in seeds[d]]
    results = jia._map(fold_rows, work, args.jobs)
    summaries = []
    for dataset in args.datasets:
        folds = {seed: r for (d, seed, *_), r in zip(work, results, strict=True) if d == dataset}
        summaries += [summarise(dataset, mode, folds, args.methods, choices) for mode in jia.MODES]
    conditions = (
        f"Validation settings of approximate_jia.py (full scale), {SCENARIO} forgetting, folds "
        + ", ".join(f"{d} seeds {seeds[d][0]}-{seeds[d][-1]}" for d in args.datasets)
        + f"; picks from {jia.TUNED.name} (sparse models: the sparse pick where one exists). "
        "Gaps are between means over the folds, as the search and the reported tables take "
        "them; the original's is its gap over all folds. The reported runs' seeds are 0, "
        f"100, ..., 900. CPU {platform.machine()}, 1 torch thread per process, "
        f"{args.jobs} processes; "
        f"total {time.perf_counter() - started:.0f} s."
    )
    report = {"conditions": conditions, "summaries": summaries}
    args.out.with_suffix(".json").write_text(json.dumps(jia.clean_json(report), indent=2))
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
