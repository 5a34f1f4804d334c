"""Benchmarks on the real lab: warm status vs `ssh node1 pcs status`, and alert lag.

Run: pytest -m "lab and bench" -s tests/lab/test_lab_bench.py (not in the default suite).
Prints figures prefixed BENCH with their targets; asserts only that the measurements are sane.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from bot.collect import Ask
from bot.render.status import status_doc
from bot.render.text import to_text
from bot.runtime import Runtime, running
from bot.settings import ClusterConfig
from tests.fakes.slack import Call
from tests.lab import labkit
from tests.lab.harness import ALERTS, call_text, lab_bot

pytestmark = [pytest.mark.lab, pytest.mark.bench]
WARM_RUNS = 20
FRESH_RUNS = 5
LAG_RUNS = 5
COMMANDS = ("crm_mon", "daemons", "quorum", "links")  # what a status runs on every node
POLL_INTERVAL_S = 1.0
RATIO_TARGET = 0.05
LAG_TARGET_S = POLL_INTERVAL_S + 0.3
PROBE_TIMEOUT_S = 30.0


# ---------------------------------------------------------------- warm status vs pcs status


async def answer(rt: Runtime, cluster: ClusterConfig, fresh: bool = False) -> str:
    """What `/cluster status lab` computes: every node's view, merged, judged, rendered.
    `fresh`: every command asked again (as remediation does), no daemon/Corosync reuse."""
    report = await rt.services.collect(cluster, ask=Ask.ALL if fresh else Ask.STATUS)
    assert report.healthy, labkit.describe(report)
    return to_text(status_doc(report, cluster.expectations))


async def timed_answers(rt: Runtime, cluster: ClusterConfig, runs: int, fresh: bool = False) -> list[float]:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        await answer(rt, cluster, fresh)
        samples.append(time.perf_counter() - t0)
    return samples


async def command_ms(rt: Runtime, cluster: ClusterConfig) -> str:
    """Each per-node command alone, on node1's open connection: where a warm status goes."""
    parts = []
    for name in COMMANDS:
        argv = getattr(cluster.commands, name, None)
        if argv is None:
            continue
        samples = []
        for _ in range(FRESH_RUNS):
            done = await rt.collector.run(cluster, "node1", argv)
            samples.append(done.duration_s)
        parts.append(f"{' '.join(argv[:2])} {statistics.median(samples) * 1000:.0f}")
    return ", ".join(parts)


async def test_bench_warm_status_vs_pcs_status(tmp_path: Path) -> None:
    async with running(labkit.settings(tmp_path / "state")) as rt:
        cluster = rt.settings.cluster("lab")
        assert cluster is not None
        (cold,) = await timed_answers(rt, cluster, 1)  # the first request opens the connections
        warm = await timed_answers(rt, cluster, WARM_RUNS)
        fresh = await timed_answers(rt, cluster, WARM_RUNS, fresh=True)
        breakdown = await command_ms(rt, cluster)
        shells = rt.pool.stats
    pcs = [await asyncio.to_thread(labkit.fresh_ssh, cluster, "pcs", "status") for _ in range(FRESH_RUNS)]
    crm_mon = [await asyncio.to_thread(labkit.fresh_ssh, cluster, *cluster.commands.crm_mon)
               for _ in range(FRESH_RUNS)]
    warm_ms, pcs_ms = statistics.median(warm) * 1000, statistics.median(pcs) * 1000
    ratio = warm_ms / pcs_ms
    print(f"\nBENCH lab status, 3 nodes (3 views) warm in a running Runtime: median {warm_ms:.0f} ms "
          f"(min {min(warm) * 1000:.0f}, max {max(warm) * 1000:.0f}, n={WARM_RUNS}); "
          f"first request (connecting) {cold * 1000:.0f} ms; per command, one at a time, own exec "
          f"session, on node1's open connection (ms): {breakdown}")
    print(f"BENCH lab status warm with every command fresh on every node (no daemon/Corosync "
          f"reuse): median {statistics.median(fresh) * 1000:.0f} ms = "
          f"{statistics.median(fresh) * 1000 / (statistics.median(pcs) * 1000):.3f} of pcs status; "
          f"{shells.shell_commands}/{shells.commands_run} commands answered by read shells")
    print(f"BENCH lab `ssh node1 pcs status`, fresh connection (1 view): median {pcs_ms:.0f} ms "
          f"(n={FRESH_RUNS}); `ssh node1 crm_mon --one-shot --inactive --output-as=xml` "
          f"{statistics.median(crm_mon) * 1000:.0f} ms")
    print(f"BENCH lab warm status / pcs status = {ratio:.3f} (target <= {RATIO_TARGET}: "
          f"{'met' if ratio <= RATIO_TARGET else 'MISSED'})")
    assert statistics.median(warm) < cold


