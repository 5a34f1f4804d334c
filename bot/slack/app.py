"""The slack-bolt AsyncApp: payloads become Invocations at the edge, then the shared dispatch.

Every slash command is acked at once; usage errors and refusals ride on the ack (ephemeral),
the answer follows as a channel message updated in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import traceback
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.async_authorize import AsyncAuthorize
from slack_bolt.error import BoltUnhandledRequestError
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import ClusterbotError, ConfigError, NotAllowed
from bot.render.doc import Doc, mrkdwn
from bot.settings import Settings
from bot.slack.client import NO_SIGNING_SECRET, error_code
from bot.slack.redelivery import FirstSight, redelivered
from bot.slack.replies import SLACK_TROUBLE, SlackOut, text_doc, why
from commands import authorize, dispatch, parse_text, resolve
from commands.help import detail
from commands.spec import Invocation, Services, Source, UsageError

log = logging.getLogger(__name__)
COMMAND = "/cluster"
AUTH_RETRY_FIRST_S = 2.0  # pause before the first background auth.test retry, doubled after each
AUTH_RETRY_MAX_S = 60.0
# Errors Slack gives for its own trouble; any other auth.test error is about the token itself.
_SLACK_SIDE = ("ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout")


class BotIdentity(AsyncAuthorize):
    """Who the bot is, from one auth.test before serving: bolt's authorize hook, answered from memory.

    Bolt's own single-team authorization calls auth.test inside the ack path, on the first request
    and on every one after it until a call succeeds; with the Web API degraded after a restart even
    answers known locally (help, usage errors) missed Slack's 3-second ack deadline.
    """

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client
        self.known: AuthorizeResult | None = None
        self._retry: asyncio.Task[None] | None = None

    async def __call__(self, *, context: AsyncBoltContext, enterprise_id: str | None, team_id: str | None,
                       user_id: str | None, actor_enterprise_id: str | None = None,
                       actor_team_id: str | None = None, actor_user_id: str | None = None
                       ) -> AuthorizeResult:
        if self.known is not None:
            return self.known
        # auth.test has not answered yet (Slack was unreachable at startup): the configured token is
        # all a request needs. Bolt cannot skip the bot's own events meanwhile; our listeners do.
        return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, bot_token=self.client.token)

    async def start(self) -> None:
        """auth.test once. A token Slack refuses fails startup: no retry fixes configuration, and a bot
        running on it would fail every answer. Slack being down or slow does not: the watcher and
        local answers work without it, and a crash loop would only hammer a struggling API."""
        try:
            await self._auth_test()
        except SLACK_TROUBLE as err:
            if refused(err):
                raise ConfigError(f"Slack refused SLACK_BOT_TOKEN (auth.test: {why(err)}); "
                                  "check the xoxb- token on the OAuth & Permissions page") from err
            log.warning("auth.test failed at startup (%s): serving anyway, retrying in the background",
                        why(err))
            self._retry = asyncio.create_task(self._keep_trying(), name="auth.test retry")

    async def close(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry
            self._retry = None

    async def _auth_test(self) -> None:
        resp = await self.client.auth_test()
        self.known = AuthorizeResult.from_auth_test_response(auth_test_response=resp,
                                                             bot_token=self.client.token)
        log.info("Slack: authorized as %s (bot %s) in team %s", self.known.bot_user_id, self.known.bot_id,
                 self.known.team_id)

    async def _keep_trying(self) -> None:
        pause = AUTH_RETRY_FIRST_S
        while self.known is None:
            await asyncio.sleep(pause)
            try:
                await self._auth_test()
            except SLACK_TROUBLE as err:
                pause = min(pause * 2, AUTH_RETRY_MAX_S)
                level = logging.ERROR if refused(err) else logging.WARNING
                log.log(level, "auth.test failed again (%s); next try in %.0fs", why(err), pause)


def refused(err: BaseException) -> bool:
    """Slack answered, and said no to the token (invalid_auth, token_revoked, account_inactive, ...)."""
    code = error_code(err) if isinstance(err, SlackApiError) else None
    return bool(code) and code not in _SLACK_SIDE


class BotApp(AsyncApp):
    """The bolt app and the identity its requests are authorized with (learned before serving)."""

    identity: BotIdentity
    signing_key: bytes | None  # HTTP mode: what bot.slack.serve verifies every request with


def build_app(settings: Settings, services: Services, client: AsyncWebClient, *,
              socket_mode: bool, first_sight: FirstSight | None = None) -> BotApp:
    """Register listeners; no logic lives here beyond translating payloads."""
    secret = settings.slack_signing_secret
    if not socket_mode and secret is None:
        raise ConfigError(NO_SIGNING_SECRET)
    identity = BotIdentity(client)
    with _token_not_ignored():
        app = BotApp(
            client=client,
            # Socket Mode frames come over our own authenticated WebSocket; HTTP requests are
            # verified over their raw bytes by bot.slack.serve before bolt sees them.
            request_verification_enabled=False,
            process_before_response=False,
            # One line from on_error, not bolt's multi-line warning with a code suggestion.
            raise_error_for_unhandled_request=True,
            authorize=identity,
        )
    app.identity = identity

    @app.middleware
    async def one_client(context: AsyncBoltContext, next: Callable[[], Awaitable[None]]) -> None:
        # Bolt hands every listener a fresh plain AsyncWebClient (and builds say() on it): answers,
        # request messages and approvals went around CountingWebClient, unlogged and uncounted.
        context["client"] = client
        await next()

    app.signing_key = secret.get_secret_value().encode() if secret and not socket_mode else None
    _register(app, services, first_sight)
    return app


@contextlib.contextmanager
def _token_not_ignored() -> Iterator[None]:
    """Hush bolt's warning that the client's token "will be ignored" because `authorize` is given:
    BotIdentity hands that very token to every request, so the warning would only mislead."""
    def hush(record: logging.LogRecord) -> bool:
        # bolt's wording differs by version: "will be ignored", "will be unused"
        return not any(said in record.getMessage() for said in ("will be ignored", "will be unused"))
    bolt = logging.getLogger("slack_bolt.AsyncApp")
    bolt.addFilter(hush)
    try:
        yield
    finally:
        bolt.removeFilter(hush)


def _register(app: AsyncApp, services: Services, first_sight: FirstSight | None) -> None:
    @app.command(COMMAND)
    async def on_command(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        inv, problem = slash_invocation(body)
        refusal = precheck(inv, services, problem)
        if refusal is not None:
            await ack(response_type="ephemeral", text=refusal)
            return
        await ack()
        out = SlackOut(client, inv.channel or "", inv.user, response_url=body.get("response_url"))
        await execute(inv, services, out)

    @app.event("app_mention")
    async def on_mention(body: dict[str, Any], event: dict[str, Any], client: AsyncWebClient) -> None:
        if await redelivered(body, first_sight):
            return
        inv, problem = mention_invocation(event)
        out = SlackOut(client, inv.channel or "", inv.user, thread_ts=inv.thread_ts)
        refusal = precheck(inv, services, problem)
        if refusal is not None:
            await out.ephemeral(text_doc(refusal))
            return
        await execute(inv, services, out)

    @app.error
    async def on_error(error: Exception, body: dict[str, Any]) -> BoltResponse | None:
        if isinstance(error, BoltUnhandledRequestError):  # signed, but nothing of ours listens
            log.info("Slack sent a request no listener handles: %s", _kind(body))
            return None
        if not _raised_by_us(error):  # bolt choking on a payload's shape (an empty "actions")
            log.warning("Slack payload bolt cannot read (%s): %s: %s", _kind(body), type(error).__name__,
                        str(error)[:120])
            return BoltResponse(status=400, body="")
        log.error("unhandled error in a Slack listener: %s", error, exc_info=error)
        return None


_OUR_CODE = tuple(str(Path(__file__).resolve().parents[2] / pkg) + os.sep for pkg in ("bot", "commands"))


def _raised_by_us(error: BaseException) -> bool:
    """Did the exception pass through our own code (a bug worth its traceback), or only bolt's?"""
    return any(frame.filename.startswith(_OUR_CODE) for frame in traceback.extract_tb(error.__traceback__))


