"""Run the bolt app: Socket Mode (no inbound port) or HTTP at /slack/events."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiohttp import web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)
EVENTS_PATH = "/slack/events"


@dataclass
class HttpServer:
    runner: web.AppRunner
    port: int

    async def close(self) -> None:
        await self.runner.cleanup()


async def serve_http(app: AsyncApp, host: str, port: int,
                     extra_routes: list[web.RouteDef] | None = None) -> HttpServer:
    """Serve signed Slack requests at /slack/events (and any extra routes) on host:port."""
    web_app = app.web_app(path=EVENTS_PATH)
    if extra_routes:
        web_app.add_routes(extra_routes)
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    log.info("HTTP mode: listening on %s:%d%s", host, bound, EVENTS_PATH)
    return HttpServer(runner, bound)


async def serve_socket(app: AsyncApp, app_token: str, client: AsyncWebClient) -> AsyncSocketModeHandler:
    """Connect over Socket Mode; apps.connections.open goes to the configured Web API URL."""
    handler = AsyncSocketModeHandler(app, app_token, web_client=client)
    await handler.connect_async()  # type: ignore[no-untyped-call]  # bolt leaves it unannotated
    log.info("Socket Mode: connected")
    return handler
