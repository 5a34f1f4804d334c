"""The leader locks on their real substrates: flock on a file, an advisory lock on a throwaway
PostgreSQL (directly and through a TCP proxy standing in for the network), and the role loop."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from bot.leader import LOCK_FILE, FileLock, Leadership, PgAdvisoryLock, Role, Timing
from bot.metrics import Metrics
from bot.store import AsyncStore
from tests.fakes.tcpproxy import TcpProxy

FAST = Timing(retry_s=0.1, check_s=0.2, timeout_s=0.5)
HOLD = """
import asyncio, sys
from bot.leader import {cls}, Timing
async def main():
    lock = {make}
    assert await lock.try_acquire()
    print("held", flush=True)
    await asyncio.sleep(600)
asyncio.run(main())
"""


async def holder(cls: str, make: str) -> asyncio.subprocess.Process:
    """Another process that takes the lock and keeps it until killed."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", HOLD.format(cls=cls, make=make),
                                                stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    async with asyncio.timeout(30):
        assert await proc.stdout.readline() == b"held\n"
    return proc


async def freed_after_kill(proc: asyncio.subprocess.Process, lock: FileLock | PgAdvisoryLock) -> float:
    """SIGKILL the holder; seconds until `lock` could be taken (bounded)."""
    assert not await lock.try_acquire()
    proc.kill()
    killed = time.monotonic()
    await proc.wait()
    async with asyncio.timeout(10):
        while not await lock.try_acquire():
            await asyncio.sleep(0.02)  # retry cadence of the poll, not a synchronisation
    return time.monotonic() - killed


async def test_file_lock_is_exclusive_and_freed_by_the_holders_death(tmp_path: Path) -> None:
    path = tmp_path / LOCK_FILE
    a, b = FileLock(path), FileLock(path)
    assert await a.try_acquire() and await a.confirm()
    assert not await b.try_acquire() and not await b.confirm()
    await a.release()
    assert await b.try_acquire()
    await b.release()
    proc = await holder("FileLock", f"FileLock(__import__('pathlib').Path({str(path)!r}))")
    assert await freed_after_kill(proc, a) < 2  # the kernel frees it with the process
    await a.release()


async def test_pg_lock_is_exclusive_and_freed_when_its_session_ends(pg_url: str) -> None:
    a, b = PgAdvisoryLock(pg_url, FAST), PgAdvisoryLock(pg_url, FAST)
    assert await a.try_acquire() and await a.confirm()
    assert not await b.try_acquire() and not await b.confirm()
    await a.release()
    assert await b.try_acquire() and await b.confirm()
    await b.release()
    proc = await holder("PgAdvisoryLock", f"PgAdvisoryLock({pg_url!r}, Timing())")
    assert await freed_after_kill(proc, a) < 2  # the server ends the session when the socket closes
    await a.release()


async def test_pg_lock_is_per_database(pg_url: str, pg_server: object) -> None:
    other = pg_url.rsplit("/", 1)[0] + "/postgres"
    a, b = PgAdvisoryLock(pg_url, FAST), PgAdvisoryLock(other, FAST)
    assert await a.try_acquire() and await b.try_acquire()  # two deployments, one server
    await a.release()
    await b.release()


async def test_a_leader_cut_off_from_postgres_steps_down_before_the_server_frees_its_lock(
        pg_url: str) -> None:
    """The timing arithmetic of bot/leader.py, on a real server through a real (proxied) socket."""
    port = int(pg_url.rsplit(":", 1)[1].split("/")[0])
    async with TcpProxy("127.0.0.1", port) as proxy:
        behind = pg_url.replace(f":{port}/", f":{proxy.port}/")
        lock = PgAdvisoryLock(behind, FAST)
        stopped = asyncio.Event()

        async def lose(drain: bool) -> None:
            stopped.set()

        metrics = Metrics()
        store = await AsyncStore.open(pg_url)  # the epochs: direct, only the lock goes through the proxy
        lead = Leadership(lock, store, _nothing, lose, timing=FAST, metrics=metrics)
        await lead.try_once()
        assert lead.role is Role.LEADER
        assert "clusterbot_leader 1.0" in metrics.render().decode()
        running = asyncio.create_task(lead.run())
        try:
            await asyncio.sleep(FAST.check_s * 3)  # a few confirmations get through
            assert lead.role is Role.LEADER and lead.database_ok
            cut = time.monotonic()
            proxy.cut()
            async with asyncio.timeout(10):
                await stopped.wait()
            took = time.monotonic() - cut
            assert lead.role is Role.FOLLOWER and lead.database_ok is False
            assert took <= FAST.step_down_s + 0.5, took  # slack for a loaded machine
            shown = metrics.render().decode()
            assert "clusterbot_leader 0.0" in shown and "clusterbot_leader_changes_total 2.0" in shown
            # Meanwhile the server still holds the session's lock: nobody else leads yet.
            other = PgAdvisoryLock(pg_url, FAST)
            assert not await other.try_acquire()
            await proxy.sever_upstream()  # the server's keepalives gave up on the dead client
            async with asyncio.timeout(10):
                while not await other.try_acquire():
                    await asyncio.sleep(0.05)
            await other.release()
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            await store.close()


async def test_followers_take_turns_with_rising_epochs(tmp_path: Path) -> None:
    path = tmp_path / LOCK_FILE
    gained: list[tuple[str, int]] = []

    stores = [await AsyncStore.open(tmp_path / "state.sqlite3") for _ in range(2)]

    def make(name: str, store: AsyncStore) -> Leadership:
        async def gain(epoch: int) -> None:
            gained.append((name, epoch))

        return Leadership(FileLock(path), store, gain, _nothing_lost, timing=FAST, holder=name)

    a, b = make("a", stores[0]), make("b", stores[1])
    await a.try_once()
    await b.try_once()
    assert (a.role, b.role) == (Role.LEADER, Role.FOLLOWER)
    task = asyncio.create_task(b.run())
    try:
        await a.resign()
        async with asyncio.timeout(10):
            while b.role is not Role.LEADER:
                await asyncio.sleep(0.02)
        assert gained == [("a", 1), ("b", 2)]
        assert b.status()["role"] == "leader" and b.status()["epoch"] == 2
        assert (await stores[0].leadership()).holder == "b"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        for store in stores:
            await store.close()
    assert b.role is Role.FOLLOWER  # cancelled while leading: its work was stopped too


async def _nothing(epoch: int) -> None:
    pass


async def _nothing_lost(drain: bool) -> None:
    pass

