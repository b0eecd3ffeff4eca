"""Request-to-completion latency of one deletion through the service: SISA vs a full retrain.

One workspace holds an MNIST subset (10,000 training samples by default) and two models on
it: SISA (S=5 shards, R=2 slices, small MLP) and the Retrain strategy (the same MLP trained
on everything). A real uvicorn server and a real worker (``obliviate worker``, separate
processes, ``batch_window_seconds=0``) run over it. Each trial POSTs one deletion of a fresh
sample to each model, in alternating order (after one unrecorded warm-up deletion per
model, so the worker's start-up and first model load are not counted), and polls
``GET /v1/unlearn/{id}`` until it is completed; the time from the POST to the observed
completion is the latency. Ratios are taken per pair (the machine is shared and drifts). Writes
benchmarks/results/service_latency.{json,md}.

    .venv/bin/python benchmarks/service_latency.py            # ~3-5 minutes on 2 cores
    .venv/bin/python benchmarks/service_latency.py --quick    # 2,000 samples, 1 pair
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from obliviate import RetrainConfig, SISAConfig, TrainConfig, Workspace, load_dataset
from obliviate.service import ApiKeyStore
from service_common import child_env, machine, start_server, stop, write_results

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MODEL = {"model": "mlp", "model_options": {"hidden": (128,)}}


def build(root: Path, *, samples: int, epochs: int) -> tuple[str, list[str], dict[str, float]]:
    os.environ["OBLIVIATE_EXECUTOR"] = "inline"
    train = load_dataset("mnist", data_dir=DATA)
    rows = np.random.default_rng(0).choice(len(train), size=samples, replace=False)
    subset = train.subset(np.sort(rows))
    config = TrainConfig(epochs=epochs, batch_size=64, lr=0.05, momentum=0.9)
    fit: dict[str, float] = {}
    with Workspace.init(root) as ws:
        # One copy per model: a deletion marks the sample deleted in its dataset, and a
        # model sharing that dataset would also forget it at its next deletion.
        ws.register(subset, dataset="mnist_sisa")
        ws.register(subset, dataset="mnist_retrain")
        start = time.perf_counter()
        ws.train(
            name="sisa",
            dataset="mnist_sisa",
            config=SISAConfig(shards=5, slices=2, train=config, **MODEL),  # type: ignore[arg-type]
        )
        fit["sisa"] = time.perf_counter() - start
        start = time.perf_counter()
        ws.train(
            name="retrain",
            dataset="mnist_retrain",
            strategy="retrain",
            config=RetrainConfig(train=config, **MODEL),  # type: ignore[arg-type]
        )
        fit["retrain"] = time.perf_counter() - start
        secret = ApiKeyStore(ws.provenance.engine).create(name="b", scopes=["admin"]).secret
    ids = [str(i) for i in subset.sample_ids]
    return secret, ids, fit


def delete_one(base: str, secret: str, model: str, sample: str, timeout: float) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {secret}"}
    start = time.perf_counter()
    response = httpx.post(
        f"{base}/v1/unlearn",
        json={"sample_ids": [sample], "reason": "gdpr-art17-1a", "model": model},
        headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
        timeout=30,
    )
    accepted = time.perf_counter() - start
    response.raise_for_status()
    location = response.headers["Location"]
    while time.perf_counter() - start < timeout:
        body = httpx.get(f"{base}{location}", headers=headers, timeout=30).json()
        if body["status"] in ("completed", "denied", "dead"):
            break
        time.sleep(0.05)
    else:
        raise TimeoutError(f"{model} deletion did not complete in {timeout} s")
    total = time.perf_counter() - start
    result = body.get("result") or {}
    return {
        "model": model,
        "status": body["status"],
        "accept_seconds": round(accepted, 4),
        "completion_seconds": round(total, 3),
        "retrain_seconds": result.get("retrain_seconds"),
        "shards_retrained": result.get("shards_retrained"),
        "samples_retrained": result.get("samples_retrained"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 samples, one pair")
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    samples, pairs = (2_000, 1) if args.quick else (args.samples, args.pairs)
    scratch = Path(tempfile.mkdtemp(prefix="obliviate-latency-"))
    root = scratch / "ws"
    info = machine()
    secret, ids, fit = build(root, samples=samples, epochs=args.epochs)
    env = child_env(
        OBLIVIATE_SERVICE_BATCH_WINDOW_SECONDS="0", OBLIVIATE_SERVICE_POLL_SECONDS="0.05"
    )
    server, base = start_server(root, env=env)
    worker = subprocess.Popen(
        [sys.executable, "-m", "obliviate.service", "worker", "-w", str(root)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    trials: list[dict[str, Any]] = []
    rng = np.random.default_rng(1)
    victims = [ids[i] for i in rng.choice(len(ids), size=2 * pairs + 2, replace=False)]
    try:
        # Warm-up (not recorded): the worker's imports and each model's first load.
        warm = [
            delete_one(base, secret, m, victims.pop(), timeout=1800) for m in ("sisa", "retrain")
        ]
        for pair in range(pairs):
            order = ["sisa", "retrain"] if pair % 2 == 0 else ["retrain", "sisa"]
            for j, model in enumerate(order):
                outcome = delete_one(base, secret, model, victims[2 * pair + j], timeout=1800)
                trials.append({"pair": pair, **outcome})
    finally:
        stop(worker)
        stop(server)
    by_pair = {
        p: {t["model"]: t["completion_seconds"] for t in trials if t["pair"] == p}
        for p in range(pairs)
    }
    ratios = [v["retrain"] / v["sisa"] for v in by_pair.values()]
    median = {
        m: statistics.median(t["completion_seconds"] for t in trials if t["model"] == m)
        for m in ("sisa", "retrain")
    }
    data: dict[str, Any] = {
        "benchmark": "service_latency",
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "conditions": {
            **info,
            "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
            "dataset": f"MNIST train, random {samples} samples",
            "sisa": "S=5, R=2, MLP(128), SGD momentum, batch 64",
            "retrain": "same MLP and training on all samples",
            "epochs": args.epochs,
            "executor": "inline (training in the worker process)",
            "service": "uvicorn + 1 worker process, SQLite, batch window 0, poll 50 ms",
        },
        "fit_seconds": {k: round(v, 2) for k, v in fit.items()},
        "warm_up_trials": warm,
        "trials": trials,
        "median_completion_seconds": {k: round(v, 3) for k, v in median.items()},
        "paired_speedup": {
            "median": round(statistics.median(ratios), 2),
            "min": round(min(ratios), 2),
            "max": round(max(ratios), 2),
        },
    }
    lines = [
        "# One deletion through the service: request to completion, SISA vs full retrain",
        "",
        f"Recorded {data['recorded_at']}; {info['cpus']} shared cores (1-min load average "
        f"{info['loadavg_1m_at_start']} at start, {data['conditions']['loadavg_1m_at_end']} at "
        f"end). MNIST subset of {samples} samples; SISA S=5 R=2 vs Retrain, same MLP, "
        f"{args.epochs} epochs; uvicorn + one `obliviate worker` process (inline executor).",
        "",
        "| pair | model | completion s | of which retrain s | shards | samples retrained |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for t in trials:
        retrain = "-" if t["retrain_seconds"] is None else f"{t['retrain_seconds']:.2f}"
        lines.append(
            f"| {t['pair']} | {t['model']} | {t['completion_seconds']:.2f} | {retrain} | "
            f"{t['shards_retrained']} | {t['samples_retrained']} |"
        )
    lines += [
        "",
        f"Median completion: SISA {median['sisa']:.2f} s, full retrain {median['retrain']:.2f} s;"
        f" paired speed-up median {data['paired_speedup']['median']}x "
        f"(range {data['paired_speedup']['min']}-{data['paired_speedup']['max']}x).",
        f"Initial fits: SISA {fit['sisa']:.1f} s, Retrain {fit['retrain']:.1f} s.",
        "",
    ]
    write_results("service_latency", data, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
