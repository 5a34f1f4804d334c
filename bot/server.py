"""The long-running bot: runtime + Slack app (+ watcher), started and stopped as one unit."""

from __future__ import annotations

import asyncio
import logging
import signal
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot.leader import DRAIN_TIMEOUT_S, Leadership, leader_lock, timing
from bot.metrics import Metrics
from bot.ops_http import Check, ops_routes, serve_ops, sqlite_writable
from bot.poster import SlackPoster
from bot.remediation import Remediation
from bot.runtime import Runtime
from bot.settings import Settings
from bot.slack import decisions
from bot.slack.app import BotApp, build_app
from bot.slack.client import web_client
from bot.slack.decisions import group_resolver
from bot.slack.serve import HttpServer, serve_http, serve_socket
from bot.store import AsyncStore

log = logging.getLogger(__name__)


@dataclass
class Bot:
    settings: Settings
    runtime: Runtime
    app: BotApp
    http: HttpServer | None = None
    socket: AsyncSocketModeHandler | None = None
    ops: HttpServer | None = None
    metrics: Metrics = field(default_factory=Metrics)
    stack: AsyncExitStack = field(default_factory=AsyncExitStack)
    leadership: Leadership | None = None  # None: not watching (watch=False)
    leading: asyncio.Task[None] | None = None

    @property
    def mode(self) -> str:
        return "socket" if self.socket is not None else "http"

    async def stop(self) -> None:
        if self.ops is not None:
            await self.ops.close()
        if self.socket is not None:
            await self.socket.close_async()  # type: ignore[no-untyped-call]  # unannotated in bolt
        if self.http is not None:
            await self.http.close()
        await self._hand_over()
        await self.stack.aclose()

    async def _hand_over(self) -> None:
        """A planned stop, once no new command or click can arrive: a fix in flight finishes (the
        next leader would call it interrupted), queued alerts are delivered, then the lock is let go."""
        if self.leadership is None:
            return
        if self.runtime.services.remediation is not None:
            await self.runtime.services.remediation.wait_idle()
        await self.leadership.resign()
        if self.leading is not None:
            self.leading.cancel()
            await asyncio.gather(self.leading, return_exceptions=True)


async def start_bot(settings: Settings, *, watch: bool = True) -> Bot:
    """Socket Mode when SLACK_APP_TOKEN is set (no inbound port), else HTTP on http_port."""
    stack = AsyncExitStack()
    bot: Bot | None = None
    try:
        runtime = await Runtime.start(settings, stack)
        metrics = Metrics()
        metrics.watch_pool(lambda: runtime.pool.stats)
        session = aiohttp.ClientSession()
        stack.push_async_callback(session.close)
        client = web_client(settings, session, metrics=metrics)
        app = build_app(settings, runtime.services, client,
                        socket_mode=settings.slack_app_token is not None,
                        first_sight=runtime.first_sight)
        bot = Bot(settings, runtime, app, stack=stack, metrics=metrics)
        await _serve(bot, client, watch)
    except BaseException:
        # A refused token, a busy port or a bad setting ends startup: what was built so far is
        # closed, so the one-line error is not followed by "Unclosed client session" and the like.
        await (bot.stop() if bot is not None else stack.aclose())
        raise
    return bot


async def _serve(bot: Bot, client: AsyncWebClient, watch: bool) -> None:
    settings, runtime, app, metrics = bot.settings, bot.runtime, bot.app, bot.metrics
    socket_mode = settings.slack_app_token is not None
    poster = SlackPoster(client)
    rem = await runtime.approvals(poster, default_channel=settings.alert_channel or "",
                                  members_of=group_resolver(client), metrics=metrics, resume=not watch)
    decisions.register(app, rem, runtime.store, first_sight=runtime.first_sight)
    if watch:
        bot.leadership = _leadership(bot, poster, rem)
    deps = _ops_deps(bot)
    if socket_mode:
        assert settings.slack_app_token is not None
        bot.socket = await serve_socket(app, settings.slack_app_token.get_secret_value(), client)
    else:
        # The Slack port faces the internet. /metrics names clusters and nodes: never served there.
        # Health and /push share it only when there is no metrics_port to carry them.
        public = ops_routes(**deps, serve_metrics=False) if settings.metrics_port is None else []
        bot.http = await serve_http(app, settings.http_host, settings.http_port, extra_routes=public)
    if settings.metrics_port is not None:
        bot.ops = await serve_ops(settings.http_host, settings.metrics_port, ops_routes(**deps))
    elif socket_mode and settings.push_secret is not None:
        log.warning("push_secret is set but Socket Mode has no HTTP port: set metrics_port for /push")
    if bot.leadership is not None:  # only once Slack took the token: a broken replica never leads
        await bot.leadership.try_once()  # a lone replica leads before start_bot returns
        bot.leading = asyncio.create_task(bot.leadership.run(), name="leadership")


def _leadership(bot: Bot, poster: SlackPoster, rem: Remediation) -> Leadership:
    """Every replica serves Slack; the one holding the leader lock also watches and delivers."""
    runtime = bot.runtime

    async def gain(epoch: int) -> None:
        runtime.watch(poster, fix_button=True, metrics=bot.metrics, claim=lead.claim)
        if rem.idle:  # at start, and at most failovers: done before the first request is served
            await rem.resume()
        else:
            runtime.tasks.append(asyncio.create_task(_resume(rem), name="approvals-resume"))

    async def lose(drain: bool) -> None:
        await runtime.unwatch(drain=drain, drain_timeout_s=DRAIN_TIMEOUT_S)

    lead = Leadership(leader_lock(bot.settings), runtime.store, gain, lose, timing=timing(bot.settings),
                      metrics=bot.metrics)
    return lead


async def _resume(rem: Remediation) -> None:
    """The new leader takes over what the old one left: fixes it was running are failed (outcome
    unknown), approved ones re-checked. Fixes this replica runs itself finish first."""
    await rem.wait_idle()
    await rem.resume()


def _ops_deps(bot: Bot) -> dict[str, Any]:
    """What /healthz, /readyz, /metrics and /push need from the running bot."""
    settings, runtime = bot.settings, bot.runtime

    async def slack_ok() -> bool:  # HTTP mode has no connection to lose
        return await bot.socket.client.is_connected() if bot.socket is not None else True

    def wake(cluster: str) -> bool:
        if runtime.watcher is not None:
            return runtime.watcher.wake(cluster)
        return settings.cluster(cluster) is not None  # a follower: the leader polls it on its own

    def delivering() -> bool:  # not watching (watch=False): no alerts to deliver, nothing to fail
        return runtime.deliverer is None or not runtime.deliverer.stopped

    secret = settings.push_secret.get_secret_value() if settings.push_secret else None
    return {"metrics": bot.metrics, "slack_connected": slack_ok, "wake": wake, "push_secret": secret,
            "store_writable": _store_ok(runtime.store),
            "delivery_running": delivering,
            "leadership": bot.leadership.status if bot.leadership is not None else None}


def _store_ok(store: AsyncStore) -> Check:
    """Readiness: SQLite's write lock can be taken now; PostgreSQL answers a round trip."""
    if store.backend == "sqlite":
        return sqlite_writable(store.target)

    async def answers() -> bool:
        await store.ping()
        return True
    return answers


async def run_forever(settings: Settings) -> None:
    bot = await start_bot(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("clusterbot running (%s mode), watching %d clusters", bot.mode, len(settings.clusters))
    try:
        await stop.wait()
    finally:
        await bot.stop()
