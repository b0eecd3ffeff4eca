"""Runs every benchmark in this folder in turn (`make bench`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

SCRIPTS = [
    "sisa_mnist.py",
    "sisa_targets.py",
    "batched_training.py",
    "executors.py",
    "sispa.py",
    "online_ensemble.py",
    "s3t.py",
    "approximate_jia.py",
    "jia_validation_folds.py",
    "mask_memory.py",
    "certified_removal.py",
    "backdoor_cleanse.py",
    "evaluation_suite.py",
    "ledger_bench.py",
    "service_throughput.py",
    "service_latency.py",
    "service_crash_trials.py",
]

for script in SCRIPTS:
    print(f"== {script}")
    subprocess.run([sys.executable, str(HERE / script)], check=True)
