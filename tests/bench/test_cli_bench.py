"""Benchmark: how long the command line takes to start, as cron and monitoring checks pay it.
Run: pytest -m bench -s tests/bench/test_cli_bench.py (the cold status on the real lab is in
tests/lab/test_lab_cold.py)."""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.bench
RUNS = 9
HELP_TARGET_S = 0.3
EXE = Path(sys.executable).with_name("clusterbot")


def timed(argv: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one run in a new process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(argv, capture_output=True, timeout=60, check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def medians(argv: list[str]) -> tuple[float, float]:
    runs = [timed(argv) for _ in range(RUNS)]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def test_bench_startup() -> None:
    base = medians([sys.executable, "-c", "pass"])
    help_ = medians([str(EXE), "--help"])
    render = medians([str(EXE), "render", "--example", "healthy", "--format", "json"])
    print(f"\nBENCH `python -c pass` {base[0] * 1000:.0f} ms wall ({base[1] * 1000:.0f} ms CPU); "
          f"`clusterbot --help` {help_[0] * 1000:.0f} ms wall ({help_[1] * 1000:.0f} ms CPU; target "
          f"< {HELP_TARGET_S * 1000:.0f} ms wall: {'met' if help_[0] < HELP_TARGET_S else 'MISSED'}); "
          f"`clusterbot render --example healthy --format json` {render[0] * 1000:.0f} ms wall "
          f"({render[1] * 1000:.0f} ms CPU); medians of {RUNS}")
