"""The store on both backends (a real SQLite file, a real throwaway PostgreSQL): compare-and-set
under concurrency, the append-only audit, what a restart does to requests, the outbox order, locks,
watcher state and incidents, migrations."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import bot.store
from bot.approvals import (
    Approve,
    Cancel,
    Event,
    Expired,
    Finish,
    Request,
    Result,
    Start,
    State,
    new_request,
    transition,
)
from bot.errors import ApprovalError, ClusterBusy, ConfigError
from bot.pacemaker.health import Severity
from bot.store import INTERRUPTED, IncidentState, Store
from bot.store.dialect import Connection, connect, is_postgresql

pytestmark = pytest.mark.integration

T0 = datetime(2024, 5, 1, 21, 20, tzinfo=UTC)
SOON = T0 + timedelta(minutes=1)


def make(id: str = "r1", *, cluster: str = "prod-haproxy", required: int = 1,
         ttl_s: float = 900.0) -> Request:
    return new_request(
        id=id, cluster=cluster, action="cleanup", args=("virtual_ip_2",), node="node1",
        argv=("pcs", "resource", "cleanup", "virtual_ip_2"), requester="U1", channel="C1",
        reason="virtual_ip_2 failed on node3", prediction="virtual_ip_2 starts on node3",
        fingerprint="f" * 16, now=T0, ttl_s=ttl_s, required_approvals=required,
        allow_self_approval=False)


Target = str | Path  # a SQLite file or a postgresql:// URL


@pytest.fixture(params=["sqlite", "postgresql"])
def path(request: pytest.FixtureRequest, tmp_path: Target) -> Target:
    """Where the store lives: each test runs on both backends, a fresh database each time."""
    if request.param == "sqlite":
        return tmp_path / "state.db"
    return str(request.getfixturevalue("pg_url"))  # tests/pg.py: a fresh database on a real server


@contextmanager
def raw(path: Target) -> Iterator[Connection]:
    """Another connection to the same database, beside the store's (no migration, no Store)."""
    conn = connect(path)
    try:
        yield conn
    finally:
        conn.close()


def driver_error(path: Target) -> type[Exception]:
    if is_postgresql(path):
        import psycopg
        return psycopg.Error
    return sqlite3.DatabaseError


def count(conn: Connection, table: str) -> int:
    row = conn.execute(f"SELECT count(*) AS n FROM {table}").one()
    assert row is not None
    return int(row["n"])


@pytest.fixture
def store(path: Target) -> Iterator[Store]:
    with Store.open(path) as s:
        yield s


def approved(store: Store, id: str = "r1", **kw: object) -> Request:
    store.create_request(make(id, **kw))  # type: ignore[arg-type]
    return store.apply(id, Approve("U2"), now=SOON, is_approver=True)


def events(store: Store) -> list[tuple[str, str | None, str | None]]:
    return [(e.event, e.state_from, e.state_to) for e in store.audit_all()]


# ---------------------------------------------------------------- requests


def test_round_trip_and_transition(store: Store) -> None:
    req = make()
    store.create_request(req)
    assert store.get_request("r1") == req
    assert store.get_request("nope") is None
    after = store.apply("r1", Approve("U2"), now=SOON, is_approver=True)
    assert store.get_request("r1") == after
    assert (after.state, after.version) == (State.APPROVED, 2)
    assert events(store) == [("request", None, "pending"), ("approve", "pending", "approved")]
    assert store.audit_tail(1)[0].detail == {"approvals": "1/1"}


def test_only_fresh_requests_can_be_created(store: Store) -> None:
    with pytest.raises(ValueError, match="must be pending"):
        store.create_request(replace(make(), state=State.APPROVED, approvers=("U2",)))
    assert store.get_request("r1") is None


def test_message_ts_is_kept_across_transitions(store: Store) -> None:
    store.create_request(make())
    store.set_message_ts("r1", "1714598400.000100")
    after = store.apply("r1", Approve("U2"), now=SOON, is_approver=True)
    assert after.message_ts == "1714598400.000100"
    assert store.get_request("r1") == after


