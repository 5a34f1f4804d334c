"""Benchmark the store on both backends through AsyncStore, as the bot uses it: one watcher poll's
writes as one transaction (watch state, an incident, its root message, an audit row), an approval
START compare-and-set, and how long the event loop stalls meanwhile (it should not: every call runs
on the store's thread). SQLite is a real file (synchronous = FULL); PostgreSQL is the throwaway
test server on loopback (fsync off: it measures round trips and locking, not a disk).

Run: pytest -m bench -s tests/bench/test_store_bench.py
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from bot.approvals import Approve, Start
from bot.pacemaker.health import Severity
from bot.store import AsyncStore, Store
from tests.integration.test_store import SOON, T0, make

pytestmark = pytest.mark.bench
POLLS = 300
STARTS = 100


def _poll(db: Store, n: int) -> None:
    db.save_watch_state("prod-haproxy", f'{{"poll": {n}}}')
    inc = db.open_incident(cluster="prod-haproxy", key=f"node:node{n}", now=T0, severity=Severity.WARNING,
                           title=f"node{n} went OFFLINE", channel="C1")
    db.enqueue("root", {"incident": inc.id}, now=T0)
    db.append_audit(now=T0, actor="clusterbot", event="probe")


def _line(label: str, stall_s: float, *timings: tuple[str, list[float]]) -> str:
    cols = [f"{what} p50 {_pct(t, 0.5) * 1000:5.2f} ms  p99 {_pct(t, 0.99) * 1000:6.2f} ms"
            for what, t in timings]
    return "  | ".join([f"{label:28}", *cols, f"worst loop stall {stall_s * 1000:5.2f} ms"])


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _loop_lag(stop: asyncio.Event, worst: list[float]) -> None:
    """The longest the loop took to come back to a 1 ms sleep: what a blocking call would show."""
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(0.001)
        worst[0] = max(worst[0], time.perf_counter() - t - 0.001)


async def _measure(target: str | Path) -> str:
    store = await AsyncStore.open(target)
    stop, worst = asyncio.Event(), [0.0]
    lag = asyncio.create_task(_loop_lag(stop, worst))
    try:
        polls = []
        for n in range(POLLS):
            t = time.perf_counter()
            await store.transaction(lambda db, n=n: _poll(db, n))
            polls.append(time.perf_counter() - t)
        starts = []
        for i in range(STARTS):
            rid = f"r{i}"
            await store.create_request(make(rid, cluster=f"c{i}"))
            await store.apply(rid, Approve("U2"), now=SOON, is_approver=True)
            t = time.perf_counter()
            await store.apply(rid, Start(), now=SOON, is_approver=False)
            starts.append(time.perf_counter() - t)
    finally:
        stop.set()
        await lag
        await store.close()
    return _line(f"{store.backend}, on its thread", worst[0], ("poll txn", polls), ("START", starts))


async def _blocking(target: Path) -> str:
    """Before: the synchronous store called on the loop, as the bot did until issue 15."""
    stop, worst = asyncio.Event(), [0.0]
    lag = asyncio.create_task(_loop_lag(stop, worst))
    polls = []
    with Store.open(target) as db:
        for n in range(POLLS):
            t = time.perf_counter()
            with db.transaction():
                _poll(db, n)
            polls.append(time.perf_counter() - t)
            await asyncio.sleep(0)  # the loop's other tasks run between polls, never during one
    stop.set()
    await lag
    return _line("sqlite, on the loop (before)", worst[0], ("poll txn", polls))


async def test_bench_store_per_poll_transaction(tmp_path: Path, pg_url: str) -> None:
    lines = [await _blocking(tmp_path / "before.sqlite3"), await _measure(tmp_path / "bench.sqlite3"),
             await _measure(pg_url)]
    print(f"\nstore through AsyncStore: {POLLS} poll transactions, {STARTS} START compare-and-sets")
    print("\n".join(lines))
