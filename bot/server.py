"""The long-running bot: runtime + Slack app (+ watcher), started and stopped as one unit."""

from __future__ import annotations

import asyncio
import logging
import signal
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import aiohttp
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp

from bot.poster import SlackPoster
from bot.runtime import Runtime
from bot.settings import Settings
from bot.slack import decisions
from bot.slack.app import build_app
from bot.slack.client import web_client
from bot.slack.decisions import group_resolver
from bot.slack.serve import HttpServer, serve_http, serve_socket

log = logging.getLogger(__name__)


@dataclass
class Bot:
    settings: Settings
    runtime: Runtime
    app: AsyncApp
    http: HttpServer | None = None
    socket: AsyncSocketModeHandler | None = None
    stack: AsyncExitStack = field(default_factory=AsyncExitStack)

    @property
    def mode(self) -> str:
        return "socket" if self.socket is not None else "http"

    async def stop(self) -> None:
        if self.socket is not None:
            await self.socket.close_async()
        if self.http is not None:
            await self.http.close()
        await self.stack.aclose()


async def start_bot(settings: Settings, *, watch: bool = True) -> Bot:
    """Socket Mode when SLACK_APP_TOKEN is set (no inbound port), else HTTP on http_port."""
    stack = AsyncExitStack()
    runtime = await Runtime.start(settings, stack)
    session = aiohttp.ClientSession()
    stack.push_async_callback(session.close)
    client = web_client(settings, session)
    socket_mode = settings.slack_app_token is not None
    app = build_app(settings, runtime.services, client, socket_mode=socket_mode)
    bot = Bot(settings, runtime, app, stack=stack)
    poster = SlackPoster(client)
    rem = await runtime.approvals(poster, default_channel=settings.alert_channel or "",
                                  members_of=group_resolver(client))
    decisions.register(app, rem, runtime.store)
    if watch:
        runtime.watch(poster, fix_button=True)
    if socket_mode:
        assert settings.slack_app_token is not None
        bot.socket = await serve_socket(app, settings.slack_app_token.get_secret_value(), client)
    else:
        bot.http = await serve_http(app, settings.http_host, settings.http_port)
    return bot


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
