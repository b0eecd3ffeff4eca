"""Runs every benchmark in this folder in turn (`make bench`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

for script in ["sisa_mnist.py", "sisa_targets.py"]:
    print(f"== {script}")
    subprocess.run([sys.executable, str(HERE / script)], check=True)
