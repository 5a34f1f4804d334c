"""SQLite persistence: approval requests and their append-only audit, watcher state, incidents,
the Slack outbox and per-cluster remediation locks. One WAL file; every method is one short
synchronous transaction, called directly from the event loop (see Store's docstring); `transaction()`
groups several calls into one."""

from __future__ import annotations

import json
import logging
import sqlite3
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

log = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 2.0  # a writer waits this long for another connection's write to finish
AUDIT_PAGE = 500  # rows per read while streaming the whole audit log
INTERRUPTED = "bot restarted while running; outcome unknown, check the cluster"

# One tuple of statements per schema version: _MIGRATIONS[i] upgrades user_version i to i+1.
# Statements, not scripts: executescript() would commit the migration's transaction half way.
_SCHEMA_V1 = (
    """CREATE TABLE requests (
        id TEXT PRIMARY KEY, cluster TEXT NOT NULL, action TEXT NOT NULL, args TEXT NOT NULL,
        node TEXT NOT NULL, argv TEXT NOT NULL, requester TEXT NOT NULL, channel TEXT NOT NULL,
        reason TEXT NOT NULL, prediction TEXT, fingerprint TEXT NOT NULL,
        created_at TEXT NOT NULL, expires_at TEXT NOT NULL, required_approvals INTEGER NOT NULL,
        allow_self_approval INTEGER NOT NULL, approvers TEXT NOT NULL, state TEXT NOT NULL,
        decided_by TEXT, message_ts TEXT, result TEXT, note TEXT, version INTEGER NOT NULL)""",
    "CREATE INDEX requests_by_state ON requests (state, expires_at)",
    """CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, request_id TEXT, cluster TEXT,
        actor TEXT NOT NULL, event TEXT NOT NULL, state_from TEXT, state_to TEXT,
        fingerprint TEXT, detail TEXT NOT NULL DEFAULT '{}')""",
    # Guards against our own bugs, not against someone holding the file: they can DROP TABLE.
    """CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END""",
    """CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END""",
    "CREATE TABLE watch_state (cluster TEXT PRIMARY KEY, state TEXT NOT NULL)",
    """CREATE TABLE incidents (
        id INTEGER PRIMARY KEY AUTOINCREMENT, cluster TEXT NOT NULL, key TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('open', 'resolved')), severity INTEGER NOT NULL,
        title TEXT NOT NULL, channel TEXT, thread_ts TEXT, opened_at TEXT NOT NULL,
        resolved_at TEXT, last_posted_at TEXT, payload TEXT NOT NULL DEFAULT '{}')""",
    "CREATE UNIQUE INDEX incidents_one_open ON incidents (cluster, key) WHERE state = 'open'",
    """CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT, created_at TEXT NOT NULL, kind TEXT NOT NULL,
        payload TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at TEXT NOT NULL,
        delivered_at TEXT, result TEXT)""",
    "CREATE INDEX outbox_undelivered ON outbox (id) WHERE delivered_at IS NULL",
    """CREATE TABLE locks (
        cluster TEXT PRIMARY KEY, request_id TEXT NOT NULL, locked_at TEXT NOT NULL)""",
)
_MIGRATIONS: tuple[tuple[str, ...], ...] = (_SCHEMA_V1,)
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


@dataclass(frozen=True, slots=True)
class Lock:
    cluster: str
    request_id: str
    locked_at: datetime


# ---------------------------------------------------------------- the store


