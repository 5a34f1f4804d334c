"""Benchmark the Slack path: ack latency of /cluster status, and slash -> final message.

Run: pytest -m bench -s tests/bench/test_slack_bench.py. Against the demo's SSH server and the
fake Slack, all on loopback; the HTTP requests are signed like Slack's.
"""

from __future__ import annotations

import statistics
import time

import pytest

from tests.fakes.botharness import running_bot

pytestmark = pytest.mark.bench
REQUESTS = 200


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def test_bench_ack_and_answer() -> None:
    async with running_bot(command_timeout_s=10) as h:
        paced = []
        for _ in range(REQUESTS):
            mark = len(h.slack.calls)
            _, _, elapsed = await h.slash("status prod-haproxy")
            paced.append(elapsed * 1000)
            await h.slack.wait_for("chat.update", timeout=10, since=mark)
        acks = []
        for _ in range(REQUESTS):
            _, _, elapsed = await h.slash("status prod-haproxy")
            acks.append(elapsed * 1000)
        # Let the 200 background answers drain before timing single answers.
        await h.slack.wait_for("chat.update", timeout=60, since=0)
        for _ in range(300):
            if sum(1 for c in h.slack.calls if c.method == "chat.update") >= 2 * REQUESTS:
                break
            await h.slack.wait_for("chat.update", timeout=60,
                                   since=len(h.slack.calls))
        totals, node_ms = [], []
        for _ in range(30):
            mark = len(h.slack.calls)
            t0 = time.perf_counter()
            await h.slash("status prod-haproxy")
            await h.slack.wait_for("chat.update", timeout=10, since=mark)
            totals.append((time.perf_counter() - t0) * 1000)
            stats = h.bot.runtime.services.last_durations
            node_ms.append(max(stats.values()) * 1000)
    print(f"\nBENCH slack ack /cluster status, {REQUESTS} signed requests one at a time: "
          f"p50 {pct(paced, 0.5):.1f} ms, p99 {pct(paced, 0.99):.1f} ms (target p99 < 100 ms)")
    print(f"BENCH slack ack /cluster status, {REQUESTS} back-to-back (answers still running): "
          f"p50 {pct(acks, 0.5):.1f} ms, p99 {pct(acks, 0.99):.1f} ms")
    gap = [t - n for t, n in zip(totals, node_ms, strict=True)]
    print(f"BENCH slack slash -> final message, warm 3 nodes: median {statistics.median(totals):.1f} ms; "
          f"slowest node's crm_mon {statistics.median(node_ms):.1f} ms; gap median "
          f"{statistics.median(gap):.1f} ms (target < 30 ms)")
