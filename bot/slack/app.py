"""The slack-bolt AsyncApp: payloads become Invocations at the edge, then the shared dispatch.

Every slash command is acked at once; usage errors and refusals ride on the ack (ephemeral),
the answer follows as a channel message updated in place.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import ClusterbotError, ConfigError, NotAllowed
from bot.render.doc import Doc
from bot.settings import Settings
from bot.slack.replies import SlackOut, text_doc
from commands import authorize, dispatch, parse_text, resolve
from commands.help import detail
from commands.spec import Invocation, Services, Source, UsageError

log = logging.getLogger(__name__)
COMMAND = "/cluster"


def build_app(settings: Settings, services: Services, client: AsyncWebClient, *,
              socket_mode: bool) -> AsyncApp:
    """Register listeners; no logic lives here beyond translating payloads."""
    secret = settings.slack_signing_secret
    if not socket_mode and secret is None:
        raise ConfigError("SLACK_SIGNING_SECRET is required in HTTP mode (Basic Information page)")
    app = AsyncApp(
        client=client,
        signing_secret=secret.get_secret_value() if secret else None,
        # Socket Mode frames come over our own authenticated WebSocket; HTTP must be signed.
        request_verification_enabled=not socket_mode,
        process_before_response=False,
    )
    _register(app, services)
    return app


def _register(app: AsyncApp, services: Services) -> None:
    @app.command(COMMAND)
    async def on_command(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        inv = slash_invocation(body)
        refusal = precheck(inv, services)
        if refusal is not None:
            await ack(response_type="ephemeral", text=refusal)
            return
        await ack()
        out = SlackOut(client, inv.channel or "", inv.user, response_url=body.get("response_url"))
        await execute(inv, services, out)

    @app.event("app_mention")
    async def on_mention(event: dict[str, Any], client: AsyncWebClient) -> None:
        inv = mention_invocation(event)
        out = SlackOut(client, inv.channel or "", inv.user, thread_ts=inv.thread_ts)
        refusal = precheck(inv, services)
        if refusal is not None:
            await out.ephemeral(text_doc(refusal))
            return
        await execute(inv, services, out)

    @app.error
    async def on_error(error: Exception, body: dict[str, Any]) -> None:
        log.error("unhandled error in a Slack listener: %s", error, exc_info=error)


def slash_invocation(body: dict[str, Any]) -> Invocation:
    """The slash command payload -> Invocation. Words are split on whitespace, never on shell rules."""
    name, args = _words(str(body.get("text", "")))
    return Invocation(name, args, user=str(body.get("user_id", "")),
                      channel=str(body.get("channel_id", "")) or None, source=Source.SLASH)


def mention_invocation(event: dict[str, Any]) -> Invocation:
    name, args = _words(str(event.get("text", "")))
    ts = event.get("thread_ts") or event.get("ts")
    return Invocation(name, args, user=str(event.get("user", "")),
                      channel=str(event.get("channel", "")) or None,
                      thread_ts=str(ts) if ts else None, source=Source.MENTION)


def _words(text: str) -> tuple[str, tuple[str, ...]]:
    try:
        return parse_text(text)
    except UsageError:
        return "__too_long__", ()


def precheck(inv: Invocation, services: Services) -> str | None:
    """Access and usage checks that must answer within the ack: a refusal text, or None."""
    try:
        authorize(inv, services)
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
            ts = await out.post(text_doc(spec.progress(inv, services)))
        reply = await dispatch(inv, services)
    except (UsageError, NotAllowed) as err:
        text = usage_text(err) if isinstance(err, UsageError) else f":no_entry: {err}"
        await _finish(out, ts, text_doc(f":warning: `{spec.name}` was not run"), text_doc(text))
        return
    except ClusterbotError as err:
        await out.update(ts, text_doc(f":x: {spec.name} failed: {err}"))
        return
    except Exception:
        log.exception("command %s failed", inv.command)
        await out.update(ts, text_doc(f":x: {spec.name} failed with an internal error; see the bot's log"))
        return
    if reply.ephemeral:
        await _finish(out, ts, None, reply.doc)
    else:
        await out.update(ts, reply.doc)


async def _finish(out: SlackOut, ts: str | None, public: Doc | None, private: Doc) -> None:
    if ts is not None and public is not None:
        await out.update(ts, public)
    await out.ephemeral(private)