def _kind(body: object) -> str:
    """What a payload is, in a few bounded words (never its content)."""
    if not isinstance(body, dict):
        return "not a JSON object"
    event = body.get("event")
    parts = [body.get("type"), body.get("command"), event.get("type") if isinstance(event, dict) else None]
    return " ".join(str(p)[:40] for p in parts if p) or "untyped"


def slash_invocation(body: dict[str, Any]) -> tuple[Invocation, UsageError | None]:
    """The slash command payload -> Invocation (and why its text cannot be a command, if so).

    Words are split on whitespace, never on shell rules."""
    name, args, problem = _words(str(body.get("text", "")))
    return Invocation(name, args, user=str(body.get("user_id", "")),
                      channel=str(body.get("channel_id", "")) or None, source=Source.SLASH), problem


def mention_invocation(event: dict[str, Any]) -> tuple[Invocation, UsageError | None]:
    name, args, problem = _words(str(event.get("text", "")))
    ts = event.get("thread_ts") or event.get("ts")
    return Invocation(name, args, user=str(event.get("user", "")),
                      channel=str(event.get("channel", "")) or None,
                      thread_ts=str(ts) if ts else None, source=Source.MENTION), problem


def _words(text: str) -> tuple[str, tuple[str, ...], UsageError | None]:
    """The command word and arguments; text that cannot be a command keeps its reason for precheck,
    which gives it only after the channel check (the allowlist answers first, as for any command)."""
    try:
        return (*parse_text(text), None)
    except UsageError as err:
        return "", (), err


