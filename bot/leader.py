"""One leader among the replicas: only it runs the watcher and the alert deliverer.

Every replica serves Slack; leadership is a lock that frees itself when its holder dies:

- PostgreSQL: a session advisory lock (`pg_try_advisory_lock`) held on a dedicated connection.
  When the leader's process dies, its kernel closes the socket and the server ends the session
  (and frees the lock) at once. When the leader's host or network dies, nothing closes it: the
  server finds out by TCP keepalives and frees the lock after `Timing.lock_free_s`.
- SQLite: an exclusive `flock` on a file next to the database, freed when the process dies. One
  host only (the database is one local file): two replicas there survive a crash or an upgrade
  of one process, not the host.

Gaining leadership takes a new epoch from the store (`take_leadership`); every alert send first
claims its outbox row for that epoch (`claim_send`), so a leader that was deposed without knowing
it never posts: the claim fails and it steps down.

Timing (`Timing`; the arithmetic that makes a cut-off leader stop before anyone else starts):
the leader confirms its lock every `check_s` and steps down unless the answer comes within
`timeout_s`. Say the last packet between the leader and the server got through at t0. The
leader's next check starts by t0 + check_s and gives up by t0 + check_s + timeout_s: it has
stopped watching and posting by then. The server's keepalives start only once the connection has
been idle for `keepalive_idle_s` (each check resets that), then probe `keepalive_count` times,
`keepalive_interval_s` apart: it frees the lock at t0 + lock_free_s at the earliest, with

    keepalive_idle_s = ceil(2 * check_s + timeout_s) + 1     (2 * check_s: the last check may
    lock_free_s = keepalive_idle_s + count * interval         have been up to check_s before t0)

so lock_free_s > check_s + timeout_s always, by at least check_s + 1 s plus the probes. The
defaults (check 1 s, timeout 1.5 s) give keepalive_idle_s 5 and lock_free_s 7 s: a cut-off
leader has stopped after 2.5 s, a follower can take over after 7 s, and on top the epoch fence
refuses every send of the old leader from the moment the new one took its epoch.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import math
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from bot.errors import ClusterbotError, first_line

if TYPE_CHECKING:
    from psycopg import AsyncConnection

    from bot.metrics import Metrics
    from bot.settings import Settings

log = logging.getLogger(__name__)

LOCK_FILE = "clusterbot.leader.lock"
# pg_try_advisory_lock(int4, int4): "clus", "lead". Advisory locks are per database, so two
# deployments that share a server but not a database do not contend.
PG_LOCK_KEY = (0x636C7573, 0x6C656164)
KEEPALIVE_INTERVAL_S = 1
KEEPALIVE_COUNT = 2
DRAIN_TIMEOUT_S = 20.0  # a planned stop delivers what is queued for at most this long
TAKE_TIMEOUT_S = 5.0  # taking the epoch after the lock; longer and the lock goes back


class Role(StrEnum):
    LEADER = "leader"
    FOLLOWER = "follower"


class LeadershipError(ClusterbotError):
    """The lock's database cannot be reached or answered wrongly."""


@dataclass(frozen=True)
class Timing:
    retry_s: float = 1.0  # a follower tries to take the lock this often
    check_s: float = 1.0  # the leader confirms its lock this often
    timeout_s: float = 1.5  # ... and steps down if the confirmation takes longer

    @property
    def keepalive_idle_s(self) -> int:
        return math.ceil(2 * self.check_s + self.timeout_s) + 1

    @property
    def lock_free_s(self) -> int:
        """After the leader's host went silent, the server frees the lock this long after the
        last packet got through (at the earliest): the time a follower must wait."""
        return self.keepalive_idle_s + KEEPALIVE_COUNT * KEEPALIVE_INTERVAL_S

    @property
    def step_down_s(self) -> float:
        """A leader cut off from the database has stopped this long after the last packet."""
        return self.check_s + self.timeout_s


