"""The store as the event loop sees it: every call awaited, none run on the loop.

A database call blocks: a SQLite fsync, a PostgreSQL round trip, a lock wait. AsyncStore runs
them on one thread of its own, one at a time in submission order, through one connection (a
SQLite connection stays on the thread that opened it). Awaiting a method is calling the Store
method of the same name there; `transaction(fn)` runs a whole synchronous function on that thread
in one transaction, so the watcher's writes for one poll still commit together or not at all.

When the database cannot be used (PostgreSQL down, restarting or unreachable; SQLite locked past
its busy timeout), a call raises StoreUnavailable with a one-line message and nothing of it is
committed. A broken connection is dropped, and the next call opens a new one: reconnecting
needs nobody. A cancelled caller does not cancel a call already running on the thread: it
completes (and commits) or fails whole.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from bot.errors import ClusterbotError
from bot.store import AuditEntry, Store, _where
from bot.store.dialect import is_postgresql

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


def _awaitable(method: Callable[Concatenate[Store, P], T]
               ) -> Callable[Concatenate[AsyncStore, P], Coroutine[Any, Any, T]]:
    """Store.method as an AsyncStore coroutine method with the same signature."""
    async def call(self: AsyncStore, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self.call(lambda db: method(db, *args, **kwargs))
    call.__name__, call.__qualname__, call.__doc__ = method.__name__, method.__qualname__, method.__doc__
    return call


class AsyncStore:
    def __init__(self, target: str | Path, opener: Callable[[str | Path], Store] = Store.open) -> None:
        self.target = target
        self._opener = opener  # how a connection is (re)opened: Store.open, or a test's subclass
        self._db: Store | None = None
        self._dropped = False
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="store")

    @classmethod
    async def open(cls, target: str | Path, opener: Callable[[str | Path], Store] = Store.open) -> AsyncStore:
        """Connect and migrate now, so a bad URL or a newer schema stops the start with one line."""
        store = cls(target, opener)
        try:
            await store.call(lambda db: None)
        except BaseException:
            await store.close()
            raise
        return store

    @property
    def backend(self) -> str:
        return "postgresql" if is_postgresql(self.target) else "sqlite"

    async def close(self) -> None:
        await asyncio.to_thread(self.close_blocking)

    def close_blocking(self) -> None:
        """close() for code outside the event loop: after the calls already submitted."""
        self._thread.submit(self._drop).result()
        self._thread.shutdown(wait=False)

    async def call(self, fn: Callable[[Store], T]) -> T:
        """fn(store) on the store's thread (each Store method is its own transaction)."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._run, fn)

    def blocking(self, fn: Callable[[Store], T]) -> T:
        """fn(store) on the store's thread, waiting for it here: for code outside the event loop
        (a test's assertions, a thread). From a coroutine it would stall the loop: await call()."""
        return self._thread.submit(self._run, fn).result()

    async def transaction(self, fn: Callable[[Store], T]) -> T:
        """fn(store) on the store's thread as one transaction: all of its writes or none."""
        def whole(db: Store) -> T:
            with db.transaction():
                return fn(db)
        return await self.call(whole)

    # -- on the store's thread -------------------------------------------------------------

    def _run(self, fn: Callable[[Store], T]) -> T:
        db = self._connected()
        try:
            return fn(db)
        except ClusterbotError:
            raise
        except Exception as exc:
            down = db.connection.unavailable(exc)
            if db.connection.broken:
                log.warning("state database connection lost (%s); reconnecting on the next call", down or exc)
                self._drop()
                self._dropped = True
            if down is None:
                raise
            raise down from exc

    def _connected(self) -> Store:
        if self._db is None:
            self._db = self._opener(self.target)  # raises StoreUnavailable while the server is down
            if self._dropped:
                log.warning("state database %s: reconnected", _where(self.target))
                self._dropped = False
        return self._db

    def _drop(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()

    # -- Store's methods, awaitable ---------------------------------------------------------

    create_request = _awaitable(Store.create_request)
    get_request = _awaitable(Store.get_request)
    find_request_by_message = _awaitable(Store.find_request_by_message)
    set_message_ts = _awaitable(Store.set_message_ts)
    apply = _awaitable(Store.apply)
    pending_requests = _awaitable(Store.pending_requests)
    approved_requests = _awaitable(Store.approved_requests)
    running_requests = _awaitable(Store.running_requests)
    acting_requests = _awaitable(Store.acting_requests)
    expire_due = _awaitable(Store.expire_due)
    fail_interrupted = _awaitable(Store.fail_interrupted)
    append_audit = _awaitable(Store.append_audit)
    audit_tail = _awaitable(Store.audit_tail)
    save_watch_state = _awaitable(Store.save_watch_state)
    load_watch_state = _awaitable(Store.load_watch_state)
    open_incident = _awaitable(Store.open_incident)
    find_open_incident = _awaitable(Store.find_open_incident)
    open_incidents = _awaitable(Store.open_incidents)
    get_incident = _awaitable(Store.get_incident)
    update_incident = _awaitable(Store.update_incident)
    resolve_incident = _awaitable(Store.resolve_incident)
    recent_incident = _awaitable(Store.recent_incident)
    recent_incidents = _awaitable(Store.recent_incidents)
    reopen_incident = _awaitable(Store.reopen_incident)
    enqueue = _awaitable(Store.enqueue)
    due = _awaitable(Store.due)
    mark_delivered = _awaitable(Store.mark_delivered)
    mark_failed = _awaitable(Store.mark_failed)
    prune = _awaitable(Store.prune)
    first_sight = _awaitable(Store.first_sight)
    try_lock = _awaitable(Store.try_lock)
    unlock = _awaitable(Store.unlock)
    lock_holder = _awaitable(Store.lock_holder)
    break_stale_locks = _awaitable(Store.break_stale_locks)
    take_leadership = _awaitable(Store.take_leadership)
    leadership = _awaitable(Store.leadership)
    claim_send = _awaitable(Store.claim_send)
    ping = _awaitable(Store.ping)

    async def audit_all(self) -> list[AuditEntry]:
        return await self.call(lambda db: list(db.audit_all()))