class Store:
    """The bot's one SQLite connection.

    Concurrency: methods are synchronous and each is one short transaction on a local WAL file,
    so the bot calls them straight from the event loop. Nothing awaits inside a method, so the
    loop itself serialises the bot's own calls; the version compare-and-set in `apply`, BEGIN
    IMMEDIATE and the busy timeout cover other connections (the CLI, tests, a stray second bot).
    sqlite3's check_same_thread stays on: a thread that wants the store opens its own.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @classmethod
    def open(cls, path: str | Path) -> Store:
        conn = sqlite3.connect(str(path), isolation_level=None, timeout=BUSY_TIMEOUT_S)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode = WAL")  # no-op for :memory:
            # FULL: a committed START survives a power cut, so it can never look un-started.
            conn.execute("PRAGMA synchronous = FULL")
            _migrate(conn, str(path))
        except BaseException:
            conn.close()
            raise
        return cls(conn)

    def close(self) -> None:
        self._conn.close()

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

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        if self._conn.in_transaction:  # inside transaction(): the outermost one commits
            # A savepoint: a call that fails undoes its own writes (a refused START stays
            # APPROVED) even when its caller handles the error and the outer transaction commits.
            self._conn.execute("SAVEPOINT joined")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK TO joined")
                self._conn.execute("RELEASE joined")
                raise
            self._conn.execute("RELEASE joined")
            return
        # IMMEDIATE takes the write lock up front, so two writers never deadlock upgrading.
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # ------------------------------------------------------------ requests

    def create_request(self, req: Request) -> None:
        if req.state is not State.PENDING or req.approvers:  # approvals only ever come via apply
            raise ValueError(f"a new request must be pending with no approvals, not {req.state}")
        row = _request_row(req)
        with self._write() as c:
            c.execute(f"INSERT INTO requests ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                      tuple(row.values()))
            _insert_audit(c, at=req.created_at, request_id=req.id, cluster=req.cluster,
                          actor=req.requester, event="request", state_to=req.state,
                          fingerprint=req.fingerprint, detail=_asked(req))

    def get_request(self, request_id: str) -> Request | None:
        row = self._conn.execute("SELECT * FROM requests WHERE id = ?", (request_id,)).fetchone()
        return None if row is None else _request_from(row)

    def find_request_by_message(self, channel: str, ts: str) -> Request | None:
        """The request whose root message is (channel, ts): thread replies decide through it."""
        row = self._conn.execute("SELECT * FROM requests WHERE channel = ? AND message_ts = ?",
                                 (channel, ts)).fetchone()
        return None if row is None else _request_from(row)

    def set_message_ts(self, request_id: str, ts: str) -> None:
        """Not a transition, so no version bump: `apply` never writes message_ts."""
        self._conn.execute("UPDATE requests SET message_ts = ? WHERE id = ?", (ts, request_id))

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
            changed = c.execute(
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
        rows = self._conn.execute(
            "SELECT r.*, (SELECT MAX(a.at) FROM audit a WHERE a.request_id = r.id AND a.state_to = r.state)"
            " AS ended FROM requests r WHERE r.cluster = ? AND (r.state IN (?, ?) OR (r.state IN (?, ?)"
            " AND EXISTS (SELECT 1 FROM audit a WHERE a.request_id = r.id AND a.state_to = r.state"
            " AND a.at >= ?))) ORDER BY r.created_at, r.id",
            (cluster, State.APPROVED, State.RUNNING, State.SUCCEEDED, State.FAILED, _ts(since)))
        return [(_request_from(r), None if r["state"] in (State.APPROVED, State.RUNNING) else _dt(r["ended"]))
                for r in rows]

    def _requests_in(self, state: State) -> list[Request]:
        rows = self._conn.execute(
            "SELECT * FROM requests WHERE state = ? ORDER BY created_at, id", (state,))
        return [_request_from(r) for r in rows]

    def expire_due(self, now: datetime) -> list[Request]:
        """EXPIRE every PENDING request whose time is up (the sweeper, and at startup)."""
        rows = self._conn.execute(
            "SELECT id FROM requests WHERE state = ? AND expires_at <= ? ORDER BY expires_at",
            (State.PENDING, _ts(now))).fetchall()
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
        rows = self._conn.execute("SELECT * FROM audit ORDER BY id DESC LIMIT ?", (n,)).fetchall()
        return [_audit_from(r) for r in reversed(rows)]

    def audit_all(self) -> Iterator[AuditEntry]:
        # Paged by id so a long export never holds one read snapshot open (and the WAL growing).
        last = 0
        while True:
            rows = self._conn.execute("SELECT * FROM audit WHERE id > ? ORDER BY id LIMIT ?",
                                      (last, AUDIT_PAGE)).fetchall()
            if not rows:
                return
            yield from (_audit_from(r) for r in rows)
            last = rows[-1]["id"]

    # ------------------------------------------------------------ watch state

    def save_watch_state(self, cluster: str, json_str: str) -> None:
        json.loads(json_str)  # refuse to store what load_watch_state's caller could not read
        self._conn.execute(
            "INSERT INTO watch_state (cluster, state) VALUES (?, ?)"
            " ON CONFLICT (cluster) DO UPDATE SET state = excluded.state", (cluster, json_str))

    def load_watch_state(self, cluster: str) -> str | None:
        row = self._conn.execute("SELECT state FROM watch_state WHERE cluster = ?",
                                 (cluster,)).fetchone()
        return None if row is None else str(row["state"])

    # ------------------------------------------------------------ incidents

    def open_incident(self, *, cluster: str, key: str, severity: Severity, title: str,
                      channel: str | None, now: datetime,
                      payload: Mapping[str, object] | None = None) -> Incident:
        """At most one open incident per (cluster, key): opening it again returns the open one."""
        self._conn.execute(
            "INSERT INTO incidents (cluster, key, state, severity, title, channel, opened_at, payload)"
            " VALUES (?, ?, 'open', ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (cluster, key, int(severity), title, channel, _ts(now), json.dumps(payload or {})))
        found = self.find_open_incident(cluster, key)
        assert found is not None  # the insert either landed or hit the open one
        return found

    def find_open_incident(self, cluster: str, key: str) -> Incident | None:
        row = self._conn.execute(
            "SELECT * FROM incidents WHERE cluster = ? AND key = ? AND state = 'open'",
            (cluster, key)).fetchone()
        return None if row is None else _incident_from(row)

    def open_incidents(self, cluster: str) -> list[Incident]:
        rows = self._conn.execute(
            "SELECT * FROM incidents WHERE cluster = ? AND state = 'open' ORDER BY id", (cluster,))
        return [_incident_from(r) for r in rows]

    def get_incident(self, incident_id: int) -> Incident | None:
        row = self._conn.execute("SELECT * FROM incidents WHERE id = ?", (incident_id,)).fetchone()
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
            self._conn.execute(f"UPDATE incidents SET {sets} WHERE id = ?", (*given.values(), incident_id))
        return self._incident(incident_id)

    def resolve_incident(self, incident_id: int, *, now: datetime) -> Incident:
        self._conn.execute(
            "UPDATE incidents SET state = 'resolved', resolved_at = ? WHERE id = ? AND state = 'open'",
            (_ts(now), incident_id))
        return self._incident(incident_id)

    def recent_incident(self, cluster: str, key: str, since: datetime) -> Incident | None:
        """The latest incident with this key resolved at or after `since` (the watcher reopens
        it, or threads a recovery tail into it, instead of posting a new root)."""
        row = self._conn.execute(
            "SELECT * FROM incidents WHERE cluster = ? AND key = ? AND state = 'resolved'"
            " AND resolved_at >= ? ORDER BY id DESC LIMIT 1", (cluster, key, _ts(since))).fetchone()
        return None if row is None else _incident_from(row)

    def recent_incidents(self, cluster: str, since: datetime) -> list[Incident]:
        """Incidents open now or resolved at or after `since`, oldest first."""
        rows = self._conn.execute(
            "SELECT * FROM incidents WHERE cluster = ? AND (state = 'open' OR resolved_at >= ?)"
            " ORDER BY id", (cluster, _ts(since)))
        return [_incident_from(r) for r in rows]

    def reopen_incident(self, incident_id: int) -> Incident:
        """A resolved incident is open again (its key must have no other open incident)."""
        self._conn.execute(
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
        cur = self._conn.execute(
            "INSERT INTO outbox (created_at, kind, payload, next_attempt_at) VALUES (?, ?, ?, ?)",
            (_ts(now), kind, json.dumps(payload), _ts(now)))
        return _rowid(cur)

    def due(self, now: datetime, limit: int = 20) -> list[OutboxItem]:
        """Undelivered items in id order, stopping at the first one still waiting for its retry.

        Strict order: a later message never overtakes an earlier one (a reply never precedes its
        thread's root). The poster gives up on a permanent error with mark_delivered.
        """
        rows = self._conn.execute(
            "SELECT * FROM outbox WHERE delivered_at IS NULL ORDER BY id LIMIT ?", (limit,))
        items = []
        for item in map(_outbox_from, rows):
            if item.next_attempt_at > now:
                break
            items.append(item)
        return items

    def mark_delivered(self, item_id: int, result: str, *, now: datetime) -> None:
        """`result`: what the caller needs later (the message ts), or why it gave up."""
        self._conn.execute("UPDATE outbox SET delivered_at = ?, result = ?, attempts = attempts + 1"
                           " WHERE id = ?", (_ts(now), result, item_id))

    def mark_failed(self, item_id: int, next_attempt_at: datetime) -> None:
        self._conn.execute("UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ? WHERE id = ?",
                           (_ts(next_attempt_at), item_id))

    # ------------------------------------------------------------ retention

    def prune(self, *, before: datetime) -> tuple[int, int]:
        """Delete outbox rows delivered, and incidents resolved, before `before`: (rows, incidents).

        An incident a message still waiting in the outbox refers to is kept (its thread is needed).
        The audit log is never pruned: it is the record, exported with `clusterbot audit --jsonl`.
        """
        cutoff = _ts(before)
        with self._write() as c:
            rows = c.execute("DELETE FROM outbox WHERE delivered_at IS NOT NULL AND delivered_at < ?",
                             (cutoff,)).rowcount
            incidents = c.execute(
                "DELETE FROM incidents WHERE state = 'resolved' AND resolved_at < ? AND id NOT IN ("
                " SELECT json_extract(payload, '$.incident') FROM outbox"
                " WHERE delivered_at IS NULL AND json_extract(payload, '$.incident') IS NOT NULL)",
                (cutoff,)).rowcount
        return rows, incidents

    # ------------------------------------------------------------ locks

    def try_lock(self, cluster: str, request_id: str, now: datetime) -> bool:
        """Take the cluster's remediation lock; False if anyone (even this request) holds it."""
        try:
            self._conn.execute("INSERT OR FAIL INTO locks (cluster, request_id, locked_at)"
                               " VALUES (?, ?, ?)", (cluster, request_id, _ts(now)))
        except sqlite3.IntegrityError:
            return False
        return True

    def unlock(self, cluster: str, request_id: str) -> bool:
        """Release the lock if `request_id` holds it; another holder's lock is never touched."""
        cur = self._conn.execute("DELETE FROM locks WHERE cluster = ? AND request_id = ?",
                                 (cluster, request_id))
        return cur.rowcount > 0

    def lock_holder(self, cluster: str) -> Lock | None:
        row = self._conn.execute("SELECT * FROM locks WHERE cluster = ?", (cluster,)).fetchone()
        return None if row is None else Lock(row["cluster"], row["request_id"], _dt(row["locked_at"]))

    def break_stale_locks(self, now: datetime, older_than_s: float) -> list[Lock]:
        """Remove locks taken more than `older_than_s` ago, auditing each one."""
        cutoff = _ts(now - timedelta(seconds=older_than_s))
        with self._write() as c:
            rows = c.execute("SELECT * FROM locks WHERE locked_at <= ?", (cutoff,)).fetchall()
            broken = [Lock(r["cluster"], r["request_id"], _dt(r["locked_at"])) for r in rows]
            for lock in broken:
                c.execute("DELETE FROM locks WHERE cluster = ?", (lock.cluster,))
                _insert_audit(c, at=now, request_id=lock.request_id, cluster=lock.cluster,
                              actor=SYSTEM_ACTOR, event="lock_broken",
                              detail={"locked_at": _ts(lock.locked_at), "older_than_s": older_than_s})
        return broken


# ---------------------------------------------------------------- helpers


def _migrate(conn: sqlite3.Connection, where: str) -> None:
    conn.execute("BEGIN IMMEDIATE")  # two processes opening a new file must not both migrate
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise ConfigError(f"{where}: schema version {version} is newer than this clusterbot's "
                              f"{SCHEMA_VERSION}")
        for statements in _MIGRATIONS[version:]:
            for statement in statements:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _lock_effects(c: sqlite3.Connection, old: Request, new: Request, now: datetime) -> None:
    """START takes the cluster lock in the same transaction; leaving APPROVED or RUNNING frees it."""
    if new.state is State.RUNNING:
        c.execute("INSERT OR IGNORE INTO locks (cluster, request_id, locked_at) VALUES (?, ?, ?)",
                  (new.cluster, new.id, _ts(now)))
        holder = c.execute("SELECT request_id FROM locks WHERE cluster = ?", (new.cluster,)).fetchone()
        if holder["request_id"] != new.id:  # rolls the START back: fail closed
            raise ClusterBusy(f"another remediation ({holder['request_id']}) is running on {new.cluster}")
    elif old.state in (State.APPROVED, State.RUNNING) and new.state.terminal:
        c.execute("DELETE FROM locks WHERE cluster = ? AND request_id = ?", (new.cluster, new.id))


def _insert_audit(c: sqlite3.Connection, *, at: datetime, actor: str, event: str,
                  request_id: str | None = None, cluster: str | None = None,
                  state_from: str | None = None, state_to: str | None = None,
                  fingerprint: str | None = None, detail: Mapping[str, object]) -> int:
    # Every approval step passes here: the journal shows requests, approvals and runs at INFO.
    log.info("audit: %s%s by %s%s", event, f" {request_id}" if request_id else "", actor,
             f" ({state_from or 'new'} -> {state_to})" if state_to else "",
             extra={"event": str(event), "request_id": request_id, "cluster": cluster, "actor": actor})
    cur = c.execute(
        "INSERT INTO audit (at, request_id, cluster, actor, event, state_from, state_to, fingerprint,"
        " detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (_ts(at), request_id, cluster, actor, str(event), state_from, state_to, fingerprint,
         json.dumps(detail, sort_keys=True)))
    return _rowid(cur)


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


