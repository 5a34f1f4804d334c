"""Benchmark the collector: cold vs warm status, raw asyncssh, and a 50-cluster sweep.

Run: pytest -m bench -s tests/bench/test_collect_bench.py. The fake nodes run in a separate
process, answering the real healthy capture after 12 ms (a real node's local crm_mon time).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import asyncssh
import pytest

from bot.collect import Ask, Collector
from bot.settings import ClusterConfig, NodeConfig, Settings
from bot.shell import SHELL_COMMAND, frame, new_nonce, stderr_marker, stdout_marker
from bot.ssh import SshPool

pytestmark = pytest.mark.bench
NODE_MS = 12.0
CRM_MON = "crm_mon --one-shot --inactive --output-as=xml"


@asynccontextmanager
async def servers(tmp: Path, clusters: int) -> AsyncIterator[dict[str, Any]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fakes.serve_nodes", str(tmp), str(clusters), str(NODE_MS),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None and proc.stdin is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout=120)
    try:
        yield {**json.loads(line), "pid": proc.pid}
    finally:
        proc.stdin.close()
        await asyncio.wait_for(proc.wait(), timeout=30)


def cpu_ms(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc), to show where a sweep's time goes."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def configs(info: dict[str, Any]) -> list[ClusterConfig]:
    return [ClusterConfig(
        name=c["name"], ssh_user="clusterbot", ssh_key=Path(info["key"]),
        known_hosts=Path(info["known_hosts"]), sudo=False,
        nodes=tuple(NodeConfig(name=f"node{i + 1}", host="127.0.0.1", port=p)
                    for i, p in enumerate(c["ports"])),
    ) for c in info["clusters"]]


async def timed(fn: Callable[[], Awaitable[object]], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return samples


async def open_raw(info: dict[str, Any], clusters: list[ClusterConfig]) -> list[asyncssh.SSHClientConnection]:
    return [await asyncssh.connect("127.0.0.1", n.port, username="clusterbot", config=None,
                                   client_keys=[info["key"]], known_hosts=info["known_hosts"],
                                   agent_path=None, encryption_algs=["aes128-gcm@openssh.com"])
            for c in clusters for n in c.nodes]


async def raw_warm(conns: list[asyncssh.SSHClientConnection], runs: int) -> list[float]:
    """The transport's floor: plain asyncssh, one crm_mon session per node on open connections."""
    async def once() -> None:
        await asyncio.gather(*(c.run(CRM_MON) for c in conns))
    return await timed(once, runs)


class _FloorSession(asyncssh.SSHClientSession[bytes]):
    """The least a client can do per framed read: buffer, spot both markers, count down."""

    def __init__(self) -> None:
        self.out, self.err = bytearray(), bytearray()
        self.ends: tuple[bytes, bytes] | None = None
        self.answered: Callable[[], None] = lambda: None

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        (self.err if datatype == asyncssh.EXTENDED_DATA_STDERR else self.out).extend(data)
        if self.ends and self.ends[0] in self.out[-80:] and self.err.endswith(self.ends[1]):
            self.out.clear()
            self.err.clear()
            self.ends = None
            self.answered()


async def floor_sweep(conns: list[asyncssh.SSHClientConnection], runs: int) -> tuple[list[float], float]:
    """asyncssh's own floor for a sweep: one framed crm_mon per node on open read shells,
    callbacks only (no tasks, timeouts, pool or parsing). Returns (wall ms, client CPU ms)."""
    sessions = []
    for conn in conns:
        channel, session = await conn.create_session(_FloorSession, SHELL_COMMAND, encoding=None)
        sessions.append((channel, cast(_FloorSession, session)))
    loop = asyncio.get_running_loop()

    async def once() -> None:
        done, left = loop.create_future(), [len(sessions)]

        def answered() -> None:
            left[0] -= 1
            if left[0] == 0:
                done.set_result(None)
        for channel, session in sessions:
            nonce = new_nonce()
            session.ends = (stdout_marker(nonce, 0).encode(), stderr_marker(nonce).encode())
            session.answered = answered
            channel.write(frame(CRM_MON, nonce).encode())
        await done
    await timed(once, 2)
    cpu0 = time.process_time()
    wall = await timed(once, runs)
    cpu = (time.process_time() - cpu0) * 1000 / runs
    for channel, _ in sessions:
        channel.close()
    return wall, cpu


