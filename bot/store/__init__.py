"""Persistence: approval requests and their append-only audit, watcher state, incidents, the Slack
outbox, per-cluster remediation locks and the leadership epoch. Two backends with one schema and
one set of migrations: SQLite (a local WAL file, the default) and PostgreSQL (`store_url`); the
differences live in bot/store/dialect.py.

`Store` is synchronous: every method is one short transaction, and `transaction()` groups several
calls into one. The bot never calls it on the event loop: `AsyncStore` (bot/store/aio.py) runs it
on a thread of its own, and the CLI and tests may use it directly."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

from bot.approvals import (
    SYSTEM_ACTOR,
    Approve,
    Event,
    Expire,
    Expired,
    Finish,
    Refuse,
    Request,
    Result,
    State,
    transition,
)
from bot.errors import ApprovalError, ClusterBusy, ConfigError
from bot.pacemaker.health import Severity
from bot.store.dialect import Connection, Row, Rows, connect

__all__ = ["AsyncStore", "AuditEntry", "Incident", "IncidentState", "Leadership", "Lock", "OutboxItem",
           "Store"]

log = logging.getLogger(__name__)

AUDIT_PAGE = 500  # rows per read while streaming the whole audit log
SEEN_KEEP_S = 3600.0  # how long an inbound event id is remembered (Slack retries for minutes)
INTERRUPTED = "bot restarted while running; outcome unknown, check the cluster"

# One function per schema version: _MIGRATIONS[i](dialect) upgrades version i to i+1, with the
# same tables on both backends. Statements, not scripts: a script would commit the migration's
# transaction half way (SQLite's executescript does).


def _schema_v1(d: Connection) -> tuple[str, ...]:
    return (
        """CREATE TABLE requests (
            id TEXT PRIMARY KEY, cluster TEXT NOT NULL, action TEXT NOT NULL, args TEXT NOT NULL,
            node TEXT NOT NULL, argv TEXT NOT NULL, requester TEXT NOT NULL, channel TEXT NOT NULL,
            reason TEXT NOT NULL, prediction TEXT, fingerprint TEXT NOT NULL,
            created_at TEXT NOT NULL, expires_at TEXT NOT NULL, required_approvals INTEGER NOT NULL,
            allow_self_approval INTEGER NOT NULL, approvers TEXT NOT NULL, state TEXT NOT NULL,
            decided_by TEXT, message_ts TEXT, result TEXT, note TEXT, version INTEGER NOT NULL)""",
        "CREATE INDEX requests_by_state ON requests (state, expires_at)",
        f"""CREATE TABLE audit (
            id {d.serial}, at TEXT NOT NULL, request_id TEXT, cluster TEXT,
            actor TEXT NOT NULL, event TEXT NOT NULL, state_from TEXT, state_to TEXT,
            fingerprint TEXT, detail TEXT NOT NULL DEFAULT '{{}}')""",
        *d.append_only("audit"),
        "CREATE TABLE watch_state (cluster TEXT PRIMARY KEY, state TEXT NOT NULL)",
        f"""CREATE TABLE incidents (
            id {d.serial}, cluster TEXT NOT NULL, key TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('open', 'resolved')), severity INTEGER NOT NULL,
            title TEXT NOT NULL, channel TEXT, thread_ts TEXT, opened_at TEXT NOT NULL,
            resolved_at TEXT, last_posted_at TEXT, payload TEXT NOT NULL DEFAULT '{{}}')""",
        "CREATE UNIQUE INDEX incidents_one_open ON incidents (cluster, key) WHERE state = 'open'",
        f"""CREATE TABLE outbox (
            id {d.serial}, created_at TEXT NOT NULL, kind TEXT NOT NULL,
            payload TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at TEXT NOT NULL,
            delivered_at TEXT, result TEXT)""",
        "CREATE INDEX outbox_undelivered ON outbox (id) WHERE delivered_at IS NULL",
        """CREATE TABLE locks (
            cluster TEXT PRIMARY KEY, request_id TEXT NOT NULL, locked_at TEXT NOT NULL)""",
    )


def _schema_v2(d: Connection) -> tuple[str, ...]:
    """Leadership: one row whose epoch every takeover increments; an outbox row remembers the
    epoch that claimed it for sending (see take_leadership and claim_send)."""
    return (
        """CREATE TABLE leadership (
            id INTEGER PRIMARY KEY CHECK (id = 1), epoch INTEGER NOT NULL, holder TEXT, since TEXT)""",
        "INSERT INTO leadership (id, epoch) VALUES (1, 0)",
        "ALTER TABLE outbox ADD COLUMN epoch INTEGER",
    )


def _schema_v3(d: Connection) -> tuple[str, ...]:
    """Inbound Slack events already handled (their event_id), so that Slack's redelivery of an
    event it thinks was lost is handled once, by whichever replica receives it (first_sight)."""
    return ("CREATE TABLE seen_events (key TEXT PRIMARY KEY, seen_at TEXT NOT NULL)",
            "CREATE INDEX seen_events_by_time ON seen_events (seen_at)")


_MIGRATIONS = (_schema_v1, _schema_v2, _schema_v3)
SCHEMA_VERSION = len(_MIGRATIONS)


# ---------------------------------------------------------------- rows


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    request_id: str | None
    cluster: str | None
    actor: str
    event: str
    state_from: str | None
    state_to: str | None
    fingerprint: str | None
    detail: Mapping[str, object]

    def to_dict(self) -> dict[str, object]:
        """For `clusterbot audit --jsonl`."""
        return {"id": self.id, "at": _ts(self.at), "request_id": self.request_id,
                "cluster": self.cluster, "actor": self.actor, "event": self.event,
                "state_from": self.state_from, "state_to": self.state_to,
                "fingerprint": self.fingerprint, "detail": dict(self.detail)}


class IncidentState(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class Incident:
    id: int
    cluster: str
    key: str  # stable, e.g. "node_offline:node3"
    state: IncidentState
    severity: Severity
    title: str
    channel: str | None
    thread_ts: str | None  # the Slack thread every update goes to, once the first post landed
    opened_at: datetime
    resolved_at: datetime | None
    last_posted_at: datetime | None
    payload: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    created_at: datetime
    kind: str
    payload: Mapping[str, object]
    attempts: int
    next_attempt_at: datetime
    delivered_at: datetime | None
    result: str | None
    # The leader epoch that claimed it for sending and never recorded the outcome (a failed send
    # clears it): set on an undelivered item, that sender died mid-send and Slack may have it.
    epoch: int | None = None


@dataclass(frozen=True, slots=True)
class Leadership:
    epoch: int  # 0: nobody ever led
    holder: str | None
    since: datetime | None


@dataclass(frozen=True, slots=True)
class Lock:
    cluster: str
    request_id: str
    locked_at: datetime


# ---------------------------------------------------------------- the store


class Store:
    """One connection to the state database, SQLite or PostgreSQL.

    Concurrency: each method is one short transaction (or joins the caller's `transaction()`).
    Within a process, AsyncStore serialises calls on one thread; across connections (a second
    replica, the CLI, tests) the compare-and-sets are single guarded UPDATEs or INSERT ... ON
    CONFLICT, so of two racing writers exactly one wins on both backends: SQLite serialises writers
    (BEGIN IMMEDIATE, busy timeout), PostgreSQL row locks make the loser re-check its WHERE.
    A connection belongs to the thread that opened it (sqlite3's check_same_thread stays on).
    """

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    @classmethod
    def open(cls, target: str | Path, *, create: bool = True) -> Store:
        """A SQLite file (or ":memory:") or a postgresql:// URL; migrates it to SCHEMA_VERSION.
        `create=False` (commands that only read, such as `clusterbot audit`): the schema is read
        as it is and never migrated (a replica of the previous release may still be using it),
        and a database the bot never ran against is a ConfigError, with nothing created in it."""
        conn = connect(target)
        try:
            (_migrate if create else _check_readable)(conn, _where(target))
        except BaseException as exc:
            down = conn.unavailable(exc) if isinstance(exc, Exception) else None
            conn.close()
            if down is not None:  # e.g. the server went away mid-migration: our one-line error
                raise down from exc
            raise
        return cls(conn)

    @property
    def connection(self) -> Connection:
        return self._conn

    def close(self) -> None:
        self._conn.close()

    def ping(self) -> None:
        """One round trip: raises when the database does not answer (readiness checks)."""
        self._x("SELECT 1")

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Several calls as one transaction: all of their writes commit together, or none does.

        Every method called inside joins it (their own transactions and single writes become part
        of it), so a caller can write what belongs together, e.g. the watcher's state, incidents and
        outbox rows of one poll: a failure half way leaves the database as it was. Nesting joins too.
        """
        with self._write():
            yield

    def _x(self, sql: str, params: tuple[object, ...] = ()) -> Rows:
        return self._conn.execute(sql, params)

    @contextmanager
    def _write(self) -> Iterator[Store]:
        if self._conn.in_transaction:  # inside transaction(): the outermost one commits
            # A savepoint: a call that fails undoes its own writes (a refused START stays
            # APPROVED) even when its caller handles the error and the outer transaction commits.
            self._x("SAVEPOINT joined")
            try:
                yield self
            except BaseException:
                self._rollback("ROLLBACK TO SAVEPOINT joined", "RELEASE SAVEPOINT joined")
                raise
            self._x("RELEASE SAVEPOINT joined")
            return
        self._x(self._conn.begin_write)
        try:
            yield self
        except BaseException:
            self._rollback("ROLLBACK")
            raise
        self._x("COMMIT")

    def _rollback(self, *statements: str) -> None:
        # On a connection that just died there is nothing to roll back (the server already did);
        # the error being handled is the one worth raising.
        if self._conn.broken:
            return
        for statement in statements:
            self._x(statement)

    # ------------------------------------------------------------ requests

    def create_request(self, req: Request) -> None:
        if req.state is not State.PENDING or req.approvers:  # approvals only ever come via apply
            raise ValueError(f"a new request must be pending with no approvals, not {req.state}")
        row = _request_row(req)
        with self._write() as c:
            c._x(f"INSERT INTO requests ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                      tuple(row.values()))
            _insert_audit(c, at=req.created_at, request_id=req.id, cluster=req.cluster,
                          actor=req.requester, event="request", state_to=req.state,
                          fingerprint=req.fingerprint, detail=_asked(req))

    def get_request(self, request_id: str) -> Request | None:
        row = self._x("SELECT * FROM requests WHERE id = ?", (request_id,)).one()
        return None if row is None else _request_from(row)

    def find_request_by_message(self, channel: str, ts: str) -> Request | None:
        """The request whose root message is (channel, ts): thread replies decide through it."""
        row = self._x("SELECT * FROM requests WHERE channel = ? AND message_ts = ?",
                                 (channel, ts)).one()
        return None if row is None else _request_from(row)

    def set_message_ts(self, request_id: str, ts: str) -> None:
        """Not a transition, so no version bump: `apply` never writes message_ts."""
        self._x("UPDATE requests SET message_ts = ? WHERE id = ?", (ts, request_id))

    def apply(self, request_id: str, event: Event, *, now: datetime, is_approver: bool) -> Request:
        """Load, transition, and write back only if nobody else wrote in between.

        On a lost compare-and-set the transition is retried once against the fresh row, so of two
        racing START calls exactly one returns and the other raises ApprovalError. A refused user
        click (approve, deny, cancel) is audited here too; callers need not log it again.
        """
        for _ in range(2):
            current = self.get_request(request_id)
            try:
                if current is None:
                    raise ApprovalError("this request no longer exists")
                new = transition(current, event, now=now, is_approver=is_approver)
            except Expired as exc:
                assert current is not None
                late = {"late": str(event.kind), "by": event.actor}
                if self._commit(current, exc.request, Expire(), now, also=late):
                    raise
                continue
            except ApprovalError as exc:
                self._audit_refusal(request_id, current, event, now, exc)
                raise
            if self._commit(current, new, event, now):
                return new
        raise ApprovalError("this request changed while you clicked; please try again")

    def _commit(self, old: Request, new: Request, event: Event, now: datetime, *,
                also: Mapping[str, object] | None = None) -> bool:
        with self._write() as c:
            changed = c._x(
                "UPDATE requests SET state = ?, approvers = ?, decided_by = ?, result = ?, note = ?,"
                " version = ? WHERE id = ? AND version = ?",
                (new.state, json.dumps(new.approvers), new.decided_by, _result_json(new.result),
                 new.note, new.version, old.id, old.version)).rowcount
            if not changed:
                return False
            _lock_effects(c, old, new, now)
            _insert_audit(c, at=now, request_id=new.id, cluster=new.cluster, actor=event.actor,
                          event=event.kind, state_from=old.state, state_to=new.state,
                          fingerprint=new.fingerprint, detail={**_event_detail(event, new), **(also or {})})
        return True

    def _audit_refusal(self, request_id: str, req: Request | None, event: Event, now: datetime,
                       exc: ApprovalError) -> None:
        if event.actor == SYSTEM_ACTOR:  # the runner's own races are logged by it, not audited
            return
        if req is None:
            self.append_audit(now=now, actor=event.actor, event=event.kind, request_id=request_id,
                              detail={"refused": str(exc)})
            return
        self.append_audit(now=now, actor=event.actor, event=event.kind, request_id=request_id,
                          cluster=req.cluster, state_from=req.state, state_to=req.state,
                          fingerprint=req.fingerprint, detail={"refused": str(exc)})

    def pending_requests(self) -> list[Request]:
        return self._requests_in(State.PENDING)

    def approved_requests(self) -> list[Request]:
        return self._requests_in(State.APPROVED)

    def running_requests(self) -> list[Request]:
        return self._requests_in(State.RUNNING)

    def acting_requests(self, cluster: str, since: datetime) -> list[tuple[Request, datetime | None]]:
        """Approved remediations of `cluster` acting now (approved, running) or that ended at or
        after `since`, each with when it ended (None: still acting). The watcher routes their
        effects to their thread instead of alerting them as news."""
        rows = self._x(
            "SELECT r.*, (SELECT MAX(a.at) FROM audit a WHERE a.request_id = r.id AND a.state_to = r.state)"
            " AS ended FROM requests r WHERE r.cluster = ? AND (r.state IN (?, ?) OR (r.state IN (?, ?)"
            " AND EXISTS (SELECT 1 FROM audit a WHERE a.request_id = r.id AND a.state_to = r.state"
            " AND a.at >= ?))) ORDER BY r.created_at, r.id",
            (cluster, State.APPROVED, State.RUNNING, State.SUCCEEDED, State.FAILED, _ts(since))).rows
        return [(_request_from(r), None if r["state"] in (State.APPROVED, State.RUNNING) else _dt(r["ended"]))
                for r in rows]

    def _requests_in(self, state: State) -> list[Request]:
        rows = self._x(
            "SELECT * FROM requests WHERE state = ? ORDER BY created_at, id", (state,)).rows
        return [_request_from(r) for r in rows]

    def expire_due(self, now: datetime) -> list[Request]:
        """EXPIRE every PENDING request whose time is up (the sweeper, and at startup)."""
        rows = self._x(
            "SELECT id FROM requests WHERE state = ? AND expires_at <= ? ORDER BY expires_at",
            (State.PENDING, _ts(now))).rows
        return self._apply_each([r["id"] for r in rows], Expire(), now)

    def fail_interrupted(self, now: datetime) -> list[Request]:
        """At startup: a RUNNING request is never re-run; it becomes FAILED, outcome unknown."""
        ids = [r.id for r in self.running_requests()]
        return self._apply_each(ids, Finish(Result(exit_status=None), note=INTERRUPTED), now)

    def _apply_each(self, ids: list[str], event: Event, now: datetime) -> list[Request]:
        done = []
        for request_id in ids:
            try:
                done.append(self.apply(request_id, event, now=now, is_approver=False))
            except ApprovalError:
                continue  # another connection moved it first
        return done

    # ------------------------------------------------------------ audit

    def append_audit(self, *, now: datetime, actor: str, event: str, request_id: str | None = None,
                     cluster: str | None = None, state_from: str | None = None,
                     state_to: str | None = None, fingerprint: str | None = None,
                     detail: Mapping[str, object] | None = None) -> int:
        """For events outside a transition: a forged payload, an unknown request id, ..."""
        with self._write() as c:
            return _insert_audit(c, at=now, request_id=request_id, cluster=cluster, actor=actor,
                                 event=event, state_from=state_from, state_to=state_to,
                                 fingerprint=fingerprint, detail=detail or {})

    def audit_tail(self, n: int) -> list[AuditEntry]:
        """The last `n` entries, oldest first."""
        rows = self._x("SELECT * FROM audit ORDER BY id DESC LIMIT ?", (n,)).rows
        return [_audit_from(r) for r in reversed(rows)]

    def audit_all(self) -> Iterator[AuditEntry]:
        # Paged by id so a long export never holds one read snapshot open (and the WAL growing).
        last = 0
        while True:
            rows = self._x("SELECT * FROM audit WHERE id > ? ORDER BY id LIMIT ?",
                                      (last, AUDIT_PAGE)).rows
            if not rows:
                return
            yield from (_audit_from(r) for r in rows)
            last = rows[-1]["id"]

    # ------------------------------------------------------------ watch state

    def save_watch_state(self, cluster: str, json_str: str) -> None:
        json.loads(json_str)  # refuse to store what load_watch_state's caller could not read
        self._x(
            "INSERT INTO watch_state (cluster, state) VALUES (?, ?)"
            " ON CONFLICT (cluster) DO UPDATE SET state = excluded.state", (cluster, json_str))

    def load_watch_state(self, cluster: str) -> str | None:
        row = self._x("SELECT state FROM watch_state WHERE cluster = ?",
                                 (cluster,)).one()
        return None if row is None else str(row["state"])

    # ------------------------------------------------------------ incidents

    def open_incident(self, *, cluster: str, key: str, severity: Severity, title: str,
                      channel: str | None, now: datetime,
                      payload: Mapping[str, object] | None = None) -> Incident:
        """At most one open incident per (cluster, key): opening it again returns the open one."""
        self._x(
            "INSERT INTO incidents (cluster, key, state, severity, title, channel, opened_at, payload)"
            " VALUES (?, ?, 'open', ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (cluster, key, int(severity), title, channel, _ts(now), json.dumps(payload or {})))
        found = self.find_open_incident(cluster, key)
        assert found is not None  # the insert either landed or hit the open one
        return found

    def find_open_incident(self, cluster: str, key: str) -> Incident | None:
        row = self._x(
            "SELECT * FROM incidents WHERE cluster = ? AND key = ? AND state = 'open'",
            (cluster, key)).one()
        return None if row is None else _incident_from(row)

    def open_incidents(self, cluster: str) -> list[Incident]:
        rows = self._x(
            "SELECT * FROM incidents WHERE cluster = ? AND state = 'open' ORDER BY id", (cluster,)).rows
        return [_incident_from(r) for r in rows]

    def get_incident(self, incident_id: int) -> Incident | None:
        row = self._x("SELECT * FROM incidents WHERE id = ?", (incident_id,)).one()
        return None if row is None else _incident_from(row)

    def update_incident(self, incident_id: int, *, severity: Severity | None = None,
                        title: str | None = None, channel: str | None = None,
                        thread_ts: str | None = None, last_posted_at: datetime | None = None,
                        payload: Mapping[str, object] | None = None) -> Incident:
        """Set the given fields; None leaves a field as it is."""
        changes: dict[str, object] = {
            "severity": None if severity is None else int(severity), "title": title,
            "channel": channel, "thread_ts": thread_ts,
            "last_posted_at": None if last_posted_at is None else _ts(last_posted_at),
            "payload": None if payload is None else json.dumps(payload)}
        given = {k: v for k, v in changes.items() if v is not None}
        if given:  # column names come from the dict above, never from the caller
            sets = ", ".join(f"{k} = ?" for k in given)
            self._x(f"UPDATE incidents SET {sets} WHERE id = ?", (*given.values(), incident_id))
        return self._incident(incident_id)

    def resolve_incident(self, incident_id: int, *, now: datetime) -> Incident:
        self._x(
            "UPDATE incidents SET state = 'resolved', resolved_at = ? WHERE id = ? AND state = 'open'",
            (_ts(now), incident_id))
        return self._incident(incident_id)

    def recent_incident(self, cluster: str, key: str, since: datetime) -> Incident | None:
        """The latest incident with this key resolved at or after `since` (the watcher reopens
        it, or threads a recovery tail into it, instead of posting a new root)."""
        row = self._x(
            "SELECT * FROM incidents WHERE cluster = ? AND key = ? AND state = 'resolved'"
            " AND resolved_at >= ? ORDER BY id DESC LIMIT 1", (cluster, key, _ts(since))).one()
        return None if row is None else _incident_from(row)

    def recent_incidents(self, cluster: str, since: datetime) -> list[Incident]:
        """Incidents open now or resolved at or after `since`, oldest first."""
        rows = self._x(
            "SELECT * FROM incidents WHERE cluster = ? AND (state = 'open' OR resolved_at >= ?)"
            " ORDER BY id", (cluster, _ts(since))).rows
        return [_incident_from(r) for r in rows]

    def reopen_incident(self, incident_id: int) -> Incident:
        """A resolved incident is open again (its key must have no other open incident)."""
        self._x(
            "UPDATE incidents SET state = 'open', resolved_at = NULL WHERE id = ? AND state = 'resolved'",
            (incident_id,))
        return self._incident(incident_id)

    def _incident(self, incident_id: int) -> Incident:
        found = self.get_incident(incident_id)
        if found is None:
            raise KeyError(f"no incident {incident_id}")
        return found

    # ------------------------------------------------------------ outbox

    def enqueue(self, kind: str, payload: Mapping[str, object], *, now: datetime) -> int:
        return _new_id(self._x(
            "INSERT INTO outbox (created_at, kind, payload, next_attempt_at) VALUES (?, ?, ?, ?)"
            " RETURNING id", (_ts(now), kind, json.dumps(payload), _ts(now))))

    def due(self, now: datetime, limit: int = 20) -> list[OutboxItem]:
        """Undelivered items in id order, stopping at the first one still waiting for its retry.

        Strict order: a later message never overtakes an earlier one (a reply never precedes its
        thread's root). The poster gives up on a permanent error with mark_delivered.
        """
        rows = self._x(
            "SELECT * FROM outbox WHERE delivered_at IS NULL ORDER BY id LIMIT ?", (limit,)).rows
        items = []
        for item in map(_outbox_from, rows):
            if item.next_attempt_at > now:
                break
            items.append(item)
        return items

    def mark_delivered(self, item_id: int, result: str, *, now: datetime) -> None:
        """`result`: what the caller needs later (the message ts), or why it gave up."""
        self._x("UPDATE outbox SET delivered_at = ?, result = ?, attempts = attempts + 1"
                           " WHERE id = ?", (_ts(now), result, item_id))

    def mark_failed(self, item_id: int, next_attempt_at: datetime) -> None:
        # The send is known to have failed, so its claim no longer leaves it in doubt (OutboxItem.epoch).
        self._x("UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, epoch = NULL WHERE id = ?",
                           (_ts(next_attempt_at), item_id))

    # ------------------------------------------------------------ leadership

    def take_leadership(self, holder: str, now: datetime) -> int:
        """Become the leader: increment the epoch atomically and return the new one.

        Call it only once the replica holds the leadership lock (advisory lock, file lock): the
        epoch does not decide who leads, it fences. Every earlier epoch is deposed the moment this
        commits, so a replica that lost the lock without noticing fails `claim_send` from then on.
        """
        with self._write() as c:
            row = c._x("UPDATE leadership SET epoch = epoch + 1, holder = ?, since = ? WHERE id = 1"
                       " RETURNING epoch", (holder, _ts(now))).one()
        assert row is not None  # the row is created by the migration and never deleted
        return int(row["epoch"])

    def leadership(self) -> Leadership:
        row = self._x("SELECT epoch, holder, since FROM leadership WHERE id = 1").one()
        assert row is not None
        return Leadership(int(row["epoch"]), row["holder"], _opt_dt(row["since"]))

    def claim_send(self, item_id: int, epoch: int) -> bool:
        """Mark outbox item `item_id` as being sent by `epoch`, only if `epoch` still leads.

        True: send it now (and mark_delivered after). False: do not send: a newer epoch took over
        (this replica is deposed), or the item is delivered already or gone. The leadership row is
        read FOR SHARE (PostgreSQL; SQLite's write lock does the same), so a concurrent
        take_leadership commits either before the check (False) or after this claim; a takeover
        after the claim can still see the item undelivered and send it again: at most that one
        message is duplicated. An item claimed by a deposed epoch may be claimed again.
        """
        with self._write() as c:
            row = c._x(f"SELECT epoch FROM leadership WHERE id = 1{self._conn.for_share}").one()
            if row is None or int(row["epoch"]) != epoch:
                return False
            return c._x("UPDATE outbox SET epoch = ? WHERE id = ? AND delivered_at IS NULL",
                        (epoch, item_id)).rowcount == 1

    # ------------------------------------------------------------ retention

    def prune(self, *, before: datetime) -> tuple[int, int]:
        """Delete outbox rows delivered, and incidents resolved, before `before`: (rows, incidents).

        An incident a message still waiting in the outbox refers to is kept (its thread is needed).
        The audit log is never pruned: it is the record, exported with `clusterbot audit --jsonl`.
        """
        cutoff = _ts(before)
        with self._write() as c:
            rows = c._x("DELETE FROM outbox WHERE delivered_at IS NOT NULL AND delivered_at < ?",
                             (cutoff,)).rowcount
            waited_for = self._conn.json_int("payload", "incident")
            incidents = c._x(
                "DELETE FROM incidents WHERE state = 'resolved' AND resolved_at < ? AND id NOT IN ("
                f" SELECT {waited_for} FROM outbox WHERE delivered_at IS NULL AND {waited_for} IS NOT NULL)",
                (cutoff,)).rowcount
        return rows, incidents

    # ------------------------------------------------------------ inbound events

    def first_sight(self, key: str, now: datetime, keep_s: float = SEEN_KEEP_S) -> bool:
        """Record an inbound event (e.g. a Slack event_id); False if it was already recorded:
        a redelivery, from this replica's point of view or another's. What is older than
        `keep_s` is forgotten (Slack gives up re-sending within minutes)."""
        with self._write() as c:
            c._x("DELETE FROM seen_events WHERE seen_at < ?", (_ts(now - timedelta(seconds=keep_s)),))
            return c._x("INSERT INTO seen_events (key, seen_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                        (key, _ts(now))).rowcount == 1

    # ------------------------------------------------------------ locks

    def try_lock(self, cluster: str, request_id: str, now: datetime) -> bool:
        """Take the cluster's remediation lock; False if anyone (even this request) holds it."""
        return self._x("INSERT INTO locks (cluster, request_id, locked_at) VALUES (?, ?, ?)"
                       " ON CONFLICT DO NOTHING", (cluster, request_id, _ts(now))).rowcount == 1

    def unlock(self, cluster: str, request_id: str) -> bool:
        """Release the lock if `request_id` holds it; another holder's lock is never touched."""
        cur = self._x("DELETE FROM locks WHERE cluster = ? AND request_id = ?",
                                 (cluster, request_id))
        return cur.rowcount > 0

    def lock_holder(self, cluster: str) -> Lock | None:
        row = self._x("SELECT * FROM locks WHERE cluster = ?", (cluster,)).one()
        return None if row is None else Lock(row["cluster"], row["request_id"], _dt(row["locked_at"]))

    def break_stale_locks(self, now: datetime, older_than_s: float) -> list[Lock]:
        """Remove locks taken more than `older_than_s` ago, auditing each one."""
        cutoff = _ts(now - timedelta(seconds=older_than_s))
        with self._write() as c:
            rows = c._x("SELECT * FROM locks WHERE locked_at <= ?", (cutoff,)).rows
            broken = [Lock(r["cluster"], r["request_id"], _dt(r["locked_at"])) for r in rows]
            for lock in broken:
                c._x("DELETE FROM locks WHERE cluster = ?", (lock.cluster,))
                _insert_audit(c, at=now, request_id=lock.request_id, cluster=lock.cluster,
                              actor=SYSTEM_ACTOR, event="lock_broken",
                              detail={"locked_at": _ts(lock.locked_at), "older_than_s": older_than_s})
        return broken


# ---------------------------------------------------------------- helpers


def _check_readable(conn: Connection, where: str) -> None:
    """Readable as it is: the tables exist and are not from a newer clusterbot (no DDL, no lock)."""
    version = conn.schema_version()
    if not version:
        raise ConfigError(f"{where}: no clusterbot state yet: the bot has not run against this "
                          "database (nothing was created in it); check store_url or --config")
    if version > SCHEMA_VERSION:
        raise _too_new(where, version)


def _too_new(where: str, version: int) -> ConfigError:
    return ConfigError(f"{where}: schema version {version} is newer than this clusterbot's {SCHEMA_VERSION}")


def _migrate(conn: Connection, where: str) -> None:
    # The write transaction (and on PostgreSQL an advisory lock): two processes opening a new
    # database must not both migrate. DDL is transactional on both: a failed upgrade leaves none.
    conn.execute(conn.begin_write)
    try:
        conn.lock_for_migration()
        version = conn.schema_version()
        if version > SCHEMA_VERSION:
            raise _too_new(where, version)
        for upgrade in _MIGRATIONS[version:]:
            for statement in upgrade(conn):
                conn.execute(statement)
        if version != SCHEMA_VERSION:
            if version:  # a new database is created, not upgraded: nothing to tell
                log.info("%s: schema upgraded from version %d to %d", where, version, SCHEMA_VERSION)
            conn.set_schema_version(SCHEMA_VERSION)
    except BaseException:
        if not conn.broken:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _where(target: str | Path) -> str:
    """The database named in messages, without a URL's password."""
    if isinstance(target, str) and "://" in target:
        from urllib.parse import urlsplit

        url = urlsplit(target)
        return f"{url.scheme}://{url.hostname or ''}{f':{url.port}' if url.port else ''}{url.path}"
    return str(target)


def _lock_effects(c: Store, old: Request, new: Request, now: datetime) -> None:
    """START takes the cluster lock in the same transaction; leaving APPROVED or RUNNING frees it."""
    if new.state is State.RUNNING:
        c._x("INSERT INTO locks (cluster, request_id, locked_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
             (new.cluster, new.id, _ts(now)))
        holder = c._x("SELECT request_id FROM locks WHERE cluster = ?", (new.cluster,)).one()
        assert holder is not None  # inserted above, or held by another request
        if holder["request_id"] != new.id:  # rolls the START back: fail closed
            raise ClusterBusy(f"another remediation ({holder['request_id']}) is running on {new.cluster}")
    elif old.state in (State.APPROVED, State.RUNNING) and new.state.terminal:
        c._x("DELETE FROM locks WHERE cluster = ? AND request_id = ?", (new.cluster, new.id))


def _insert_audit(c: Store, *, at: datetime, actor: str, event: str,
                  request_id: str | None = None, cluster: str | None = None,
                  state_from: str | None = None, state_to: str | None = None,
                  fingerprint: str | None = None, detail: Mapping[str, object]) -> int:
    # Every approval step passes here: the journal shows requests, approvals and runs at INFO.
    log.info("audit: %s%s by %s%s", event, f" {request_id}" if request_id else "", actor,
             f" ({state_from or 'new'} -> {state_to})" if state_to else "",
             extra={"event": str(event), "request_id": request_id, "cluster": cluster, "actor": actor})
    return _new_id(c._x(
        "INSERT INTO audit (at, request_id, cluster, actor, event, state_from, state_to, fingerprint,"
        " detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (_ts(at), request_id, cluster, actor, str(event), state_from, state_to, fingerprint,
         json.dumps(detail, sort_keys=True))))


def _asked(req: Request) -> dict[str, object]:
    return {"action": req.action, "args": list(req.args), "node": req.node, "argv": list(req.argv),
            "reason": req.reason, "expires_at": _ts(req.expires_at),
            "required_approvals": req.required_approvals}


def _event_detail(event: Event, new: Request) -> dict[str, object]:
    detail: dict[str, object] = {}
    if isinstance(event, Approve):
        detail["approvals"] = f"{len(new.approvers)}/{new.required_approvals}"
    if isinstance(event, Finish):
        r = event.result
        detail.update(exit_status=r.exit_status, duration_s=round(r.duration_s, 3),
                      stderr=r.stderr[-500:])  # the tail says why; the row keeps it all
    if isinstance(event, Refuse) or new.note:
        detail["note"] = new.note
    return detail


def _request_row(r: Request) -> dict[str, object]:
    return {
        "id": r.id, "cluster": r.cluster, "action": r.action, "args": json.dumps(r.args),
        "node": r.node, "argv": json.dumps(r.argv), "requester": r.requester, "channel": r.channel,
        "reason": r.reason, "prediction": r.prediction, "fingerprint": r.fingerprint,
        "created_at": _ts(r.created_at), "expires_at": _ts(r.expires_at),
        "required_approvals": r.required_approvals, "allow_self_approval": int(r.allow_self_approval),
        "approvers": json.dumps(r.approvers), "state": str(r.state), "decided_by": r.decided_by,
        "message_ts": r.message_ts, "result": _result_json(r.result), "note": r.note,
        "version": r.version,
    }


def _request_from(row: Row) -> Request:
    return Request(
        id=row["id"], cluster=row["cluster"], action=row["action"], args=_strs(row["args"]),
        node=row["node"], argv=_strs(row["argv"]), requester=row["requester"],
        channel=row["channel"], reason=row["reason"], prediction=row["prediction"],
        fingerprint=row["fingerprint"], created_at=_dt(row["created_at"]),
        expires_at=_dt(row["expires_at"]), required_approvals=row["required_approvals"],
        allow_self_approval=bool(row["allow_self_approval"]), approvers=_strs(row["approvers"]),
        state=State(row["state"]), decided_by=row["decided_by"], message_ts=row["message_ts"],
        result=_result_from(row["result"]), note=row["note"], version=row["version"],
    )


def _result_json(result: Result | None) -> str | None:
    if result is None:
        return None
    return json.dumps({"exit_status": result.exit_status, "stdout": result.stdout,
                       "stderr": result.stderr, "duration_s": result.duration_s})


def _result_from(text: str | None) -> Result | None:
    if text is None:
        return None
    d = json.loads(text)
    return Result(exit_status=d["exit_status"], stdout=d["stdout"], stderr=d["stderr"],
                  duration_s=d["duration_s"])


def _audit_from(row: Row) -> AuditEntry:
    return AuditEntry(
        id=row["id"], at=_dt(row["at"]), request_id=row["request_id"], cluster=row["cluster"],
        actor=row["actor"], event=row["event"], state_from=row["state_from"],
        state_to=row["state_to"], fingerprint=row["fingerprint"], detail=json.loads(row["detail"]),
    )


def _incident_from(row: Row) -> Incident:
    return Incident(
        id=row["id"], cluster=row["cluster"], key=row["key"], state=IncidentState(row["state"]),
        severity=Severity(row["severity"]), title=row["title"], channel=row["channel"],
        thread_ts=row["thread_ts"], opened_at=_dt(row["opened_at"]),
        resolved_at=_opt_dt(row["resolved_at"]), last_posted_at=_opt_dt(row["last_posted_at"]),
        payload=json.loads(row["payload"]),
    )


def _outbox_from(row: Row) -> OutboxItem:
    return OutboxItem(
        id=row["id"], created_at=_dt(row["created_at"]), kind=row["kind"],
        payload=json.loads(row["payload"]), attempts=row["attempts"],
        next_attempt_at=_dt(row["next_attempt_at"]), delivered_at=_opt_dt(row["delivered_at"]),
        result=row["result"], epoch=row["epoch"],
    )


def _strs(text: str) -> tuple[str, ...]:
    return tuple(str(s) for s in json.loads(text))


def _new_id(inserted: Rows) -> int:
    row = inserted.one()
    assert row is not None
    return int(row["id"])


def _ts(at: datetime) -> str:
    """UTC, fixed width, so text order is time order in SQL comparisons."""
    if at.tzinfo is None:
        raise ValueError("naive datetime: the store needs an aware one")
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _opt_dt(text: str | None) -> datetime | None:
    return None if text is None else _dt(text)


from bot.store.aio import AsyncStore  # noqa: E402  (it builds on Store, defined above)
