"""What the connection pool buys: cold vs warm command latency over real loopback SSH.

Run with: python -m pytest -m bench -s tests/bench/test_ssh_bench.py
Figures depend on the machine; the only assertion is the one the design rests on: a warm
command on the pooled connection is cheaper than a fresh connection per command.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncssh
import pytest

from bot.demo.sshd import KeyMaterial, LoopbackSshServer
from bot.ssh import SshPool, SshTarget

pytestmark = pytest.mark.bench

USER = "clusterbot"
RUNS = 50
CONCURRENT = 100


async def instant(command: str, username: str) -> tuple[int, str, str]:
    return 0, "ok\n", ""


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[tuple[KeyMaterial, LoopbackSshServer]]:
    keys = KeyMaterial.create(tmp_path)
    async with LoopbackSshServer(instant, authorized_key=keys.public_key, username=USER) as srv:
        keys.write_known_hosts([srv])
        yield keys, srv


def _target(keys: KeyMaterial, server: LoopbackSshServer) -> SshTarget:
    return SshTarget(
        node="bench1", host="127.0.0.1", port=server.port, user=USER,
        client_keys=(keys.client_key_path,), known_hosts=keys.known_hosts, sudo=True,
    )


async def _median_ms(op: Callable[[], Awaitable[object]], runs: int = RUNS) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        await op()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


async def test_cold_vs_warm_command_latency(node: tuple[KeyMaterial, LoopbackSshServer]) -> None:
    keys, server = node
    target = _target(keys, server)

    async def cold() -> None:
        async with SshPool() as pool:
            await pool.run(target, ["crm_mon", "-1"], timeout_s=5)

    async def raw() -> None:
        async with asyncssh.connect(
            "127.0.0.1", server.port, username=USER, client_keys=[str(keys.client_key_path)],
            known_hosts=str(keys.known_hosts), config=None, agent_path=None,
        ) as conn:
            await conn.run("sudo -n crm_mon -1", stdin=asyncssh.DEVNULL)

    async with SshPool() as pool:
        await pool.run(target, ["true"], timeout_s=5)  # connect outside the measurement

        async def warm() -> None:
            await pool.run(target, ["crm_mon", "-1"], timeout_s=5)

        cold_ms, raw_ms, warm_ms = await _median_ms(cold), await _median_ms(raw), \
            await _median_ms(warm)
        burst_s = await _burst(pool, target)
        opened = pool.stats.connections_opened

    print(f"\nssh bench over loopback, median of {RUNS} runs (instant handler, ed25519 keys)")
    print(f"  cold  SshPool, new connection per command : {cold_ms:7.2f} ms")
    print(f"  raw   asyncssh.connect + run per command   : {raw_ms:7.2f} ms")
    print(f"  warm  SshPool, pooled connection          : {warm_ms:7.2f} ms")
    print(f"  burst {CONCURRENT} concurrent warm commands       : {burst_s * 1000:7.2f} ms total"
          f" ({CONCURRENT / burst_s:,.0f} cmd/s), connections opened: {opened}")
    assert warm_ms < cold_ms
    assert opened == 1


async def _burst(pool: SshPool, target: SshTarget) -> float:
    started = time.perf_counter()
    async with asyncio.timeout(30):
        await asyncio.gather(
            *(pool.run(target, ["crm_mon", "-1"], timeout_s=10) for _ in range(CONCURRENT))
        )
    return time.perf_counter() - started