def _request_from(row: sqlite3.Row) -> Request:
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


def _audit_from(row: sqlite3.Row) -> AuditEntry:
    return AuditEntry(
        id=row["id"], at=_dt(row["at"]), request_id=row["request_id"], cluster=row["cluster"],
        actor=row["actor"], event=row["event"], state_from=row["state_from"],
        state_to=row["state_to"], fingerprint=row["fingerprint"], detail=json.loads(row["detail"]),
    )


def _incident_from(row: sqlite3.Row) -> Incident:
    return Incident(
        id=row["id"], cluster=row["cluster"], key=row["key"], state=IncidentState(row["state"]),
        severity=Severity(row["severity"]), title=row["title"], channel=row["channel"],
        thread_ts=row["thread_ts"], opened_at=_dt(row["opened_at"]),
        resolved_at=_opt_dt(row["resolved_at"]), last_posted_at=_opt_dt(row["last_posted_at"]),
        payload=json.loads(row["payload"]),
    )


def _outbox_from(row: sqlite3.Row) -> OutboxItem:
    return OutboxItem(
        id=row["id"], created_at=_dt(row["created_at"]), kind=row["kind"],
        payload=json.loads(row["payload"]), attempts=row["attempts"],
        next_attempt_at=_dt(row["next_attempt_at"]), delivered_at=_opt_dt(row["delivered_at"]),
        result=row["result"],
    )


def _strs(text: str) -> tuple[str, ...]:
    return tuple(str(s) for s in json.loads(text))


def _rowid(cur: sqlite3.Cursor) -> int:
    assert cur.lastrowid is not None
    return cur.lastrowid


def _ts(at: datetime) -> str:
    """UTC, fixed width, so text order is time order in SQL comparisons."""
    if at.tzinfo is None:
        raise ValueError("naive datetime: the store needs an aware one")
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _opt_dt(text: str | None) -> datetime | None:
    return None if text is None else _dt(text)