def med(samples: list[float]) -> float:
    return statistics.median(samples)


async def test_bench_status(tmp_path: Path) -> None:
    async with servers(tmp_path, 50) as info:
        clusters = configs(info)
        settings = Settings(clusters=tuple(clusters), command_timeout_s=30, connect_timeout_s=30)
        one = clusters[0]

        async def cold() -> None:
            async with SshPool() as pool:
                await Collector(pool, settings).collect(one)

        async def raw() -> None:
            async def node(port: int) -> None:
                async with asyncssh.connect("127.0.0.1", port, username="clusterbot",
                                            client_keys=[info["key"]], known_hosts=info["known_hosts"],
                                            config=None, agent_path=None) as conn:
                    await conn.run("crm_mon --one-shot --inactive --output-as=xml")
            await asyncio.gather(*(node(n.port) for n in one.nodes))

        cold_ms = await timed(cold, 15)
        raw_ms = await timed(raw, 15)
        conns = await open_raw(info, clusters)
        try:
            raw_warm_ms = await raw_warm(conns[:3], 40)
            raw_sweep_ms = await raw_warm(conns, 10)
            server0 = cpu_ms(info["pid"])
            floor_ms, floor_cpu_ms = await floor_sweep(conns, 10)
            floor_server_ms = (cpu_ms(info["pid"]) - server0) / 12  # its 2 warm-ups count too
        finally:
            for c in conns:
                c.close()
        async with SshPool() as pool:
            collector = Collector(pool, settings)
            await collector.collect_many(clusters)  # open every connection once
            fresh_ms = await timed(lambda: collector.collect(one, ask=Ask.ALL), 40)
            warm_ms = await timed(lambda: collector.collect(one), 40)
            cpu0, server0 = time.process_time(), cpu_ms(info["pid"])
            sweep_ms = await timed(lambda: collector.collect_many(clusters), 10)
            sweep_cpu_ms = (time.process_time() - cpu0) * 100
            server_cpu_ms = (cpu_ms(info["pid"]) - server0) / 10
            assert all(r.healthy for r in await collector.collect_many(clusters))
            stats = pool.stats
    print(f"\nBENCH status 3 nodes, node command {NODE_MS:.0f} ms: cold {med(cold_ms):.1f} ms, "
          f"raw asyncssh connect+run {med(raw_ms):.1f} ms, warm {med(warm_ms):.1f} ms "
          f"(overhead above node time {med(warm_ms) - NODE_MS:.1f} ms, target < 10 ms); "
          f"raw asyncssh crm_mon per node on open connections {med(raw_warm_ms):.1f} ms")
    print(f"BENCH status 3 nodes warm with every command fresh (crm_mon, daemons, quorum, links: "
          f"what remediation checks run): {med(fresh_ms):.1f} ms")
    print(f"BENCH sweep 50 clusters x 3 nodes warm: {med(sweep_ms):.1f} ms = "
          f"{med(sweep_ms) / med(warm_ms):.2f}x one cluster (target < 3x); "
          f"client CPU {sweep_cpu_ms:.0f} ms and fake nodes' server CPU {server_cpu_ms:.0f} ms per "
          f"sweep (2 cores); raw asyncssh, one crm_mon session per node "
          f"on 150 open connections: {med(raw_sweep_ms):.1f} ms")
    print(f"BENCH asyncssh floor for the sweep (150 open read shells, callbacks only, none of our "
          f"code): {med(floor_ms):.1f} ms, client CPU {floor_cpu_ms:.0f} ms and server CPU "
          f"{floor_server_ms:.0f} ms per sweep; "
          f"3x one cluster is {3 * med(warm_ms):.0f} ms")
    print(f"BENCH pool: {stats.shell_commands}/{stats.commands_run} commands on "
          f"{stats.shells_opened} read shells")
    assert med(warm_ms) < med(cold_ms)
    assert stats.shell_commands == stats.commands_run  # every read went through a read shell
