"""Run the bolt app: Socket Mode (no inbound port) or HTTP at /slack/events.

Either way the bot learns who it is (auth.test) before the first request can arrive, so that no
request waits on the Web API inside Slack's 3-second ack window.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiohttp import web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.app import BotApp, BotIdentity

log = logging.getLogger(__name__)
EVENTS_PATH = "/slack/events"


@dataclass
class HttpServer:
    runner: web.AppRunner
    port: int
    identity: BotIdentity | None = None  # its background auth.test retry stops with the server

    async def close(self) -> None:
        await self.runner.cleanup()
        if self.identity is not None:
            await self.identity.close()


class SocketHandler(AsyncSocketModeHandler):
    """bolt's Socket Mode handler; closing it also stops the background auth.test retry."""

    identity: BotIdentity

    async def close_async(self) -> None:
        await self.identity.close()
        await super().close_async()  # type: ignore[no-untyped-call]  # bolt leaves it unannotated


async def serve_http(app: BotApp, host: str, port: int,
                     extra_routes: list[web.RouteDef] | None = None) -> HttpServer:
    """Serve signed Slack requests at /slack/events (and any extra routes) on host:port."""
    await app.identity.start()
    web_app = app.web_app(path=EVENTS_PATH)
    if extra_routes:
        web_app.add_routes(extra_routes)
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await HttpServer(runner, port, app.identity).close()
        raise
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    log.info("HTTP mode: listening on %s:%d%s", host, bound, EVENTS_PATH)
    return HttpServer(runner, bound, app.identity)


async def serve_socket(app: BotApp, app_token: str, client: AsyncWebClient) -> AsyncSocketModeHandler:
    """Connect over Socket Mode; apps.connections.open goes to the configured Web API URL."""
    await app.identity.start()
    handler = SocketHandler(app, app_token, web_client=client)
    handler.identity = app.identity
    try:
        await handler.connect_async()  # type: ignore[no-untyped-call]  # bolt leaves it unannotated
    except BaseException:
        await app.identity.close()
        raise
    log.info("Socket Mode: connected")
    return handler
