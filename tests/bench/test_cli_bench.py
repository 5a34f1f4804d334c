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


# A cold status's settings cost, phase by phase in one new interpreter (CPU ms): what the
# libraries cost to import, what building our models costs, what validating a config costs.
SETTINGS_PHASES = """
import gc, sys, time
gc.disable()  # as the status command imports (bot.ops._load)
marks = [time.process_time()]
import asyncio  # asyncssh needs it too: not a settings cost
marks.append(time.process_time())
import pydantic, pydantic_settings
from pydantic import AliasChoices, BaseModel, Field, SecretStr, ValidationError
marks.append(time.process_time())
import bot.pacemaker.health  # the core needs it too: not a settings cost
marks.append(time.process_time())
import bot.settings
marks.append(time.process_time())
bot.settings.load_settings(sys.argv[1], need_clusters=True)
marks.append(time.process_time())
print(*((b - a) * 1000 for a, b in zip(marks, marks[1:])))
"""
PHASES = ("asyncio", "pydantic + pydantic-settings", "bot.pacemaker.health",
          "our models (bot.settings)", "load_settings (3-node lab config)")
LAB_SHAPED = """
[[clusters]]
name = "lab"
nodes = [
  { name = "node1", host = "10.224.77.11", port = 22 },
  { name = "node2", host = "10.224.77.12", port = 22 },
  { name = "node3", host = "10.224.77.13", port = 22 },
]
ssh_user = "root"
sudo = false
vips = ["virtual_ip_1", "virtual_ip_2", "virtual_ip_3"]
everywhere = ["loadbalancer-clone"]
"""
SETTINGS_RUNS = 21


def test_bench_settings_phases(tmp_path: Path) -> None:
    config = tmp_path / "clusterbot.toml"
    config.write_text(f'state_dir = "{tmp_path}"\n{LAB_SHAPED}')
    runs = [[float(ms) for ms in subprocess.run(
        [sys.executable, "-c", SETTINGS_PHASES, str(config)], capture_output=True, text=True,
        timeout=60, check=True).stdout.split()] for _ in range(SETTINGS_RUNS)]
    figures = "; ".join(f"{name} {min(r[i] for r in runs):.1f} / "
                        f"{statistics.median(r[i] for r in runs):.1f}"
                        for i, name in enumerate(PHASES))
    print(f"\nBENCH a cold status's settings, CPU ms min / median of {SETTINGS_RUNS} new "
          f"interpreters: {figures}")