def precheck(inv: Invocation, services: Services, problem: UsageError | None = None) -> str | None:
    """Access and usage checks that must answer within the ack: a refusal text, or None."""
    try:
        authorize(inv, services)
        if problem is not None:
            raise problem
        resolve(inv, services)
    except UsageError as err:
        return usage_text(err)
    except NotAllowed as err:
        return f":no_entry: {err}"
    return None


def usage_text(err: UsageError) -> str:
    if err.spec is None:
        return f":warning: {err.message}"
    return "\n".join([f":warning: {err.message}", f"usage: `{err.spec.usage}`", *detail(err.spec)])


async def execute(inv: Invocation, services: Services, out: SlackOut) -> None:
    """Run a validated invocation: progress message first, the answer updated into it."""
    spec = resolve(inv)
    ts = None
    try:
        if spec.progress is not None:
            ts = await _progress(out, spec.progress(inv, services))
        reply = await dispatch(inv, services)
    except (UsageError, NotAllowed) as err:
        text = usage_text(err) if isinstance(err, UsageError) else f":no_entry: {err}"
        await _finish(out, ts, text_doc(f":warning: `{spec.name}` was not run"), text_doc(text))
        return
    except ClusterbotError as err:
        await out.answer(ts, text_doc(f":x: {spec.name} failed: {mrkdwn(str(err))}"))  # may carry stderr
        return
    except Exception:
        log.exception("command %s failed", inv.command)
        await out.answer(ts, text_doc(f":x: {spec.name} failed with an internal error; see the bot's log"))
        return
    if reply.ephemeral:
        await _finish(out, ts, None, reply.doc)
    else:
        await out.answer(ts, reply.doc)


async def _progress(out: SlackOut, text: str) -> str | None:
    """Post "gathering status…": its ts, or None if that failed (the answer is still posted, later)."""
    try:
        return await out.post(text_doc(text))
    except SLACK_TROUBLE as err:
        log.warning("progress message for %s in %s failed (%s): the answer follows without it",
                    out.user, out.channel, why(err))
        return None


async def _finish(out: SlackOut, ts: str | None, public: Doc | None, private: Doc) -> None:
    if ts is not None and public is not None:
        await out.answer(ts, public)
    await out.ephemeral(private)
