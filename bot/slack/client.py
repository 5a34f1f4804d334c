"""The Slack Web API client: configurable base URL, slack_sdk's own retry handlers."""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.errors import ConfigError, SlackError
from bot.metrics import Metrics
from bot.settings import Settings

log = logging.getLogger(__name__)
RATE_LIMIT_RETRIES = 5  # Slack's Retry-After is honoured each time
SERVER_ERROR_RETRIES = 3
CONNECTION_RETRIES = 3
RETRY_AFTER_MAX_S = 60  # Slack's own per-minute tiers; a longer wait is failed at once instead
BODY_SHOWN = 120  # characters of a non-Slack reply worth one log line
# slack_sdk (and its Socket Mode client) write every request and reply body, message text and user
# payloads included, whenever their logger's *own* level is NOTSET or DEBUG: hand them one that is
# not, so --log-level debug shows our one line per call instead of Slack's bodies.
SDK_LOG = logging.getLogger("bot.slack.sdk")
SDK_LOG.setLevel(logging.INFO)


def _one_line(record: logging.LogRecord) -> bool:
    """slack_sdk's Socket Mode loop logs each failed reconnect (every 10 s, say after the app token
    was revoked) with a full traceback and Slack's reply on further lines: keep the first line and
    the exception's name."""
    line = record.getMessage().split("\n", 1)[0]
    if record.exc_info:
        line = f"{line} ({type(record.exc_info[1]).__name__})"
        record.exc_info, record.exc_text = None, None
    record.msg, record.args = line, None
    return True


SDK_LOG.addFilter(_one_line)


def retry_handlers() -> list[AsyncRetryHandler]:
    return [CountedRetries([
        AsyncRateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES),
        AsyncServerErrorRetryHandler(max_retry_count=SERVER_ERROR_RETRIES),
        AsyncConnectionErrorRetryHandler(max_retry_count=CONNECTION_RETRIES),
    ])]


@dataclass
class _Call:
    """What one api_call saw of its HTTP attempts (a context variable: concurrent calls never mix)."""

    client: CountingWebClient
    method: str
    last: HttpResponse | None = None


_CALL: ContextVar[_Call | None] = ContextVar("slack_call", default=None)


class CountedRetries(AsyncRetryHandler):
    """slack_sdk's own retry handlers behind one, which sees every HTTP attempt of every call.

    slack_sdk asks its retry handlers after each attempt, successful or not: the only public place
    where a retried attempt (a 429, a 503, a reset connection) can be logged and counted as the
    request Slack saw, and where a reply that is not Slack's JSON is still at hand.
    """

    def __init__(self, handlers: list[AsyncRetryHandler]) -> None:
        super().__init__(max_retry_count=max(h.max_retry_count for h in handlers))
        self.handlers = handlers

    async def can_retry_async(self, *, state: RetryState, request: HttpRequest,
                              response: HttpResponse | None = None, error: Exception | None = None) -> bool:
        call = _CALL.get()
        if call is not None:
            call.last = response
        if response is not None and response.status_code == 429 and not _worth_waiting(response):
            return False  # fail now: the caller's own fallback (a new post, the outbox) is sooner
        for handler in self.handlers:
            if await handler.can_retry_async(state=state, request=request, response=response, error=error):
                state.custom_values = {**(state.custom_values or {}), _CHOSEN: handler}
                if call is not None:
                    call.client.retried(call.method, _attempt_result(response, error))
                return True
        return False

    async def prepare_for_next_attempt_async(self, *, state: RetryState, request: HttpRequest,
                                             response: HttpResponse | None = None,
                                             error: Exception | None = None) -> None:
        chosen = (state.custom_values or {}).get(_CHOSEN, self.handlers[0])
        await chosen.prepare_for_next_attempt_async(state=state, request=request, response=response,
                                                    error=error)


_CHOSEN = "clusterbot.retry_handler"


def _worth_waiting(response: HttpResponse) -> bool:
    """A Retry-After slack_sdk can read (it int()s it: an HTTP date raised ValueError out of every
    caller) and short enough to wait for (it sleeps whatever it is told: 86400 held an answer a day)."""
    given = next((v for k, v in response.headers.items() if k.lower() == "retry-after"), [])
    value = given[0] if given else ""
    return value.isascii() and value.isdigit() and int(value) <= RETRY_AFTER_MAX_S