class LeaderLock(Protocol):
    what: str  # for log lines: which lock

    async def try_acquire(self) -> bool:
        """True if this replica holds the lock now; False if another one does. Raises on trouble."""

    async def confirm(self) -> bool:
        """Still held? Raises (or never returns: the caller times it out) when it cannot tell."""

    async def release(self) -> None:
        """Let go (also: forget a connection that may be dead). Never raises."""


class EpochRow(Protocol):
    @property
    def epoch(self) -> int: ...


class LeaderStore(Protocol):
    """What leadership needs from the store (bot/store: AsyncStore)."""

    async def take_leadership(self, holder: str, now: datetime) -> int: ...

    async def claim_send(self, item_id: int, epoch: int) -> bool: ...

    async def leadership(self) -> EpochRow: ...


# ---------------------------------------------------------------- locks


class FileLock:
    """An exclusive flock on a local file: the kernel frees it when the holding process dies.
    Not for NFS or other network file systems, whose locks do not follow the holder's death."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.what = f"file lock {path}"
        self._fd: int | None = None

    async def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    async def confirm(self) -> bool:
        # A flock lasts as long as the descriptor: nobody else can take it while we live.
        return self._fd is not None

    async def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)  # closing the only descriptor releases the lock


class PgAdvisoryLock:
    """A session advisory lock on a connection of its own (never a pooled one: a pool would hand
    the session, and so the lock, to someone else). Connect directly or through a session-mode
    pooler: a transaction-mode PgBouncer loses session locks."""

    def __init__(self, url: str, timing: Timing) -> None:
        self.url = url
        self.timing = timing
        self.what = "PostgreSQL advisory lock"
        self._conn: AsyncConnection[Any] | None = None

    def _connect_args(self) -> dict[str, Any]:
        t = self.timing
        timeout_ms = int(t.timeout_s * 1000)
        free_ms = t.lock_free_s * 1000
        # Server side (per session): its keepalives free the lock when our host goes silent;
        # tcp_user_timeout bounds the case where the server itself had unacknowledged data out.
        server = (f"-c statement_timeout={timeout_ms} -c lock_timeout={timeout_ms} "
                  f"-c tcp_keepalives_idle={t.keepalive_idle_s} "
                  f"-c tcp_keepalives_interval={KEEPALIVE_INTERVAL_S} "
                  f"-c tcp_keepalives_count={KEEPALIVE_COUNT} -c tcp_user_timeout={free_ms}")
        return {"autocommit": True, "connect_timeout": max(1, math.ceil(t.timeout_s * 2)),
                "application_name": "clusterbot-leader", "options": server,
                # Client side: our own socket errors too, instead of waiting for TCP's minutes.
                "keepalives": 1, "keepalives_idle": t.keepalive_idle_s,
                "keepalives_interval": KEEPALIVE_INTERVAL_S, "keepalives_count": KEEPALIVE_COUNT,
                "tcp_user_timeout": free_ms}

    async def _connection(self) -> AsyncConnection[Any]:
        from psycopg import AsyncConnection

        if self._conn is None or self._conn.closed:
            self._conn = await AsyncConnection.connect(self.url, **self._connect_args())
        return self._conn

    async def try_acquire(self) -> bool:
        import psycopg

        try:
            conn = await self._connection()
            cur = await conn.execute("SELECT pg_try_advisory_lock(%s, %s)", PG_LOCK_KEY)
            row = await cur.fetchone()
        except psycopg.Error as exc:
            await self.release()
            raise LeadershipError(f"leader lock: {first_line(exc)}") from exc
        return bool(row and row[0])

    async def confirm(self) -> bool:
        import psycopg

        conn = self._conn
        if conn is None or conn.closed:
            return False
        try:
            # The session could have lost the lock only by ending; asking pg_locks proves the
            # server still knows this session holds it (and that the server is there at all).
            cur = await conn.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND pid = pg_backend_pid() AND classid = %s AND objid = %s AND objsubid = 2)", PG_LOCK_KEY)
            row = await cur.fetchone()
        except psycopg.Error as exc:
            raise LeadershipError(f"leader lock: {first_line(exc)}") from exc
        return bool(row and row[0])

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        # Unlock first: the server ends a closed session a moment later, and a follower should not
        # find the lock still taken. On a dead network neither may hold up the caller for long.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.timing.timeout_s):
                await conn.execute("SELECT pg_advisory_unlock_all()")
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.timing.timeout_s):
                await conn.close()



# ---------------------------------------------------------------- the role


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Leadership:
    """The follower/leader loop. `on_gain(epoch)` starts the leader's work; `on_lose(drain)`
    stops it (drain: a planned handover delivers what is queued first)."""

    lock: LeaderLock
    store: LeaderStore
    on_gain: Callable[[int], Awaitable[None]]
    on_lose: Callable[[bool], Awaitable[None]]
    timing: Timing = field(default_factory=Timing)
    holder: str = field(default_factory=holder_name)
    metrics: Metrics | None = None
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    role: Role = Role.FOLLOWER
    epoch: int | None = None
    since: datetime | None = None
    database_ok: bool | None = None  # the last lock operation reached the database (None: not yet)
    changes: int = 0
    _lost: asyncio.Event = field(default_factory=asyncio.Event)
    _lost_why: str = ""
    _resigned: bool = False
    _complained: bool = False  # one warning per outage, not one per retry

    async def try_once(self) -> None:
        """One attempt to lead (at start: a lone replica leads before it serves its first request)."""
        if self.role is Role.FOLLOWER and not self._resigned:
            await self._try_lead()

    async def run(self) -> None:
        try:
            while not self._resigned:
                if self.role is Role.FOLLOWER:
                    await self._try_lead()
                    if self.role is Role.FOLLOWER:
                        await asyncio.sleep(self.timing.retry_s)  # a retry timer, not a synchronisation
                else:
                    await self._hold()
        finally:
            await self._step_down("stopping", drain=False)  # cancelled while leading: stop the work

    async def _try_lead(self) -> None:
        try:
            if not await self.lock.try_acquire():
                self._reached(True)
                return
            # Bounded: a store stuck on a dead connection must not keep the lock from everyone.
            async with asyncio.timeout(TAKE_TIMEOUT_S):
                epoch = await self.store.take_leadership(self.holder, self.clock())
        except Exception as exc:  # the database is away: stay a follower, try again
            self._reached(False, exc)
            await self.lock.release()
            return
        if self._resigned:  # shutting down meanwhile: the next replica gets it
            await self.lock.release()
            return
        self._reached(True)
        self.role, self.epoch, self.since = Role.LEADER, epoch, self.clock()
        self._lost.clear()
        self._changed()
        log.info("leadership gained: this replica (%s) is the leader, epoch %d; it runs the watcher "
                    "and the alert deliverer", self.holder, epoch,
                    extra={"role": "leader", "epoch": epoch})
        try:
            await self.on_gain(epoch)
        except Exception:
            log.exception("starting the leader's work failed; stepping down")
            await self._step_down("starting the watcher failed", drain=False)

    async def _hold(self) -> None:
        """One check period as leader: wait check_s (or a deposition), then confirm the lock."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.timing.check_s):
                await self._lost.wait()
        if self._lost.is_set() or self._resigned:
            if self._lost.is_set() and self.role is Role.LEADER:
                await self._step_down(self._lost_why, drain=False)
            return
        why = await self._confirm()
        if why is not None:
            await self._step_down(why, drain=False)

    async def _confirm(self) -> str | None:
        """None while the lock is ours; else why not. A hung answer counts as lost after timeout_s:
        the check runs as its own task, so not even a stuck cancellation can delay the step-down."""
        check = asyncio.create_task(self.lock.confirm())
        done, _ = await asyncio.wait({check}, timeout=self.timing.timeout_s)
        if not done:
            check.cancel()
            self._reached(False)
            return f"the lock could not be confirmed within {self.timing.timeout_s:g}s"
        try:
            held = check.result()
        except Exception as exc:
            self._reached(False, exc)
            return f"the lock could not be confirmed: {first_line(exc)}"
        self._reached(True)
        return None if held else "the lock is no longer held"

    def deposed(self, why: str) -> None:
        """Someone else holds the epoch (a send's claim failed): step down at once."""
        self._lost_why = why
        self._lost.set()

    async def claim(self, item_id: int) -> bool:
        """Before every send: is this item ours to send as the current epoch's leader?"""
        if self.role is not Role.LEADER or self.epoch is None:
            return False
        if await self.store.claim_send(item_id, self.epoch):
            return True
        current = (await self.store.leadership()).epoch
        if current != self.epoch:  # else the item was delivered or pruned meanwhile: just skip it
            self.deposed(f"epoch {current} took over (alert {item_id} was about to be sent)")
        return False

    async def resign(self) -> None:
        """Planned stop (SIGTERM): deliver what is queued, then let go for a follower."""
        self._resigned = True
        if self.role is Role.LEADER:
            await self._step_down("shutting down (planned handover)", drain=True)

    async def _step_down(self, why: str, *, drain: bool) -> None:
        if self.role is not Role.LEADER:  # a check and a resign can meet: the first one acts
            return
        epoch = self.epoch
        self.role, self.since = Role.FOLLOWER, self.clock()
        self._changed()
        level = logging.INFO if drain else logging.WARNING
        log.log(level, "leadership lost (epoch %s): %s; this replica is a follower and stops the watcher "
                "and the alert deliverer", epoch, why, extra={"role": "follower", "epoch": epoch})
        try:
            await self.on_lose(drain)
        finally:
            await self.lock.release()  # only once our work has stopped: no overlap with the next leader

    def _changed(self) -> None:
        self.changes += 1
        if self.metrics is not None:
            self.metrics.leadership(self.role is Role.LEADER, self.epoch)

    def _reached(self, ok: bool, exc: BaseException | None = None) -> None:
        """Track database reachability for /readyz; say once when it goes and once when it is back."""
        self.database_ok = ok
        if ok and self._complained:
            self._complained = False
            log.warning("leader lock: the database answers again")
        elif not ok and not self._complained:
            self._complained = True
            log.warning("leader lock: the database does not answer (%s); retrying every %gs",
                        first_line(exc) if exc else "timed out", self.timing.retry_s)

    def status(self) -> dict[str, object]:
        """For /readyz."""
        return {"role": str(self.role), "epoch": self.epoch, "holder": self.holder,
                "since": self.since.isoformat() if self.since else None, "lock": self.lock.what,
                "database": self.database_ok}


