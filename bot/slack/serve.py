"""Run the bolt app: Socket Mode (no inbound port) or HTTP at /slack/events.

Either way the bot learns who it is (auth.test) before the first request can arrive, so that no
request waits on the Web API inside Slack's 3-second ack window.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web, web_response
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import ConfigError
from bot.signing import SLACK, verify
from bot.slack.app import BotApp, BotIdentity, refused
from bot.slack.client import SDK_LOG
from bot.slack.replies import SLACK_TROUBLE, why

log = logging.getLogger(__name__)
EVENTS_PATH = "/slack/events"
# Slack's largest payloads (a click on a 50-block message, with its state) stay well under this.
MAX_SLACK_BYTES = 1024 * 1024
REFUSALS_LOGGED_PER_MINUTE = 20


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


SERVER_HEADER = "clusterbot"


def new_web_app(max_bytes: int) -> web.Application:
    """An aiohttp application that does not name its software: aiohttp's default header
    (`Server: Python/3.11 aiohttp/3.x`) would tell anyone scanning the public port which
    versions, and so which known bugs, to try. Set where aiohttp takes its default from, since
    its answers to requests it cannot even parse (a scanner's garbage) pass no application hook;
    the client's User-Agent is a separate name in aiohttp and stays as it is."""
    setattr(web_response, "SERVER_SOFTWARE", SERVER_HEADER)  # noqa: B010 - not in its __all__
    return web.Application(client_max_size=max_bytes)


async def serve_http(app: BotApp, host: str, port: int,
                     extra_routes: list[web.RouteDef] | None = None) -> HttpServer:
    """Serve signed Slack requests at /slack/events (and any extra routes) on host:port."""
    await app.identity.start()
    web_app = new_web_app(MAX_SLACK_BYTES)
    web_app.add_routes([events_route(app), *(extra_routes or [])])
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


def events_route(app: BotApp, clock: Callable[[], float] = time.time) -> web.RouteDef:
    """POST /slack/events: the signature is checked over the raw bytes before anything else.

    Bolt's own check runs on the body already decoded as UTF-8 and parses the headers unguarded, so
    an empty or non-numeric timestamp or a body that is not UTF-8 became a 500 with a traceback, and
    a refused body was logged whole. Here every such request gets 401 and one line naming why; only
    a request Slack signed reaches bolt (whose check is then off: it would only repeat this one).
    """
    secret = app.signing_key
    if not secret:
        raise ValueError("HTTP mode needs the signing secret")
    refusals = RefusalLog("Slack request")

    def refuse(request: web.Request, status: int, reason: str) -> web.Response:
        refusals.refused(request.remote, f"HTTP {status}, {reason}")
        return web.json_response({"error": "invalid request"}, status=status)  # never says why

    async def handler(request: web.Request) -> web.Response:
        body = await bounded_body(request, MAX_SLACK_BYTES)
        if body is None:
            return refuse(request, 413, f"body over {MAX_SLACK_BYTES} bytes")
        refusal = verify(SLACK, secret, request.headers, body, clock())
        if refusal is not None:
            return refuse(request, 401, refusal)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:  # signed by Slack yet not UTF-8: never seen, still not a 500
            return refuse(request, 400, "signed body is not UTF-8")
        bolt_req = AsyncBoltRequest(body=text, query=request.query_string,
                                    headers=dict(request.headers))
        try:
            answer = await app.async_dispatch(bolt_req)
        except Exception as err:  # bolt's error path itself chokes on some shapes (an empty "actions")
            return refuse(request, 400, f"signed payload bolt cannot read ({type(err).__name__})")
        return await to_aiohttp_response(answer)

    return web.post(EVENTS_PATH, handler)


class RefusalLog:
    """One line per refused request, at most `per_minute` of them a minute: the port faces the
    internet, and a flood of forged requests must not become a flood of log lines. The first line
    after a quiet spell says how many refusals went unlogged."""

    def __init__(self, what: str, per_minute: int = REFUSALS_LOGGED_PER_MINUTE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.what, self.per_minute, self.clock = what, per_minute, clock
        self.window_start, self.logged, self.unlogged = clock(), 0, 0

    def refused(self, remote: str | None, reason: str) -> None:
        now = self.clock()
        if now - self.window_start >= 60:
            self.window_start, self.logged = now, 0
        if self.logged >= self.per_minute:
            self.unlogged += 1
            return
        self.logged += 1
        extra = f" ({self.unlogged} more refused before this, not logged)" if self.unlogged else ""
        self.unlogged = 0
        log.warning("%s from %s refused: %s%s", self.what, remote, reason, extra)


async def bounded_body(request: web.Request, limit: int) -> bytes | None:
    """The body, or None when it is over limit (announced, or as read when chunked)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    try:
        body = await request.read()  # the app's client_max_size stops a chunked body early
    except web.HTTPRequestEntityTooLarge:
        return None
    return body if len(body) <= limit else None


async def serve_socket(app: BotApp, app_token: str, client: AsyncWebClient) -> AsyncSocketModeHandler:
    """Connect over Socket Mode; apps.connections.open goes to the configured Web API URL."""
    await app.identity.start()
    try:
        url = await _first_url(client, app_token)
    except BaseException:
        await app.identity.close()
        raise
    handler = SocketHandler(app, app_token, web_client=client, logger=SDK_LOG)
    handler.identity = app.identity
    handler.client.wss_uri = url
    try:
        await handler.connect_async()  # type: ignore[no-untyped-call]  # bolt leaves it unannotated
    except BaseException:
        await handler.close_async()  # its own WebSocket session too, not only the auth.test retry
        raise
    log.info("Socket Mode: connected")
    return handler


async def _first_url(client: AsyncWebClient, app_token: str) -> str | None:
    """The first WebSocket URL, asked before slack_sdk's connect loop: that loop retries a refused
    app token every 10 s forever, a traceback each time. A token Slack refuses stops startup with
    one line, like a refused bot token; Slack's own trouble is left to that loop (None)."""
    try:
        resp = await client.apps_connections_open(app_token=app_token)
    except SLACK_TROUBLE as err:
        if refused(err):
            raise ConfigError(f"Slack refused SLACK_APP_TOKEN (apps.connections.open: {why(err)}); "
                              "check the xapp- token under Basic Information, App-Level Tokens "
                              "(scope connections:write)") from err
        log.warning("apps.connections.open failed (%s): retrying", why(err))
        return None
    url = resp.get("url")
    return url if isinstance(url, str) else None
