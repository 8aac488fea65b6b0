"""``bench/run.py --smoke`` runs every step of the benchmark end to end.

Only that it works and prints its table: speed is not asserted (the machine is noisy).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "bench" / "run.py"
RESULTS = ROOT / "bench" / "RESULTS.md"

ROWS = (
    "CPUs",
    "CPU model",
    "Python",
    "kernel",
    "sandbox",
    "wrk",
    "warm c=1",
    "warm c=16",
    "added p50 at c=1",
    "cold start, client p50",
    "cold start, client p99",
    "cold start, init_duration p50",
    "cold start, init_duration p99",
    "serve startup",
    "idle instance memory",
)


@pytest.mark.timeout(180)
def test_bench_smoke_prints_every_row() -> None:
    assert shutil.which("wrk"), "wrk is not installed: run `make setup` (as root) first"
    before = RESULTS.read_bytes() if RESULTS.exists() else None
    proc = subprocess.run(
        [sys.executable, str(RUN), "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    lines = proc.stdout.splitlines()
    for row in ROWS:
        assert any(line.startswith(row) for line in lines), f"no {row!r} row in:\n{proc.stdout}"
    # The smoke run's figures are not results: RESULTS.md is left alone.
    after = RESULTS.read_bytes() if RESULTS.exists() else None
    assert after == before


@pytest.mark.timeout(180)
def test_cpu_split_smoke_prints_both_sides() -> None:
    before = RESULTS.read_bytes() if RESULTS.exists() else None
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "cpu_split.py"), "--smoke", "--duration", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    rows = {line.split()[0] for line in proc.stdout.splitlines() if line.strip()}
    assert {"baseline", "nimbus"} <= rows, proc.stdout
    assert "added CPU per call" in proc.stdout
    assert (RESULTS.read_bytes() if RESULTS.exists() else None) == before