def timing(settings: Settings) -> Timing:
    return Timing(retry_s=settings.leader_retry_s, check_s=settings.leader_check_s,
                  timeout_s=settings.leader_timeout_s)


def leader_lock(settings: Settings) -> LeaderLock:
    """The lock that fits the store: PostgreSQL's advisory lock (store_url), else a file lock next
    to the SQLite file."""
    if settings.store_url is not None:
        return PgAdvisoryLock(settings.store_url.get_secret_value(), timing(settings))
    return FileLock(Path(settings.state_dir) / LOCK_FILE)


def state_leader(settings: Settings) -> str:
    """For check-config: does a replica hold the leader lock now (without taking it)?"""
    if settings.store_url is not None:
        return _pg_leads(settings.store_url.get_secret_value())
    path = Path(settings.state_dir) / LOCK_FILE
    if not path.exists():
        return "no replica has led yet"
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # fails only while a leader holds it
    except BlockingIOError:
        return "a replica leads now"
    finally:
        os.close(fd)  # frees our shared lock, if we got it
    return "no replica leads now"


def _pg_leads(url: str) -> str:
    import psycopg

    with psycopg.connect(url, connect_timeout=5, application_name="clusterbot-check") as conn:
        row = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                           "AND classid = %s AND objid = %s AND objsubid = 2", PG_LOCK_KEY).fetchone()
    return "a replica leads now" if row and row[0] else "no replica leads now"