# ---------------------------------------------------------------- alert lag


def offline_in(xml: str, node: str) -> bool:
    found = ET.fromstring(xml).find(f"./nodes/node[@name='{node}']")
    return found is not None and found.get("online") == "false"


def pacemaker_sees_offline(observer: str, node: str) -> tuple[float, float]:
    """Poll crm_mon inside OBSERVER (locally, via nodectl exec) until it shows NODE offline.
    Returns the monotonic start of the first call that showed it, and the median call time."""
    deadline = time.monotonic() + PROBE_TIMEOUT_S
    calls = []
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        done = labkit.nodectl(observer, "exec", "crm_mon", "-1", "--output-as=xml", check=False)
        calls.append(time.monotonic() - t0)
        if done.returncode == 0 and offline_in(done.stdout, node):
            return t0, statistics.median(calls)
    raise AssertionError(f"{observer} did not see {node} offline within {PROBE_TIMEOUT_S:g}s")


def is_alert_root(call: Call) -> bool:
    return call.ok and call.params.get("channel") == ALERTS and not call.params.get("thread_ts")


async def one_alert_lag(state_dir: Path, phase: float) -> tuple[float, float, str]:
    """Crash node3 under a watching bot: (alert arrival - Pacemaker's change, probe period, alert).
    PHASE (s after a poll) spreads the crash over the poll cycle: the lag depends on it."""
    async with lab_bot(state_dir, watch=True, poll_interval_s=POLL_INTERVAL_S) as h:
        watcher = h.bot.runtime.watcher
        assert watcher is not None
        await watcher.wait_polls(2)
        assert h.alert_roots() == []
        await asyncio.sleep(phase)  # a chosen offset from the poll just done, not a wait for state
        await labkit.anodectl("node3", "crash")
        changed_at, probe = await asyncio.to_thread(pacemaker_sees_offline, "node1", "node3")
        alert = await h.slack.wait_for("chat.postMessage", is_alert_root, timeout=PROBE_TIMEOUT_S)
    return alert.at - changed_at, probe, call_text(alert)


async def test_bench_alert_lag(tmp_path: Path) -> None:
    lags, probes = [], []
    for run in range(LAG_RUNS):
        if run:
            await asyncio.to_thread(labkit.heal)
        phase = POLL_INTERVAL_S * run / LAG_RUNS
        lag, probe, text = await one_alert_lag(tmp_path / f"state{run}", phase)  # a fresh bot each time
        assert "node3 went OFFLINE" in text
        lags.append(lag)
        probes.append(probe)
    worst = max(lags)
    print(f"\nBENCH lab alert lag, crm_mon on node1 shows node3 offline -> alert at the fake Slack, "
          f"poll interval {POLL_INTERVAL_S:g} s, crash at {LAG_RUNS} phases of the poll cycle: "
          f"{', '.join(f'{x:.2f}' for x in lags)} s "
          f"(median {statistics.median(lags):.2f}, worst {worst:.2f}; target <= {LAG_TARGET_S:.1f} s: "
          f"{'met' if worst <= LAG_TARGET_S else 'MISSED'}); crm_mon probe every "
          f"{statistics.median(probes) * 1000:.0f} ms")
