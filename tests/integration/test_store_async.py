"""AsyncStore, the store as the event loop uses it, on both backends: calls run on the store's own
thread, two stores (two connections, as two replicas) racing on one approval, a whole function as
one transaction, and a PostgreSQL restart: StoreUnavailable in one line, then a reconnect by itself."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest

from bot.approvals import Approve, Request, Start, State
from bot.errors import ApprovalError, StoreUnavailable
from bot.pacemaker.health import Severity
from bot.store import AsyncStore, Store
from tests.integration.test_store import SOON, T0, Target, make, path
from tests.pg import PgServer, free_port

pytestmark = pytest.mark.integration
__all__ = ["path"]  # a fixture


@pytest.fixture
async def store(path: Target) -> AsyncIterator[AsyncStore]:
    s = await AsyncStore.open(path)
    yield s
    await s.close()


async def test_calls_run_on_the_stores_thread_not_the_loops(store: AsyncStore) -> None:
    where = await store.call(lambda db: threading.current_thread())
    assert where is not threading.current_thread() and where.name.startswith("store")
    await store.create_request(make())
    assert await store.get_request("r1") == make()


async def test_two_stores_race_one_start_exactly_one_wins(store: AsyncStore, path: Target) -> None:
    # Two replicas: two AsyncStores, two connections, each on its own thread.
    await store.create_request(make())
    await store.apply("r1", Approve("U2"), now=SOON, is_approver=True)
    other = await AsyncStore.open(path)
    try:
        outcomes = await asyncio.gather(
            *(s.apply("r1", Start(), now=SOON, is_approver=False) for s in (store, other) * 5),
            return_exceptions=True)
    finally:
        await other.close()
    wins = [o for o in outcomes if isinstance(o, Request)]
    assert len(wins) == 1 and wins[0].state is State.RUNNING
    assert all(isinstance(o, ApprovalError) for o in outcomes if o not in wins)
    starts = [e for e in await store.audit_all() if e.event == "start"]
    assert len(starts) == 1
    holder = await store.lock_holder("prod-haproxy")
    assert holder is not None and holder.request_id == "r1"


async def test_a_transaction_function_commits_whole_or_not_at_all(store: AsyncStore) -> None:
    def poll(db: Store, fail: bool) -> int:
        db.save_watch_state("prod-haproxy", '{"poll": 1}')
        inc = db.open_incident(cluster="prod-haproxy", key="node:node3", now=T0,
                               severity=Severity.WARNING, title="node3 went OFFLINE", channel="C1")
        if fail:
            raise OSError("disk full")
        return db.enqueue("root", {"incident": inc.id}, now=T0)

    with pytest.raises(OSError):
        await store.transaction(lambda db: poll(db, fail=True))
    assert await store.load_watch_state("prod-haproxy") is None
    assert await store.open_incidents("prod-haproxy") == []
    item = await store.transaction(lambda db: poll(db, fail=False))
    assert [i.id for i in await store.due(SOON)] == [item]


@pytest.fixture
async def pg_store(pg_server: PgServer, pg_url: str) -> AsyncIterator[tuple[AsyncStore, PgServer]]:
    s = await AsyncStore.open(pg_url)
    yield s, pg_server
    await s.close()


async def test_postgresql_restart_refuses_in_one_line_then_reconnects(
        pg_store: tuple[AsyncStore, PgServer]) -> None:
    store, server = pg_store
    await store.create_request(make())
    await asyncio.to_thread(server.stop)
    try:
        for _ in range(2):  # the broken connection, then a refused new one
            with pytest.raises(StoreUnavailable) as caught:
                await store.apply("r1", Approve("U2"), now=SOON, is_approver=True)
            said = str(caught.value)
            assert said.startswith("the state database is unavailable") or said.startswith(
                "cannot connect to PostgreSQL"), said
            assert "\n" not in said and len(said) < 300
    finally:
        await asyncio.to_thread(server.start)
    after = await store.apply("r1", Approve("U2"), now=SOON, is_approver=True)  # reconnected
    assert after.state is State.APPROVED and after.version == 2  # the refused clicks wrote nothing
    assert [e.event for e in await store.audit_all()] == ["request", "approve"]


async def test_opening_an_unreachable_postgresql_is_one_line() -> None:
    with pytest.raises(StoreUnavailable, match=r"^cannot connect to PostgreSQL: .*refused[^\n]*$"):
        await AsyncStore.open(f"postgresql://clusterbot@127.0.0.1:{free_port()}/clusterbot")
