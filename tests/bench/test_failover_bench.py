"""Benchmark two replicas: failover time after SIGKILL, alert lag for a change made during the
failover, alerts lost and duplicated over 10 failovers (SIGKILL, SIGKILL mid-send, SIGTERM), and
the /cluster status ack with both replicas serving.

Run: pytest -m bench -s tests/bench/test_failover_bench.py. Real `clusterbot run` processes,
in-process SSH nodes and the fake Slack on loopback; state in SQLite (file lock) or PostgreSQL
(advisory lock, the throwaway server of tests/pg.py).
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path

import pytest

from tests.fakes.nodes import fake_cluster
from tests.fakes.slack import Call, FakeSlack
from tests.integration.replicas import FAST, Replica, Replicas, replicas

pytestmark = pytest.mark.bench
ROUNDS = 10
POLL_S = float(FAST["poll_interval_s"])
CHANGES = {"c_node3_crashed": "node3 went OFFLINE", "a_healthy": "node3 is back ONLINE"}
# Every change is news: no flap damping, no reopening of the last incident.
SETTINGS = {"flap_limit": 10000, "flap_window_s": 0.2}


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ts(record: dict[str, object]) -> float:
    return datetime.fromisoformat(str(record["ts"])).timestamp()


@asynccontextmanager
async def pair(tmp: Path, store: str | None) -> AsyncIterator[tuple[Replicas, list[Replica]]]:
    async with fake_cluster(tmp) as fc, FakeSlack() as slack, \
            replicas(slack, fc, tmp, store=store, **SETTINGS) as group:
        first = await group.start("r0")
        await first.leading()
        yield group, [first, await group.start("r1")]


def announcing(group: Replicas, needle: str, since: int, until: int) -> list[Call]:
    return [c for c in group.slack.calls[since:until] if c.method == "chat.postMessage" and c.ok
            and needle in str(c.params.get("text"))]


async def failovers(tmp: Path, store: str | None, how: str) -> str:
    """ROUNDS handovers, the cluster changing at each; one line of figures."""
    taken, lags, rounds = [], [], []
    mid_send = how == "SIGKILL mid-send"
    async with pair(tmp, store) as (group, live):
        scenario = "a_healthy"
        for n in range(ROUNDS):
            leader, follower = live
            scenario = "c_node3_crashed" if scenario == "a_healthy" else "a_healthy"
            needle = CHANGES[scenario]
            mark, seen = len(group.slack.calls), len(follower.records)

            def says(c: Call, needle: str = needle) -> bool:
                return needle in str(c.params.get("text"))

            if mid_send:  # killed the moment Slack has the post, before the leader can record it
                group.cluster.set_scenario(scenario)
                await group.wait_post(says)
                leader.kill()
            else:
                leader.proc.send_signal(signal.SIGTERM if how == "SIGTERM" else signal.SIGKILL)
                group.cluster.set_scenario(scenario)
            t0, m0 = time.time(), time.monotonic()
            gained = await follower.wait_log(lambda r: r.get("role") == "leader", after=seen)
            taken.append(ts(gained) - t0)
            post = await group.wait_post(lambda c, says=says, m0=m0: says(c) and (mid_send or c.at >= m0))
            lags.append(post.at - m0)
            await leader.stop(signal.SIGKILL)
            live = [follower, await group.start(f"r{n + 2}")]
            rounds.append((needle, mark))
        await asyncio.sleep(3 * POLL_S)  # a bench's quiet tail: a late duplicate would show by now
        ends = [m for _, m in rounds[1:]] + [len(group.slack.calls)]
        counts = [len(announcing(group, needle, mark, end))
                  for (needle, mark), end in zip(rounds, ends, strict=True)]
    lost, doubled = counts.count(0), sum(max(0, c - 1) for c in counts)
    lag = "" if mid_send else f"alert lag p50 {pct(lags, 0.5):.2f} s max {max(lags):.2f} s, "
    return (f"{how} x{ROUNDS}: failover p50 {pct(taken, 0.5):.2f} s max {max(taken):.2f} s "
            f"(target <= {2 * POLL_S + 1:.1f} s at poll {POLL_S:g} s), {lag}alerts lost {lost}, "
            f"duplicated {doubled}")


async def status_acks(tmp: Path, store: str | None) -> str:
    acks: list[float] = []
    async with pair(tmp, store) as (group, live):
        for i in range(200):
            t0 = time.perf_counter()
            assert await live[i % 2].slash(group.slack, "status prod-haproxy", "U0USER") == 200
            acks.append((time.perf_counter() - t0) * 1000)
    return (f"status ack, 200 alternating over both replicas: p50 {pct(acks, 0.5):.1f} ms, "
            f"p99 {pct(acks, 0.99):.1f} ms")


@pytest.mark.parametrize("how", ["SIGKILL", "SIGKILL mid-send", "SIGTERM"])
async def test_bench_failover_sqlite(tmp_path: Path, how: str) -> None:
    print(f"\nBENCH failover sqlite (file lock): {await failovers(tmp_path, None, how)}")


async def test_bench_status_ack_two_replicas_sqlite(tmp_path: Path) -> None:
    print(f"\nBENCH sqlite {await status_acks(tmp_path, None)}")


@pytest.mark.parametrize("how", ["SIGKILL", "SIGKILL mid-send", "SIGTERM"])
async def test_bench_failover_postgresql(tmp_path: Path, pg_url: str, how: str) -> None:
    print(f"\nBENCH failover postgresql (advisory lock): {await failovers(tmp_path, pg_url, how)}")


async def test_bench_status_ack_two_replicas_postgresql(tmp_path: Path, pg_url: str) -> None:
    print(f"\nBENCH postgresql {await status_acks(tmp_path, pg_url)}")
