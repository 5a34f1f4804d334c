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

from bot.errors import ConfigError
from bot.metrics import Metrics
from bot.settings import Settings

log = logging.getLogger(__name__)
RATE_LIMIT_RETRIES = 5  # Slack's Retry-After is honoured each time
SERVER_ERROR_RETRIES = 3
CONNECTION_RETRIES = 3


def retry_handlers() -> list[AsyncRetryHandler]:
    return [
        AsyncRateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES),
        AsyncServerErrorRetryHandler(max_retry_count=SERVER_ERROR_RETRIES),
        AsyncConnectionErrorRetryHandler(max_retry_count=CONNECTION_RETRIES),
    ]


class CountingWebClient(AsyncWebClient):
    """Counts every Web API call by method and outcome, for /metrics, and logs one line per call."""

    metrics: Metrics | None = None

    async def api_call(self, api_method: str, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            resp = await super().api_call(api_method, *args, **kwargs)
        except SlackApiError as err:
            self._count(api_method, str(err.response.get("error") or "error"), started)
            raise
        except Exception:
            self._count(api_method, "transport_error", started)
            raise
        self._count(api_method, "ok", started)
        return resp

    def _count(self, method: str, result: str, started: float) -> None:
        log.info("slack %s: %s in %.3fs", method, result, time.perf_counter() - started)
        if self.metrics is not None:
            self.metrics.slack_call(method, result)


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
