"""Slack request signing and the request bodies Slack sends to an app.

``sign`` reproduces Slack's v0 request signature so HTTP-mode tests can send requests that
Bolt's verification accepts. The ``*_payload`` builders return the dicts Slack sends (also
usable as Socket Mode envelope payloads); the ``*_body`` helpers encode them exactly as Slack
does over HTTP: slash commands form-encoded, interactions as a form field ``payload`` holding
JSON, Events API as a JSON document.

Field names follow Slack's documented payloads and what slack_bolt reads from them
(``slack_bolt/request/internals.py``). Identity defaults match the fake workspace in
``tests.fakes.slack`` so auth.test and the payloads agree.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from typing import Any
from urllib.parse import urlencode

from tests.fakes.slack import APP_ID, BOT_ID, BOT_USER_ID, TEAM_DOMAIN, TEAM_ID

JsonDict = dict[str, Any]

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
JSON_CONTENT_TYPE = "application/json"
DEFAULT_USER_ID = "U0USER"
DEFAULT_USER_NAME = "operator"
DEFAULT_CHANNEL_ID = "C0CHAN"
DEFAULT_CHANNEL_NAME = "ops"
# Deprecated verification token; Slack still sends it, Bolt ignores it.
VERIFICATION_TOKEN = "fake-verification-token"

_ids = itertools.count(1)


def sign(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Headers Slack adds to every request: timestamp and ``v0=`` HMAC-SHA256 signature.

    The timestamp defaults to now because verifiers reject requests older than 5 minutes.
    """
    ts = int(time.time()) if timestamp is None else timestamp
    base = b"v0:" + str(ts).encode() + b":" + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": f"v0={digest}"}


def signed_headers(secret: str, body: bytes, content_type: str) -> dict[str, str]:
    """Signature headers plus the Content-Type Slack sends with that body."""
    return {"Content-Type": content_type, **sign(secret, body)}


def _trigger_id() -> str:
    return f"{next(_ids)}.{TEAM_ID}.{int(time.time() * 1000):x}"


# --------------------------------------------------------------------------- slash commands


def slash_command_payload(
    *,
    command: str = "/cluster",
    text: str = "",
    user_id: str = DEFAULT_USER_ID,
    user_name: str = DEFAULT_USER_NAME,
    channel_id: str = DEFAULT_CHANNEL_ID,
    channel_name: str = DEFAULT_CHANNEL_NAME,
    response_url: str,
    trigger_id: str | None = None,
) -> dict[str, str]:
    """The fields of a slash command invocation (all strings, as in the form body).

    ``response_url`` is required so tests never point the bot at the real hooks.slack.com;
    allocate one with ``FakeSlack.response_url(channel=...)``.
    """
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": TEAM_ID,
        "team_domain": TEAM_DOMAIN,
        "channel_id": channel_id,
        "channel_name": channel_name,
        "user_id": user_id,
        "user_name": user_name,
        "command": command,
        "text": text,
        "api_app_id": APP_ID,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id or _trigger_id(),
    }


def slash_command_body(**fields: Any) -> bytes:
    """Form-encoded slash command body; takes the keyword arguments of slash_command_payload."""
    return urlencode(slash_command_payload(**fields)).encode()


# --------------------------------------------------------------------------- interactivity


def block_actions_payload(
    *,
    action_id: str,
    value: str | None = None,
    block_id: str = "actions",
    user_id: str = DEFAULT_USER_ID,
    user_name: str = DEFAULT_USER_NAME,
    channel_id: str = DEFAULT_CHANNEL_ID,
    channel_name: str = DEFAULT_CHANNEL_NAME,
    message_ts: str,
    response_url: str,
    message: JsonDict | None = None,
    button_text: str = "Button",
    trigger_id: str | None = None,
) -> JsonDict:
    """A ``block_actions`` payload for a button click on a message.

    Pass ``message=fake.messages[(channel, ts)].to_api()`` to embed the real clicked message;
    otherwise a minimal bot message with ``message_ts`` is embedded.
    """
    action: JsonDict = {
        "type": "button",
        "action_id": action_id,
        "block_id": block_id,
        "text": {"type": "plain_text", "text": button_text, "emoji": True},
        "action_ts": f"{time.time():.6f}",
    }
    if value is not None:
        action["value"] = value
    return {
        "type": "block_actions",
        "user": {"id": user_id, "username": user_name, "name": user_name, "team_id": TEAM_ID},
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel_id,
            "is_ephemeral": False,
        },
        "trigger_id": trigger_id or _trigger_id(),
        "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel_id, "name": channel_name},
        "message": message or _bot_message(message_ts),
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [action],
    }


def _bot_message(ts: str) -> JsonDict:
    return {
        "type": "message",
        "user": BOT_USER_ID,
        "bot_id": BOT_ID,
        "app_id": APP_ID,
        "team": TEAM_ID,
        "text": "",
        "ts": ts,
    }


def interactivity_body(payload: JsonDict) -> bytes:
    """Interactions arrive form-encoded with the JSON in a single ``payload`` field."""
    return urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode()


def block_actions_body(**fields: Any) -> bytes:
    """Form-encoded block_actions body; takes the keyword arguments of block_actions_payload."""
    return interactivity_body(block_actions_payload(**fields))


# --------------------------------------------------------------------------- Events API


def event_callback(event: JsonDict, *, event_time: int | None = None) -> JsonDict:
    """Wrap an event in the ``event_callback`` envelope of the Events API."""
    number = next(_ids)
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": TEAM_ID,
        "context_team_id": TEAM_ID,
        "context_enterprise_id": None,
        "api_app_id": APP_ID,
        "event": event,
        "type": "event_callback",
        "event_id": f"Ev{number:08d}FAKE",
        "event_time": int(time.time()) if event_time is None else event_time,
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": TEAM_ID,
                "user_id": BOT_USER_ID,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": f"4-fake-{number}",
    }


def app_mention_event(
    *,
    text: str,
    ts: str,
    user_id: str = DEFAULT_USER_ID,
    channel_id: str = DEFAULT_CHANNEL_ID,
    thread_ts: str | None = None,
) -> JsonDict:
    """An ``app_mention`` event callback; ``<@BOT>`` is prefixed unless ``text`` has it."""
    mention = f"<@{BOT_USER_ID}>"
    event: JsonDict = {
        "type": "app_mention",
        "user": user_id,
        "text": text if mention in text else f"{mention} {text}",
        "ts": ts,
        "team": TEAM_ID,
        "channel": channel_id,
        "event_ts": ts,
    }
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
    return event_callback(event)


def thread_message_event(
    *,
    text: str,
    ts: str,
    thread_ts: str,
    user_id: str = DEFAULT_USER_ID,
    channel_id: str = DEFAULT_CHANNEL_ID,
    parent_user_id: str = BOT_USER_ID,
) -> JsonDict:
    """A plain ``message`` event posted as a reply in a thread (``thread_ts`` set)."""
    event: JsonDict = {
        "type": "message",
        "user": user_id,
        "text": text,
        "ts": ts,
        "thread_ts": thread_ts,
        "parent_user_id": parent_user_id,
        "team": TEAM_ID,
        "channel": channel_id,
        "event_ts": ts,
        "channel_type": "channel",
    }
    return event_callback(event)


def events_body(payload: JsonDict) -> bytes:
    """Events API requests are a JSON document."""
    return json.dumps(payload, separators=(",", ":")).encode()