def _attempt_result(response: HttpResponse | None, error: Exception | None) -> str:
    if response is None:
        return "transport_error" if error is None else type(error).__name__
    body = response.body if isinstance(response.body, dict) else {}
    return str(body.get("error") or f"http_{response.status_code}")


class CountingWebClient(AsyncWebClient):
    """Counts every Web API request by method and outcome, for /metrics, and logs one line for each:
    the final outcome of a call, and every attempt slack_sdk's retry handlers repeated.

    Also the one place that turns a reply which is not Slack's JSON (a proxy's text/plain 502,
    an HTML outage page) into a SlackError: slack_sdk hands such bodies on as str or {} data,
    and callers reading `err.response.get("error")` would fail with AttributeError instead.
    """

    metrics: Metrics | None = None

    async def api_call(self, api_method: str, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        call = _Call(self, api_method)
        token = _CALL.set(call)
        try:
            resp = await super().api_call(api_method, *args, **kwargs)
        except SlackApiError as err:
            code = error_code(err)
            if not code:  # not Slack's JSON, or JSON naming no error: not a Slack API reply
                self.record(api_method, "bad_reply", started)
                raise _not_slack(api_method, call.last, err) from err
            self.record(api_method, code, started)
            raise
        except AttributeError as err:  # slack_sdk's validate() on a 200 whose body is text, not JSON
            self.record(api_method, "bad_reply", started)
            raise _not_slack(api_method, call.last, err) from err
        except Exception:
            self.record(api_method, "transport_error", started)
            raise
        finally:
            _CALL.reset(token)
        self.record(api_method, "ok", started)
        return resp

    def record(self, method: str, result: str, started: float) -> None:
        """One finished Slack call (a Web API method, or "response_url"): its log line and count."""
        log.info("slack %s: %s in %.3fs", method, result, time.perf_counter() - started)
        self._metric(method, result)

    def retried(self, method: str, result: str) -> None:
        log.info("slack %s: %s, retrying", method, result)
        self._metric(method, result)

    def _metric(self, method: str, result: str) -> None:
        if self.metrics is not None:
            self.metrics.slack_call(method, result)


def _not_slack(method: str, last: HttpResponse | None, err: Exception) -> SlackError:
    """bad_reply from the last attempt slack_sdk made: its status, content type and body."""
    if last is None:
        return bad_reply(method, _status(getattr(err, "response", None)), _quoted_body(err))
    ctype = last.headers.get("Content-Type", ["untyped"])[0]
    body = last.data if last.data else last.body
    return bad_reply(method, last.status_code, body or f"({ctype} body)")


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


def _quoted_body(err: Exception) -> str:
    """The body slack_sdk quoted in its message ("... in a non-JSON format: <body>"), else that line."""
    first = str(err).split("\n", 1)[0]
    return first.split("non-JSON format: ", 1)[-1]


def _status(resp: object) -> object:
    return getattr(resp, "status_code", None) or getattr(resp, "status", None)


NO_BOT_TOKEN = "SLACK_BOT_TOKEN is not set (the xoxb- token from OAuth & Permissions)"
NO_SIGNING_SECRET = "SLACK_SIGNING_SECRET is required in HTTP mode (Basic Information page)"


def require_credentials(settings: Settings) -> None:
    """What `run` needs of Slack, checked before anything is opened or created (the state
    directory, the database): a missing secret is one line and leaves no trace."""
    if settings.slack_bot_token is None:
        raise ConfigError(NO_BOT_TOKEN)
    if settings.slack_app_token is None and settings.slack_signing_secret is None:
        raise ConfigError(NO_SIGNING_SECRET)


def web_client(settings: Settings, session: aiohttp.ClientSession | None = None,
               metrics: Metrics | None = None) -> AsyncWebClient:
    """One client for the bot's life; pass the session it should reuse (and close it yourself)."""
    if settings.slack_bot_token is None:
        raise ConfigError(NO_BOT_TOKEN)
    base = settings.slack_api_url if settings.slack_api_url.endswith("/") else settings.slack_api_url + "/"
    client = CountingWebClient(token=settings.slack_bot_token.get_secret_value(), base_url=base,
                               retry_handlers=retry_handlers(), timeout=15, session=session,
                               logger=SDK_LOG)
    client.metrics = metrics
    return client
