"""Benchmark: parse + health + render. Run: pytest -m bench -s tests/bench/test_core_bench.py"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import pytest

from bot.pacemaker.health import Expectations
from bot.pacemaker.merge import single
from bot.pacemaker.parse import parse
from bot.render.blocks import to_blocks
from bot.render.status import status_doc
from bot.render.text import to_text
from tests.conftest import capture
from tests.gen_crm_mon import generate

pytestmark = pytest.mark.bench
PROD = Expectations(vips=("virtual_ip_1", "virtual_ip_2", "virtual_ip_3"),
                    everywhere=("loadbalancer-clone",))


def pipeline(data: bytes) -> None:
    doc = status_doc(single(parse(data), PROD, cluster="prod-haproxy"), PROD)
    to_blocks(doc)
    to_text(doc)


def median_ms(fn: Callable[[], None], runs: int) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples), max(samples)


def test_bench_parse_health_render() -> None:
    healthy = capture("a_healthy", "node1")
    big = generate(nodes=32, resources=1000)
    small_med, small_max = median_ms(lambda: pipeline(healthy), 300)
    big_med, big_max = median_ms(lambda: pipeline(big), 30)
    print(f"\nBENCH core healthy 3-node: median {small_med:.2f} ms (max {small_max:.2f}) target < 5 ms")
    print(f"BENCH core 32 nodes x 1000 resources ({len(big) // 1024} KiB): "
          f"median {big_med:.1f} ms (max {big_max:.1f}) target < 100 ms")
    assert small_med > 0 and big_med > 0
