"""The Slack Web API client: configurable base URL, slack_sdk's own retry handlers."""

from __future__ import annotations

import logging
import time
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.errors import ConfigError, SlackError
from bot.metrics import Metrics
from bot.settings import Settings

log = logging.getLogger(__name__)
RATE_LIMIT_RETRIES = 5  # Slack's Retry-After is honoured each time
SERVER_ERROR_RETRIES = 3
CONNECTION_RETRIES = 3
BODY_SHOWN = 120  # characters of a non-Slack reply worth one log line


def retry_handlers() -> list[AsyncRetryHandler]:
    return [
        AsyncRateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES),
        AsyncServerErrorRetryHandler(max_retry_count=SERVER_ERROR_RETRIES),
        AsyncConnectionErrorRetryHandler(max_retry_count=CONNECTION_RETRIES),
    ]


class CountingWebClient(AsyncWebClient):
    """Counts every Web API call by method and outcome, for /metrics, and logs one line per call.

    Also the one place that turns a reply which is not Slack's JSON (a proxy's text/plain 502,
    an HTML outage page) into a SlackError: slack_sdk hands such bodies on as str or {} data,
    and callers reading `err.response.get("error")` would fail with AttributeError instead.
    """

    metrics: Metrics | None = None

    async def api_call(self, api_method: str, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            resp = await super().api_call(api_method, *args, **kwargs)
        except SlackError:
            self._count(api_method, "bad_reply", started)
            raise
        except SlackApiError as err:
            code = error_code(err)
            if code is None:  # invalid JSON: slack_sdk attaches the raw aiohttp response
                self._count(api_method, "bad_reply", started)
                raise bad_reply(api_method, _status(err.response), _quoted_body(err)) from err
            self._count(api_method, code or "error", started)
            raise
        except Exception:
            self._count(api_method, "transport_error", started)
            raise
        self._count(api_method, "ok", started)
        return resp

    async def _request(self, *, http_verb: str, api_url: str, req_args: dict[str, Any]) -> dict[str, Any]:
        # The last hook before slack_sdk builds and validates its response (after its retries).
        res: dict[str, Any] = await super()._request(http_verb=http_verb, api_url=api_url, req_args=req_args)
        data = res.get("data")
        # Slack answers a JSON object with "ok" (admin.analytics.getFile's gzip aside: never called).
        if not isinstance(data, dict) or not data:
            ctype = res.get("headers", {}).get("Content-Type", "untyped")
            raise bad_reply(api_url.rsplit("/", 1)[-1], res.get("status_code"), data or f"({ctype} body)")
        return res

    def _count(self, method: str, result: str, started: float) -> None:
        log.info("slack %s: %s in %.3fs", method, result, time.perf_counter() - started)
        if self.metrics is not None:
            self.metrics.slack_call(method, result)


def error_code(err: SlackApiError) -> str | None:
    """Slack's error code ("" if its JSON named none); None if the reply was not Slack's JSON."""
    resp = err.response
    if isinstance(resp, AsyncSlackResponse) and isinstance(resp.data, dict):
        return str(resp.data.get("error") or "")
    return None


def bad_reply(method: str, status: object, body: object) -> SlackError:
    """One line naming the HTTP status and the start of the body, whatever the body was."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    text = " ".join(body.split()) if isinstance(body, str) else ""  # one line, however it was laid out
    if len(text) > BODY_SHOWN:
        text = text[:BODY_SHOWN] + "…"
    return SlackError(f"Slack {method}: HTTP {status}, not a Slack API reply: {text or '(empty)'}")


def _quoted_body(err: SlackApiError) -> str:
    """The body slack_sdk quoted in its message ("... in a non-JSON format: <body>"), else that line."""
    first = str(err).split("\n", 1)[0]
    return first.split("non-JSON format: ", 1)[-1]


def _status(resp: object) -> object:
    return getattr(resp, "status_code", None) or getattr(resp, "status", None)


def web_client(settings: Settings, session: aiohttp.ClientSession | None = None,
               metrics: Metrics | None = None) -> AsyncWebClient:
    """One client for the bot's life; pass the session it should reuse (and close it yourself)."""
    if settings.slack_bot_token is None:
        raise ConfigError("SLACK_BOT_TOKEN is not set (the xoxb- token from OAuth & Permissions)")
    base = settings.slack_api_url if settings.slack_api_url.endswith("/") else settings.slack_api_url + "/"
    client = CountingWebClient(token=settings.slack_bot_token.get_secret_value(), base_url=base,
                               retry_handlers=retry_handlers(), timeout=15, session=session)
    client.metrics = metrics
    return client
