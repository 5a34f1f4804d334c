"""Wiring: Settings -> SSH pool, collector, store, services, watcher. One place builds the shell."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TextIO

from bot.collect import Ask, Collector
from bot.console import BANNER, Console, Extra
from bot.delivery import Claim, Deliverer
from bot.errors import ConfigError
from bot.metrics import Metrics
from bot.pacemaker.merge import ClusterReport
from bot.poster import Poster, TextPoster
from bot.remediation import Remediation
from bot.services import AppServices
from bot.settings import ClusterConfig, Settings
from bot.ssh import SshPool
from bot.store import AsyncStore, Store
from bot.watcher import Watcher

DB_NAME = "clusterbot.sqlite3"


def now() -> datetime:
    return datetime.now(UTC)


def store_target(settings: Settings) -> str | Path:
    """Where the state lives: store_url's PostgreSQL, else the SQLite file in state_dir (created)."""
    if settings.store_url is not None:
        return settings.store_url.get_secret_value()
    directory = Path(settings.state_dir)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"state_dir {directory}: {exc.strerror}; set CLUSTERBOT_STATE_DIR "
                          "to a writable directory") from exc
    return directory / DB_NAME


def open_store(settings: Settings) -> Store:
    """The synchronous store, for commands that run no event loop and only read (`clusterbot
    audit`): one the bot never ran against is refused, not created."""
    return Store.open(store_target(settings), create=False)


@dataclass
class Runtime:
    settings: Settings
    pool: SshPool
    collector: Collector
    store: AsyncStore
    services: AppServices
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    watcher: Watcher | None = None
    deliverer: Deliverer | None = None
    watching: list[asyncio.Task[None]] = field(default_factory=list)  # the watcher's, the deliverer's

    @classmethod
    async def start(cls, settings: Settings, stack: AsyncExitStack) -> Runtime:
        pool = await stack.enter_async_context(SshPool())
        store = await AsyncStore.open(store_target(settings))
        stack.push_async_callback(store.close)
        collector = Collector(pool, settings)
        services = AppServices(settings, collector, clock=now, store=store)
        rt = cls(settings, pool, collector, store, services)
        stack.push_async_callback(rt.stop_tasks)
        return rt

    async def first_sight(self, key: str) -> bool:
        """Whether an inbound event is new to every replica (bot.slack.app's redelivery check)."""
        return await self.store.first_sight(key, now())

    def watch(self, poster: Poster, *, fix_button: bool = False, metrics: Metrics | None = None,
              claim: Claim | None = None) -> Watcher:
        """Start the watcher and the alert deliverer as background tasks (the leader's work).
        `claim`: asked before every send whether this replica may still post it."""
        self.deliverer = Deliverer(self.store, poster, now, max_backoff_s=self.settings.alert_retry_max_s,
                                   retention=timedelta(days=self.settings.retention_days), claim=claim)
        self.watcher = Watcher(self.settings, self.services.collect, self.store, now,
                               notify=self.deliverer.wake.set, fix_button=fix_button, metrics=metrics)
        self.watching = [asyncio.create_task(self.watcher.run(), name="watcher"),
                         asyncio.create_task(self.deliverer.run(), name="deliverer")]
        return self.watcher

    async def unwatch(self, *, drain: bool, drain_timeout_s: float) -> None:
        """Stop the watcher, then the deliverer. drain (a planned handover): the deliverer first
        finishes what is due, so the next leader repeats nothing; otherwise (deposed) at once."""
        if not self.watching:
            return
        watcher, delivering = self.watching
        self.watching = []
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        if drain and self.deliverer is not None:
            self.deliverer.finish()
            await asyncio.wait({delivering}, timeout=drain_timeout_s)
        delivering.cancel()
        await asyncio.gather(delivering, return_exceptions=True)
        self.watcher = self.deliverer = None

    async def approvals(self, poster: Poster, *, default_channel: str = "console",
                        members_of: Callable[[str], Awaitable[set[str]]] | None = None,
                        metrics: Metrics | None = None, resume: bool = True) -> Remediation:
        """Enable approval-gated remediation; resume what a restart interrupted (resume=False:
        the leader does that when it takes over, see bot/leader.py)."""
        rem = Remediation(self.settings, self.store, self._fresh_collect, self.collector, poster,
                          now, default_channel=default_channel, metrics=metrics)
        if members_of is not None:
            rem.members_of = members_of
        self.services.remediation = rem
        if resume:
            await rem.resume()
        self.tasks.append(asyncio.create_task(rem.run_sweeper(), name="approval-sweeper"))
        return rem

    async def _fresh_collect(self, cluster: ClusterConfig) -> ClusterReport:
        """What a remediation decides on: every command asked again, nothing reused."""
        return await self.services.collect(cluster, ask=Ask.ALL)

    async def stop_tasks(self) -> None:
        if self.services.remediation is not None:
            await self.services.remediation.wait_idle()
        for task in (*self.tasks, *self.watching):
            task.cancel()
        await asyncio.gather(*self.tasks, *self.watching, return_exceptions=True)
        self.tasks.clear()
        self.watching.clear()


def decision_commands(rem: Remediation, con: Console) -> dict[str, Extra]:
    """/approve ID, /deny ID, /cancel ID: the console's buttons, as the current /as user."""
    def make(verb: str) -> Extra:
        async def decide(args: tuple[str, ...]) -> str:
            if len(args) != 1:
                return f"usage: /{verb} REQUEST_ID"
            said = await rem.decide(args[0], con.user, verb)
            await asyncio.sleep(0)  # let the approved request's runner start before the prompt
            return f"refused: {said}" if said else f"{verb}: recorded"
        return decide
    return {f"/{verb}": make(verb) for verb in ("approve", "deny", "cancel")}


class running:
    """`async with running(settings) as rt:` builds a Runtime and closes it afterwards."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stack = AsyncExitStack()

    async def __aenter__(self) -> Runtime:
        return await Runtime.start(self.settings, self.stack)

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stack.aclose()


async def console(settings: Settings, stream: TextIO = sys.stdin,
                  extras: dict[str, Extra] | None = None, intro: tuple[str, ...] = (),
                  watch: bool = True) -> None:
    async with running(settings) as rt:
        con = Console(rt.services, extras=extras or {}, prompt=stream.isatty())
        poster = TextPoster(con.out)
        if watch:
            rt.watch(poster)
        rem = await rt.approvals(poster)
        con.extras.update(decision_commands(rem, con))
        con.say(BANNER)
        for line in intro if stream.isatty() else ():  # piped input brings its own commands
            con.say(f"> {line}")
            await con.handle(line)
        await con.run(stream)
