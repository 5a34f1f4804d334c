"""Benchmark the alert stream over the recorded lab sequences (issue 14): roots per scenario and
first-root lag (p50 and max over eight poll phases) at 1 s and 5 s polls.

Run: pytest -m bench -s tests/bench/test_replay_bench.py

The "before" column of README's table came from this same file and harness run in a checkout of
the commit before issue 14's watcher (tests/fakes/replay.py and tests/fixtures/sequences copied in):
the harness uses only the Watcher, Store and Collector public API, so it measures any version.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.fakes.replay import Replay, replay, shown_at
from tests.fakes.sequences import load, names

pytestmark = pytest.mark.bench
PHASES = 8
SETTLE_S = 15.0  # the default settle_s the replays run with
# Derived findings (bot/watch/settle.py DERIVED), by name: this file also measures older watchers.
DERIVED_KINDS = {"vips_unbalanced", "clone_stopped", "resource_stopped", "node_pending",
                 "nodes_disagree", "node_unreachable"}


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def test_bench_roots_and_lag_per_scenario(tmp_path: Path) -> None:
    lines = [f"{'scenario':26} {'poll':>4}  {'roots':>5}  {'lag p50':>7}  {'lag max':>7}  "
             f"{'false rec.':>10}  {'pages':>5}  {'open':>4}"]
    held = [f"{'scenario':26} {'poll':>4}  {'holds':>10}"]
    cpu0 = time.process_time()
    polls = 0
    for name in names():
        seq = load(name)
        shown = await shown_at(seq, tmp_path)
        for poll_s in (1.0, 5.0):
            runs: list[Replay] = [await replay(seq, tmp_path, poll_s=poll_s, phase=poll_s * i / PHASES)
                                  for i in range(PHASES)]
            polls += sum(r.polls for r in runs)
            roots = sorted(len(r.roots) for r in runs)
            lags = [lag for r in runs if shown is not None and (lag := r.first_root_lag(shown)) is not None]
            span = f"{roots[0]}" if roots[0] == roots[-1] else f"{roots[0]}-{roots[-1]}"
            p50, worst = (f"{_pct(lags, .5):.2f}s", f"{max(lags):.2f}s") if lags else ("-", "-")
            holds = sorted(h.seconds for r in runs for h in r.holds if h.kind in DERIVED_KINDS)
            bound = sum(1 for x in holds if x >= SETTLE_S - 1e-6)
            held.append(f"{name:26} {poll_s:>3.0f}s  {len(holds):>5} held" + (
                f"  p50 {_pct(holds, .5):5.2f}s  max {holds[-1]:5.2f}s  {bound:>3} at the bound"
                if holds else ""))
            lines.append(f"{name:26} {poll_s:>3.0f}s  {span:>5}  {p50:>7}  {worst:>7}"
                         f"  {sum(len(r.false_recoveries()) for r in runs):>10}"
                         f"  {sum(len(r.pages) for r in runs):>5}"
                         f"  {sum(len(r.open_at_end) for r in runs):>4}")
    cpu = time.process_time() - cpu0
    print("\nBENCH alert stream over the recorded lab sequences "
          f"({PHASES} phases per poll interval; {polls} polls, {cpu:.1f} s CPU)\n" + "\n".join(lines))
    print("\nBENCH how long derived findings were held (settling; every hold over the 8 phases: how "
          "many, p50 / max seconds, how many lasted the whole settle_s bound)\n" + "\n".join(held))
