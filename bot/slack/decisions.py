"""Approval listeners: Approve/Deny/Cancel buttons, `approve`/`deny`/`cancel` thread replies, and the
"Request fix" button on alerts. Payloads carry only ids; everything else comes from the store."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import ApprovalError, ClusterbotError, StoreUnavailable
from bot.remediation import Remediation
from bot.render.alerts import FIX_ACTION
from bot.slack.redelivery import FirstSight, redelivered
from bot.slack.replies import SLACK_TROUBLE, why
from bot.store import AsyncStore
from commands import lookup, resolve
from commands.spec import Invocation, Source, UsageError

log = logging.getLogger(__name__)
DECISION = re.compile(r"^clusterbot:(approve|deny|cancel)$")
VERBS = ("approve", "deny", "cancel")
_ROW_ID_MAX = 2**63 - 1  # SQLite's INTEGER
_ROW_ID_DIGITS = len(str(_ROW_ID_MAX))
# A plain reply, or one sent with "Also send to channel" (thread_broadcast): both are a person's word.
_FROM_A_PERSON = (None, "thread_broadcast")


def register(app: AsyncApp, rem: Remediation, store: AsyncStore,
             first_sight: FirstSight | None = None) -> None:
    @app.action(DECISION)
    async def on_button(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        action = first_action(body)
        verb = text(action, "action_id").split(":")[-1]
        user, channel = _who(body)
        said = await rem.decide(text(action, "value")[:64], user, verb)
        if said:
            await _private(client, channel, user, f":no_entry: {said}")

    @app.action(FIX_ACTION)
    async def on_fix(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        user, channel = _who(body)
        said = await request_fix(rem, store, text(first_action(body), "value"), user)
        if said:
            await _private(client, channel, user, said)

    @app.event("message")
    async def on_message(body: dict[str, Any], event: dict[str, Any], client: AsyncWebClient) -> None:
        verb = str(event.get("text", "")).strip().lower().rstrip(".!")
        thread, channel = event.get("thread_ts"), event.get("channel")
        person = not event.get("bot_id") and event.get("subtype") in _FROM_A_PERSON
        if verb not in VERBS or not thread or not channel or not person:
            return  # ordinary conversation, a bot, or an edit/deletion (never a fresh decision)
        if await redelivered(body, first_sight):
            return
        user = str(event.get("user", ""))
        try:
            req = await store.find_request_by_message(str(channel), str(thread))
        except StoreUnavailable as err:  # whether this thread is a request cannot be told: say so
            await _private(client, str(channel), user, f":no_entry: your {verb} was not recorded ({err}); "
                           "try again shortly", thread=str(thread))
            return
        if req is None:
            return
        said = await rem.decide(req.id, user, verb)
        if said:
            await _private(client, str(channel), user, f":no_entry: {said}", thread=str(thread))


async def request_fix(rem: Remediation, store: AsyncStore, value: str, user: str) -> str | None:
    """The alert's button: file the incident's suggested remedy as a request by the clicker."""
    number = row_id(value)
    try:
        incident = await store.get_incident(number) if number is not None else None
    except StoreUnavailable as err:
        return f":no_entry: {err}; nothing was requested: try again shortly"
    remedy = incident.payload.get("remedy") if incident else None
    if incident is None or not isinstance(remedy, str):
        return ":warning: this alert has no fix to request (any more)"
    words = remedy.split()
    spec = lookup(words[0])
    if spec is None or not spec.needs_approval:
        return f":warning: `{remedy}` is not in the remediation catalogue"
    inv = Invocation(words[0], (incident.cluster, *words[1:]), user=user, channel=incident.channel,
                     source=Source.BUTTON)
    try:
        resolve(inv)
        await rem.request(inv, spec)
    except UsageError as err:
        return f":warning: {err.message}"
    except ClusterbotError as err:
        return f":no_entry: {err}"
    return None


def row_id(value: str) -> int | None:
    """A SQLite row id written as ASCII digits, or None: "٣" is a digit to str.isdigit, and twenty
    nines overflow SQLite's INTEGER (OverflowError, no answer to the clicker)."""
    if not value.isascii() or not value.isdigit() or len(value) > _ROW_ID_DIGITS:
        return None
    number = int(value)
    return number if 0 < number <= _ROW_ID_MAX else None


def first_action(body: dict[str, Any]) -> dict[str, Any]:
    """The clicked action of a block_actions payload, {} when the payload has none."""
    actions = body.get("actions")
    first = actions[0] if isinstance(actions, list) and actions else None
    return first if isinstance(first, dict) else {}


def text(obj: object, key: str) -> str:
    """obj[key] when obj is an object and that value a string, else "": payloads are data, not trusted
    to have the shape Slack documents."""
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, str) else ""


def _who(body: dict[str, Any]) -> tuple[str, str]:
    return text(body.get("user"), "id"), text(body.get("channel"), "id")


async def _private(client: AsyncWebClient, channel: str, user: str, said: str,
                   thread: str | None = None) -> None:
    try:
        await client.chat_postEphemeral(channel=channel, user=user, text=said, thread_ts=thread)
    except SLACK_TROUBLE as err:  # a proxy's HTML page or a dropped connection too, not only Slack's no
        log.warning("could not tell %s privately: %s", user, why(err))


def group_resolver(client: AsyncWebClient) -> Callable[[str], Awaitable[set[str]]]:
    """members_of(S...) through usergroups.users.list, asked afresh for every decision.

    No cache: it is consulted only to authorize an approval, and someone just removed from the
    on-call group must not approve for another minute. A group Slack will not list refuses the
    decision with the reason (fails closed), rather than calling the clicker "not an approver"."""

    async def members_of(group: str) -> set[str]:
        try:
            resp = await client.usergroups_users_list(usergroup=group)
        except SLACK_TROUBLE as err:
            log.warning("cannot read user group %s: %s", group, why(err))
            raise ApprovalError(f"could not check the approver group {group} with Slack ({why(err)}); "
                                "nothing was decided, try again") from err
        listed = resp.get("users")
        return {u for u in listed if isinstance(u, str)} if isinstance(listed, list) else set()
    return members_of