def test_refused_clicks_are_audited(store: Store) -> None:
    store.create_request(make())
    with pytest.raises(ApprovalError, match="not an approver for prod-haproxy"):
        store.apply("r1", Approve("U9"), now=SOON, is_approver=False)
    with pytest.raises(ApprovalError, match="no longer exists"):
        store.apply("gone", Approve("U2"), now=SOON, is_approver=True)
    tail = store.audit_tail(2)
    assert [(e.actor, e.request_id, e.state_to) for e in tail] == [
        ("U9", "r1", "pending"), ("U2", "gone", None)]
    assert tail[0].detail == {"refused": "you are not an approver for prod-haproxy"}
    assert store.get_request("r1") == make()  # unchanged, version too


def test_late_click_is_persisted_as_expired(store: Store) -> None:
    store.create_request(make())
    with pytest.raises(Expired, match="expired at 21:35 UTC"):
        store.apply("r1", Approve("U2"), now=T0 + timedelta(hours=1), is_approver=True)
    req = store.get_request("r1")
    assert req is not None and req.state is State.EXPIRED and req.approvers == ()
    last = store.audit_tail(1)[0]
    assert (last.event, last.actor, last.state_to) == ("expire", "clusterbot", "expired")
    assert last.detail == {"late": "approve", "by": "U2"}


# ---------------------------------------------------------------- compare-and-set


async def test_twenty_concurrent_starts_from_tasks_one_wins(store: Store) -> None:
    approved(store)

    async def start() -> Request:
        await asyncio.sleep(0)  # all twenty are scheduled before any runs
        return store.apply("r1", Start(), now=SOON, is_approver=False)

    outcomes = await asyncio.gather(*(start() for _ in range(20)), return_exceptions=True)
    assert_one_start(store, outcomes)


def test_twenty_starts_from_four_threads_with_own_connections_one_wins(store: Store, path: Target) -> None:
    approved(store)
    barrier = threading.Barrier(4)

    def worker(_: int) -> list[Request | BaseException]:
        with Store.open(path) as mine:
            barrier.wait()  # release all four together for the most contention
            return [_try(lambda: mine.apply("r1", Start(), now=SOON, is_approver=False))
                    for _ in range(5)]

    with ThreadPoolExecutor(4) as pool:
        outcomes = [o for batch in pool.map(worker, range(4)) for o in batch]
    assert_one_start(store, outcomes)


async def test_starts_from_threads_via_asyncio(store: Store, path: Target) -> None:
    approved(store)

    def start() -> Request | BaseException:
        with Store.open(path) as mine:
            return _try(lambda: mine.apply("r1", Start(), now=SOON, is_approver=False))

    outcomes = await asyncio.gather(*(asyncio.to_thread(start) for _ in range(20)))
    assert_one_start(store, list(outcomes))


def _try(call: Callable[[], Request]) -> Request | BaseException:
    try:
        return call()
    except ApprovalError as exc:
        return exc


def assert_one_start(store: Store, outcomes: list[Request | BaseException]) -> None:
    wins = [o for o in outcomes if isinstance(o, Request)]
    losses = [o for o in outcomes if not isinstance(o, Request)]
    assert len(wins) == 1 and wins[0].state is State.RUNNING
    assert len(losses) == len(outcomes) - 1
    assert all(isinstance(e, ApprovalError) for e in losses), losses
    assert [e for e in events(store) if e[0] == "start"] == [("start", "approved", "running")]
    holder = store.lock_holder("prod-haproxy")
    assert holder is not None and holder.request_id == "r1"


def interleave(monkeypatch: pytest.MonkeyPatch, path: Target, event: Event) -> None:
    """Make the next transition lose its compare-and-set: another connection writes first."""
    calls = 0

    def racing(req: Request, ev: Event, *, now: datetime, is_approver: bool) -> Request:
        nonlocal calls
        calls += 1
        if calls == 1:
            with Store.open(path) as other:
                other.apply(req.id, event, now=now, is_approver=True)
        return transition(req, ev, now=now, is_approver=is_approver)

    monkeypatch.setattr(bot.store, "transition", racing)


def test_lost_cas_retries_on_the_fresh_row(store: Store, path: Target,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    store.create_request(make(required=2))
    interleave(monkeypatch, path, Approve("U3"))
    after = store.apply("r1", Approve("U2"), now=SOON, is_approver=True)
    # Neither approval is lost: the retry applied U2's on top of U3's.
    assert (after.state, after.approvers, after.version) == (State.APPROVED, ("U3", "U2"), 3)


def test_lost_cas_on_start_refuses_the_second(store: Store, path: Target,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    approved(store)
    interleave(monkeypatch, path, Start())
    with pytest.raises(ApprovalError, match="already running"):
        store.apply("r1", Start(), now=SOON, is_approver=False)
    assert [e for e in events(store) if e[0] == "start"] == [("start", "approved", "running")]


# ---------------------------------------------------------------- audit


def test_audit_is_append_only(store: Store, path: Target) -> None:
    store.append_audit(now=T0, actor="U9", event="forged_payload", detail={"why": "bad signature"})
    # Written past the store, by another connection: the database itself refuses.
    with raw(path) as other:
        with pytest.raises(driver_error(path), match="audit is append-only"):
            other.execute("UPDATE audit SET actor = 'U1'")
        with pytest.raises(driver_error(path), match="audit is append-only"):
            other.execute("DELETE FROM audit")
        if is_postgresql(path):
            with pytest.raises(driver_error(path), match="audit is append-only"):
                other.execute("TRUNCATE audit")
    assert [e.actor for e in store.audit_all()] == ["U9"]


def test_audit_all_pages_through_everything(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bot.store, "AUDIT_PAGE", 3)
    for i in range(8):
        store.append_audit(now=T0, actor=f"U{i}", event="x")
    assert [e.actor for e in store.audit_all()] == [f"U{i}" for i in range(8)]
    assert [e.actor for e in store.audit_tail(2)] == ["U6", "U7"]
    assert store.audit_tail(1)[0].to_dict()["at"] == "2024-05-01T21:20:00.000000+00:00"


# ---------------------------------------------------------------- restart


def test_restart_resumes_pending_expires_due_and_fails_running(path: Target) -> None:
    with Store.open(path) as s:
        s.create_request(make("waiting", ttl_s=3600))
        s.create_request(make("stale", ttl_s=60))
        approved(s, "busy", cluster="prod-db")
        s.apply("busy", Start(), now=SOON, is_approver=False)
    later = T0 + timedelta(minutes=5)
    with Store.open(path) as s:  # the bot's startup sequence
        assert [r.id for r in s.expire_due(later)] == ["stale"]
        failed = s.fail_interrupted(later)
        assert [(r.id, r.state, r.note) for r in failed] == [("busy", State.FAILED, INTERRUPTED)]
        assert failed[0].result == Result(exit_status=None)
        assert s.lock_holder("prod-db") is None
        assert [r.id for r in s.pending_requests()] == ["waiting"]
        assert s.running_requests() == []
        assert s.apply("waiting", Approve("U2"), now=later, is_approver=True).state is State.APPROVED
        assert s.audit_tail(1)[0].event == "approve"


# ---------------------------------------------------------------- locks


def test_an_inbound_event_is_new_once_then_forgotten_after_the_keep_time(path: Target) -> None:
    with Store.open(path) as a, Store.open(path) as b:  # two replicas on one database
        assert a.first_sight("slack-event:Ev1", T0)
        assert not b.first_sight("slack-event:Ev1", T0 + timedelta(seconds=60))  # the retry
        assert not a.first_sight("slack-event:Ev1", T0 + timedelta(seconds=300))
        assert b.first_sight("slack-event:Ev2", T0)
        later = T0 + timedelta(seconds=bot.store.SEEN_KEEP_S + 1)
        assert a.first_sight("slack-event:Ev3", later)  # pruned Ev1 and Ev2 on the way
        assert b.first_sight("slack-event:Ev1", later)


def test_lock_contention(store: Store) -> None:
    assert store.try_lock("prod-haproxy", "a", T0)
    assert not store.try_lock("prod-haproxy", "b", T0)
    assert not store.try_lock("prod-haproxy", "a", T0)  # not re-entrant: fail closed
    assert store.try_lock("prod-db", "b", T0)
    assert not store.unlock("prod-haproxy", "b")  # only the holder may unlock
    assert store.unlock("prod-haproxy", "a")
    assert store.try_lock("prod-haproxy", "b", T0)


def test_start_is_refused_while_another_remediation_holds_the_lock(store: Store) -> None:
    approved(store)
    assert store.try_lock("prod-haproxy", "other", T0)
    with pytest.raises(ApprovalError, match=r"another remediation \(other\) is running"):
        store.apply("r1", Start(), now=SOON, is_approver=False)
    req = store.get_request("r1")
    assert req is not None and req.state is State.APPROVED  # the START rolled back whole
    assert store.unlock("prod-haproxy", "other")
    store.apply("r1", Start(), now=SOON, is_approver=False)
    store.apply("r1", Finish(Result(0, "ok")), now=SOON, is_approver=False)
    assert store.lock_holder("prod-haproxy") is None  # released with the FINISH


def test_lock_taken_by_the_runner_before_start_is_reused_and_freed_on_cancel(store: Store) -> None:
    approved(store)
    assert store.try_lock("prod-haproxy", "r1", T0)
    store.apply("r1", Cancel("U1"), now=SOON, is_approver=False)
    assert store.lock_holder("prod-haproxy") is None


def test_break_stale_locks(store: Store) -> None:
    store.try_lock("prod-haproxy", "a", T0)
    assert store.break_stale_locks(T0 + timedelta(minutes=10), older_than_s=3600) == []
    broken = store.break_stale_locks(T0 + timedelta(hours=2), older_than_s=3600)
    assert [(lk.cluster, lk.request_id, lk.locked_at) for lk in broken] == [("prod-haproxy", "a", T0)]
    assert store.lock_holder("prod-haproxy") is None
    last = store.audit_tail(1)[0]
    assert (last.event, last.request_id, last.cluster) == ("lock_broken", "a", "prod-haproxy")


# ---------------------------------------------------------------- outbox


def test_outbox_order_survives_restart_and_retries_block_later_items(path: Target) -> None:
    with Store.open(path) as s:
        ids = [s.enqueue("post", {"channel": "C1", "text": f"m{i}"}, now=T0) for i in range(5)]
        first = s.due(T0, limit=10)
        assert [i.id for i in first] == ids
        s.mark_failed(ids[0], next_attempt_at=T0 + timedelta(seconds=30))
        assert s.due(T0 + timedelta(seconds=10), limit=10) == []  # nothing overtakes m0
    with Store.open(path) as s:
        retry = s.due(T0 + timedelta(seconds=30), limit=2)
        assert [(i.id, i.attempts, i.payload["text"]) for i in retry] == [
            (ids[0], 1, "m0"), (ids[1], 0, "m1")]
        s.mark_delivered(ids[0], "1714598400.000100", now=T0)
        s.mark_delivered(ids[1], "1714598400.000200", now=T0)
    with Store.open(path) as s:
        assert [i.payload["text"] for i in s.due(T0 + timedelta(minutes=1), limit=10)] == ["m2", "m3", "m4"]


def test_prune_forgets_old_deliveries_and_resolved_incidents_but_not_the_audit(path: Target) -> None:
    old, recent = T0, T0 + timedelta(days=40)
    with Store.open(path) as s:
        def incident(key: str, at: datetime) -> int:
            inc = s.open_incident(cluster="c", key=key, now=at, severity=Severity.WARNING,
                                  title=key, channel="C1")
            s.resolve_incident(inc.id, now=at)
            return inc.id
        gone, waited_for, kept = incident("a", old), incident("b", old), incident("c", recent)
        delivered = s.enqueue("root", {"incident": gone}, now=old)
        s.mark_delivered(delivered, "1.1", now=old)
        pending = s.enqueue("reply", {"incident": waited_for}, now=old)  # Slack was down for weeks
        fresh = s.enqueue("root", {"incident": kept}, now=recent)
        s.mark_delivered(fresh, "2.2", now=recent)
        s.append_audit(now=old, actor="U1", event="probe")
        assert s.prune(before=recent - timedelta(days=30)) == (1, 1)
        assert s.get_incident(gone) is None
        assert s.get_incident(waited_for) is not None and s.get_incident(kept) is not None
        assert [i.id for i in s.due(recent)] == [pending]
        assert [e.event for e in s.audit_tail(10)] == ["probe"]
        assert s.prune(before=recent - timedelta(days=30)) == (0, 0)


# ---------------------------------------------------------------- watch state and incidents


def test_watch_state_round_trip(path: Target) -> None:
    with Store.open(path) as s:
        assert s.load_watch_state("prod-haproxy") is None
        s.save_watch_state("prod-haproxy", '{"dc": "node1"}')
        s.save_watch_state("prod-haproxy", '{"dc": "node2"}')
        with pytest.raises(ValueError):
            s.save_watch_state("prod-haproxy", "{not json")
    with Store.open(path) as s:
        assert s.load_watch_state("prod-haproxy") == '{"dc": "node2"}'
        assert s.load_watch_state("prod-db") is None


def test_incident_lifecycle(store: Store) -> None:
    inc = store.open_incident(cluster="prod-haproxy", key="node_offline:node3", now=T0,
                              severity=Severity.CRITICAL, title="node3 is offline", channel="C1",
                              payload={"nodes": ["node3"]})
    again = store.open_incident(cluster="prod-haproxy", key="node_offline:node3", now=SOON,
                                severity=Severity.WARNING, title="changed", channel="C1")
    assert again == inc and inc.state is IncidentState.OPEN and inc.payload == {"nodes": ["node3"]}
    updated = store.update_incident(inc.id, thread_ts="1714598400.000100", last_posted_at=SOON)
    assert (updated.thread_ts, updated.last_posted_at, updated.title) == (
        "1714598400.000100", SOON, "node3 is offline")
    assert store.find_open_incident("prod-haproxy", "node_offline:node3") == updated
    assert store.open_incidents("prod-haproxy") == [updated]
    resolved = store.resolve_incident(inc.id, now=SOON)
    assert (resolved.state, resolved.resolved_at) == (IncidentState.RESOLVED, SOON)
    assert store.find_open_incident("prod-haproxy", "node_offline:node3") is None
    reopened = store.open_incident(cluster="prod-haproxy", key="node_offline:node3", now=SOON,
                                   severity=Severity.CRITICAL, title="node3 is offline again",
                                   channel="C1")
    assert reopened.id != inc.id


def _watch_writes(s: Store, n: int) -> None:
    """What the watcher writes for one poll: its state, an incident, its root message, an audit row."""
    s.save_watch_state("prod-haproxy", f'{{"poll": {n}}}')
    s.open_incident(cluster="prod-haproxy", key=f"node:node{n}", now=T0, severity=Severity.WARNING,
                    title=f"node{n} went OFFLINE", channel="C1")
    s.enqueue("root", {"n": n}, now=T0)
    s.append_audit(now=T0, actor="U1", event="probe")  # a method with its own transaction joins too


def test_a_transaction_writes_all_or_nothing(store: Store, path: Target) -> None:
    with pytest.raises(OSError), store.transaction():
        _watch_writes(store, 1)
        raise OSError("database or disk is full")
    with raw(path) as other:
        counts = [count(other, t) for t in ("watch_state", "incidents", "outbox", "audit")]
    assert counts == [0, 0, 0, 0]
    with store.transaction():
        _watch_writes(store, 2)
        with store.transaction():  # nested: joins, the outer one commits
            store.enqueue("reply", {"n": 2}, now=T0)
        with raw(path) as other:  # nothing is visible before the commit
            assert count(other, "outbox") == 0
    assert store.load_watch_state("prod-haproxy") == '{"poll": 2}'
    assert [i.key for i in store.open_incidents("prod-haproxy")] == ["node:node2"]
    assert [item.kind for item in store.due(SOON)] == ["root", "reply"]


def test_a_transaction_waits_for_another_writer_then_fails_whole(store: Store, path: Target) -> None:
    pg = is_postgresql(path)
    # The test need not wait the full 2 s.
    store.connection.execute("SET lock_timeout = 50" if pg else "PRAGMA busy_timeout = 50")
    with raw(path) as other:
        other.execute("BEGIN" if pg else "BEGIN IMMEDIATE")
        if pg:
            other.execute("LOCK TABLE outbox IN EXCLUSIVE MODE")
        with pytest.raises(driver_error(path), match="lock"), store.transaction():
            _watch_writes(store, 1)
        other.execute("ROLLBACK")
    assert store.load_watch_state("prod-haproxy") is None and store.due(SOON) == []
    with store.transaction():  # the lock is free again: nothing was left half done
        _watch_writes(store, 1)
    assert len(store.due(SOON)) == 1


# ---------------------------------------------------------------- opening


def test_a_call_that_fails_inside_a_transaction_undoes_only_its_own_writes(store: Store) -> None:
    # A caller that handles the error (as remediation does with ClusterBusy) commits the rest;
    # the refused START must not come with it.
    approved(store)
    assert store.try_lock("prod-haproxy", "other", T0)
    with store.transaction():
        store.save_watch_state("prod-haproxy", '{"poll": 1}')
        with pytest.raises(ClusterBusy):
            store.apply("r1", Start(), now=SOON, is_approver=False)
    req = store.get_request("r1")
    assert req is not None and req.state is State.APPROVED
    assert store.lock_holder("prod-haproxy").request_id == "other"  # type: ignore[union-attr]
    assert store.load_watch_state("prod-haproxy") == '{"poll": 1}'


def test_memory_database() -> None:
    with Store.open(":memory:") as s:
        s.create_request(make())
        assert s.get_request("r1") == make()


def test_newer_schema_is_refused(path: Target) -> None:
    Store.open(path).close()
    with raw(path) as other:
        other.set_schema_version(99)
    with pytest.raises(ConfigError, match="schema version 99 is newer"):
        Store.open(path)


def test_reopen_keeps_schema(path: Target) -> None:
    Store.open(path).close()
    with Store.open(path) as s, raw(path) as other:
        assert other.schema_version() == bot.store.SCHEMA_VERSION
        s.create_request(make())


def test_sqlite_file_is_wal(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    Store.open(path).close()
    with Store.open(path) as s, closing(sqlite3.connect(path)) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == bot.store.SCHEMA_VERSION
        s.create_request(make())


def test_every_audited_step_is_one_info_log_line_with_its_fields(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    # `run` logs at INFO: the journal shows requests and approvals as they are audited.
    caplog.set_level(logging.INFO, logger="bot.store")
    approved(store)
    lines = [r for r in caplog.records if r.name == "bot.store"]
    assert [r.getMessage() for r in lines] == ["audit: request r1 by U1 (new -> pending)",
                                               "audit: approve r1 by U2 (pending -> approved)"]
    assert all(r.levelno == logging.INFO for r in lines)
    assert [(r.__dict__["request_id"], r.__dict__["cluster"], r.__dict__["actor"]) for r in lines] == [
        ("r1", "prod-haproxy", "U1"), ("r1", "prod-haproxy", "U2")]


# ---------------------------------------------------------------- migrations

V1_FILE = Path(__file__).parents[1] / "fixtures" / "store" / "state-v1.sqlite3"


def test_a_schema_v1_sqlite_file_upgrades_in_place(tmp_path: Path) -> None:
    # Written by the store of schema version 1 (clusterbot before leadership): a finished
    # remediation, a pending one, an incident with its delivered root and a queued reply.
    path = tmp_path / "clusterbot.sqlite3"
    path.write_bytes(V1_FILE.read_bytes())
    with closing(sqlite3.connect(path)) as before:
        assert before.execute("PRAGMA user_version").fetchone()[0] == 1
    with Store.open(path) as s:
        done, waiting = s.get_request("r1"), s.get_request("r2")
        assert done is not None and done.state is State.SUCCEEDED and done.message_ts == "1714598400.000100"
        assert waiting is not None and waiting.state is State.PENDING
        assert [e.event for e in s.audit_all()] == ["request", "request", "approve", "start", "finish"]
        [inc] = s.open_incidents("prod-haproxy")
        assert (inc.thread_ts, inc.payload) == ("1714598400.000200", {"nodes": ["node3"]})
        [queued] = s.due(T0)
        assert (queued.kind, queued.epoch) == ("reply", None)
        assert s.load_watch_state("prod-haproxy") == '{"dc": "node1"}'
        assert s.leadership().epoch == 0
        assert s.first_sight("slack-event:Ev1", T0) and not s.first_sight("slack-event:Ev1", T0)
        epoch = s.take_leadership("host-a", T0)
        assert s.claim_send(queued.id, epoch)
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            s.connection.execute("DELETE FROM audit")
    with closing(sqlite3.connect(path)) as after:
        assert after.execute("PRAGMA user_version").fetchone()[0] == bot.store.SCHEMA_VERSION == 3


def test_migrations_upgrade_a_v1_database_on_both_backends(path: Target,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as m:  # a clusterbot that knew only version 1
        m.setattr(bot.store, "_MIGRATIONS", bot.store._MIGRATIONS[:1])
        m.setattr(bot.store, "SCHEMA_VERSION", 1)
        with Store.open(path) as old:
            old.create_request(make())
            item = old.enqueue("root", {"text": "m0"}, now=T0)
    with Store.open(path) as s, raw(path) as other:
        assert other.schema_version() == bot.store.SCHEMA_VERSION == 3
        assert s.get_request("r1") == make()
        assert s.first_sight("slack-event:Ev1", T0)
        assert [(i.id, i.epoch) for i in s.due(T0)] == [(item, None)]
        assert s.take_leadership("host-a", T0) == 1


def test_a_store_opened_only_to_read_is_never_created_or_migrated(path: Target,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """`clusterbot audit` (create=False): nothing is created in an empty database, and one a
    replica of the previous release still uses keeps its schema version (the new migration would
    lock that replica out when it next reconnects)."""
    with pytest.raises(ConfigError, match="no clusterbot state yet"):
        Store.open(path, create=False)
    with raw(path) as other:
        assert other.schema_version() == 0
    previous = len(bot.store._MIGRATIONS) - 1
    with monkeypatch.context() as m:
        m.setattr(bot.store, "_MIGRATIONS", bot.store._MIGRATIONS[:previous])
        m.setattr(bot.store, "SCHEMA_VERSION", previous)
        with Store.open(path) as old:
            old.append_audit(now=T0, actor="U0BOSS", event="probe")
    with Store.open(path, create=False) as reader, raw(path) as other:
        assert [(e.actor, e.event) for e in reader.audit_all()] == [("U0BOSS", "probe")]
        assert other.schema_version() == previous


# ---------------------------------------------------------------- leadership


def test_take_leadership_increments_and_fences_older_epochs(store: Store) -> None:
    assert store.leadership().epoch == 0
    item = store.enqueue("root", {"text": "m0"}, now=T0)
    first = store.take_leadership("host-a", T0)
    assert store.claim_send(item, first)
    second = store.take_leadership("host-b", SOON)
    assert (first, second) == (1, 2)
    lead = store.leadership()
    assert (lead.epoch, lead.holder, lead.since) == (2, "host-b", SOON)
    assert not store.claim_send(item, first)  # deposed: the old leader must not send
    assert store.claim_send(item, second)  # the new one may re-claim what the old one claimed
    assert store.due(T0)[0].epoch == second
    store.mark_delivered(item, "1.1", now=SOON)
    assert not store.claim_send(item, second)  # delivered: nothing to send
    assert not store.claim_send(item + 99, second)


def test_concurrent_takeovers_get_distinct_epochs(store: Store, path: Target) -> None:
    barrier = threading.Barrier(4)

    def take(n: int) -> list[int]:
        with Store.open(path) as mine:
            barrier.wait()
            return [mine.take_leadership(f"host-{n}", T0) for _ in range(5)]

    with ThreadPoolExecutor(4) as pool:
        epochs = sorted(e for batch in pool.map(take, range(4)) for e in batch)
    assert epochs == list(range(1, 21))
    assert store.leadership().epoch == 20
