"""Prove that tests.fakes.slack behaves like Slack for the real slack_sdk / slack_bolt clients.

Every test talks to the fake over loopback HTTP or WebSocket with unmodified clients, so a
bot test built on the fake exercises the same code paths as production.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_bolt.context.say.async_say import AsyncSay
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from tests.fakes.signing import (
    FORM_CONTENT_TYPE,
    JSON_CONTENT_TYPE,
    app_mention_event,
    block_actions_body,
    block_actions_payload,
    events_body,
    sign,
    signed_headers,
    slash_command_body,
    slash_command_payload,
    thread_message_event,
)
from tests.fakes.slack import BOT_ID, BOT_USER_ID, TEAM_ID, FakeSlack

pytestmark = pytest.mark.integration

BOT_TOKEN = "xoxb-test"
APP_TOKEN = "xapp-test"
SIGNING_SECRET = "fake-signing-secret"
CHANNEL = "C0CHAN"
Block = dict[str, Any]


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # slack_sdk reads HTTP(S)_PROXY itself and ignores NO_PROXY: loopback must not be proxied.
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(bot_token=BOT_TOKEN, app_token=APP_TOKEN) as fake:
        yield fake


@pytest.fixture
def web(slack: FakeSlack) -> AsyncWebClient:
    # No session passed: the client opens and closes one per request, so nothing leaks.
    return AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url)


def section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def button(action_id: str) -> Block:
    return {"type": "button", "action_id": action_id, "text": {"type": "plain_text", "text": "Go"}}


# --------------------------------------------------------------------------- Web API


async def test_post_update_and_read_back_messages(slack: FakeSlack, web: AsyncWebClient) -> None:
    first = await web.chat_postMessage(channel=CHANNEL, text="starting", blocks=[section("a")])
    second = await web.chat_postMessage(channel=CHANNEL, text="reply", thread_ts=first["ts"])
    await web.chat_update(channel=CHANNEL, ts=first["ts"], text="done", blocks=[section("b")])

    assert first["ts"] == "1700000000.000100"
    assert float(second["ts"]) > float(first["ts"])
    assert first["message"]["bot_id"] == BOT_ID
    final = slack.messages[(CHANNEL, first["ts"])]
    assert (final.text, final.blocks, final.edits) == ("done", [section("b")], 1)
    assert [call.method for call in slack.calls] == [
        "chat.postMessage",
        "chat.postMessage",
        "chat.update",
    ]
    assert slack.calls[0].params["blocks"] == [section("a")]  # JSON body, parsed

    replies = await web.conversations_replies(channel=CHANNEL, ts=first["ts"])
    assert [m["ts"] for m in replies["messages"]] == [first["ts"], second["ts"]]
    assert replies["messages"][0]["reply_count"] == 1
    assert slack.violations == [] and slack.warnings == []


async def test_update_keeps_blocks_when_omitted(slack: FakeSlack, web: AsyncWebClient) -> None:
    posted = await web.chat_postMessage(channel=CHANNEL, text="t", blocks=[section("kept")])
    await web.chat_update(channel=CHANNEL, ts=posted["ts"], text="new text")
    assert slack.messages[(CHANNEL, posted["ts"])].blocks == [section("kept")]


async def test_form_encoded_bodies_are_understood(slack: FakeSlack, web: AsyncWebClient) -> None:
    # Form bodies carry blocks as a JSON string; the fake parses and validates them the same way.
    form = {"channel": CHANNEL, "text": "f", "blocks": json.dumps([section("form")])}
    posted = await web.api_call("chat.postMessage", data=form)
    with pytest.raises(SlackApiError) as refused:
        await web.api_call("chat.postMessage", data={**form, "blocks": "[not json"})

    assert slack.messages[(CHANNEL, posted["ts"])].blocks == [section("form")]
    assert refused.value.response["error"] == "invalid_blocks_format"


async def test_read_methods_have_slack_shapes(slack: FakeSlack, web: AsyncWebClient) -> None:
    slack.usergroup_members["S123"] = ["U1", "U2"]
    posted = await web.chat_postMessage(channel=CHANNEL, text="x")

    auth = await web.auth_test()
    members = await web.usergroups_users_list(usergroup="S123")
    user = await web.users_info(user="U1")
    link = await web.chat_getPermalink(channel=CHANNEL, message_ts=posted["ts"])
    ephemeral = await web.chat_postEphemeral(channel=CHANNEL, user="U1", text="psst")

    assert (auth["user_id"], auth["bot_id"], auth["team_id"]) == (BOT_USER_ID, BOT_ID, TEAM_ID)
    assert members["users"] == ["U1", "U2"]
    assert user["user"]["id"] == "U1"
    assert link["permalink"].endswith(f"/archives/{CHANNEL}/p{posted['ts'].replace('.', '')}")
    assert ephemeral["message_ts"] == slack.ephemerals[0].ts
    with pytest.raises(SlackApiError) as missing:
        await web.usergroups_users_list(usergroup="S404")
    assert missing.value.response["error"] == "no_such_subteam"


async def test_injected_failure_answers_ok_false_once(slack: FakeSlack, web: AsyncWebClient) -> None:
    posted = await web.chat_postMessage(channel=CHANNEL, text="x")
    slack.fail("chat.update", error="message_not_found", times=1)

    with pytest.raises(SlackApiError) as failed:
        await web.chat_update(channel=CHANNEL, ts=posted["ts"], text="y")
    await web.chat_update(channel=CHANNEL, ts=posted["ts"], text="y")

    assert failed.value.response["error"] == "message_not_found"
    assert [call.ok for call in slack.calls] == [True, False, True]


# --------------------------------------------------------------------------- rate limits, outages


async def test_429_is_retried_by_sdk_rate_limit_handler(slack: FakeSlack) -> None:
    # Retry-After 0 keeps the test fast: the SDK sleeps Retry-After + random() (< 1 s).
    slack.rate_limit("chat.postMessage", times=1, retry_after=0)
    handler = AsyncRateLimitErrorRetryHandler(max_retry_count=1)
    client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url, retry_handlers=[handler])

    response = await client.chat_postMessage(channel=CHANNEL, text="hi")

    assert response["ok"] is True
    assert [(call.method, call.status) for call in slack.calls] == [
        ("chat.postMessage", 429),
        ("chat.postMessage", 200),
    ]


async def test_429_without_handler_surfaces_retry_after(slack: FakeSlack, web: AsyncWebClient) -> None:
    slack.rate_limit("chat.update", times=1, retry_after=7)
    with pytest.raises(SlackApiError) as limited:
        await web.chat_update(channel=CHANNEL, ts="1.0", text="x")
    assert limited.value.response.status_code == 429
    assert limited.value.response["error"] == "ratelimited"
    assert limited.value.response.headers["Retry-After"] == "7"


async def test_outage_is_survived_by_server_error_retry(slack: FakeSlack) -> None:
    handler = AsyncServerErrorRetryHandler(
        max_retry_count=5, interval_calculator=FixedValueRetryIntervalCalculator(0.05)
    )
    client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url, retry_handlers=[handler])
    slack.set_down(True)

    async def recover_after_first_503() -> None:
        await slack.wait_for("chat.postMessage", lambda call: call.status == 503)
        slack.set_down(False)

    # The TaskGroup also waits for the recovery task, which is bounded by wait_for's timeout.
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(recover_after_first_503())
        response = await client.chat_postMessage(channel=CHANNEL, text="hi")

    assert response["ok"] is True
    assert slack.calls[0].status == 503 and slack.calls[-1].ok


# --------------------------------------------------------------------------- auth


@pytest.mark.parametrize(
    ("token", "error"),
    [("xoxb-wrong", "invalid_auth"), (APP_TOKEN, "not_allowed_token_type")],
)
async def test_bad_bot_token_is_refused(slack: FakeSlack, token: str, error: str) -> None:
    client = AsyncWebClient(token=token, base_url=slack.api_url)
    with pytest.raises(SlackApiError) as refused:
        await client.chat_postMessage(channel=CHANNEL, text="x")
    assert refused.value.response["error"] == error
    assert slack.messages == {}


async def test_missing_token_and_unknown_method(slack: FakeSlack, web: AsyncWebClient) -> None:
    anonymous = AsyncWebClient(base_url=slack.api_url)
    with pytest.raises(SlackApiError) as unauthenticated:
        await anonymous.auth_test()
    with pytest.raises(SlackApiError) as unknown:
        await web.api_call("chat.nonexistent")
    with pytest.raises(SlackApiError) as wrong_type:
        await web.apps_connections_open(app_token=BOT_TOKEN)
    assert unauthenticated.value.response["error"] == "not_authed"
    assert unknown.value.response["error"] == "unknown_method"
    assert wrong_type.value.response["error"] == "not_allowed_token_type"


# --------------------------------------------------------------------------- Block Kit limits


def _many(count: int, make: Callable[[int], Block]) -> list[Block]:
    return [make(i) for i in range(count)]


def _fields(count: int, size: int) -> list[Block]:
    return [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * size}] * count}]


def _context(count: int) -> list[Block]:
    return [{"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * count}]


def _actions(count: int) -> list[Block]:
    return [{"type": "actions", "elements": _many(count, lambda i: button(f"a{i}"))}]


def _header(size: int) -> list[Block]:
    return [{"type": "header", "text": {"type": "plain_text", "text": "h" * size}}]


# (blocks at the limit, blocks one past it, json-pointer Slack reports for the latter)
LIMITS: dict[str, tuple[list[Block], list[Block], str]] = {
    "block count": (
        _many(50, lambda i: section("s")),
        _many(51, lambda i: section("s")),
        "/blocks",
    ),
    "section text": ([section("s" * 3000)], [section("s" * 3001)], "/blocks/0/text/text"),
    "section field": (_fields(1, 2000), _fields(1, 2001), "/blocks/0/fields/0/text"),
    "field count": (_fields(10, 1), _fields(11, 1), "/blocks/0/fields"),
    "header text": (_header(150), _header(151), "/blocks/0/text/text"),
    "context elements": (_context(10), _context(11), "/blocks/0/elements"),
    "actions elements": (_actions(25), _actions(26), "/blocks/0/elements"),
}


@pytest.mark.parametrize("limit", list(LIMITS))
async def test_block_kit_limits(slack: FakeSlack, web: AsyncWebClient, limit: str) -> None:
    at_limit, over_limit, pointer = LIMITS[limit]

    await web.chat_postMessage(channel=CHANNEL, text="fallback", blocks=at_limit)
    with pytest.raises(SlackApiError) as refused:
        await web.chat_postMessage(channel=CHANNEL, text="fallback", blocks=over_limit)

    assert refused.value.response["error"] == "invalid_blocks"
    [violation] = slack.violations
    assert violation.method == "chat.postMessage"
    assert any(f"[json-pointer:{pointer}]" in problem for problem in violation.problems)
    assert len(slack.messages) == 1


async def test_invalid_blocks_refused_on_update_and_response_url(
    slack: FakeSlack, web: AsyncWebClient
) -> None:
    posted = await web.chat_postMessage(channel=CHANNEL, text="x", blocks=[section("ok")])
    with pytest.raises(SlackApiError):
        await web.chat_update(channel=CHANNEL, ts=posted["ts"], text="x", blocks=_header(151))
    hook = AsyncWebhookClient(slack.response_url(channel=CHANNEL))
    response = await hook.send(text="x", blocks=_header(151))

    assert response.status_code == 400
    assert [v.method for v in slack.violations] == ["chat.update", "response_url"]
    assert slack.messages[(CHANNEL, posted["ts"])].blocks == [section("ok")]  # unchanged


async def test_blocks_without_text_are_recorded_as_warning(slack: FakeSlack, web: AsyncWebClient) -> None:
    # slack_sdk itself warns too; with filterwarnings=error that fails any bot test that forgets
    # the fallback text, which is the point.
    with pytest.warns(UserWarning, match="top-level `text`"):
        await web.chat_postMessage(channel=CHANNEL, blocks=[section("no fallback")])
    assert [(w.method, w.kind) for w in slack.warnings] == [("chat.postMessage", "missing_text")]
    assert slack.violations == []


# --------------------------------------------------------------------------- response_url


async def test_response_url_replaces_original_message(slack: FakeSlack, web: AsyncWebClient) -> None:
    posted = await web.chat_postMessage(channel=CHANNEL, text="approve?", blocks=[section("?")])
    url = slack.response_url(channel=CHANNEL, message_ts=posted["ts"], kind="actions")

    response = await AsyncWebhookClient(url).send(
        text="approved", blocks=[section("approved by U1")], replace_original=True
    )

    assert response.status_code == 200
    call = await slack.wait_for("response_url")
    assert call.params["replace_original"] is True
    message = slack.messages[(CHANNEL, posted["ts"])]
    assert (message.text, message.blocks) == ("approved", [section("approved by U1")])


async def test_response_url_in_channel_and_ephemeral(slack: FakeSlack) -> None:
    hook = AsyncWebhookClient(slack.response_url(channel=CHANNEL, user="U1"))
    await hook.send(text="only you", response_type="ephemeral")
    await hook.send(text="everyone", response_type="in_channel")

    assert [(e.text, e.user, e.via) for e in slack.ephemerals] == [("only you", "U1", "response_url")]
    [message] = slack.messages.values()
    assert (message.channel, message.text) == (CHANNEL, "everyone")


# ------------------------------------------------------------------------ Socket Mode (slack_sdk)


class _Recorder:
    """Socket Mode listener that acks every request the way an app does."""

    def __init__(self, reply: dict[str, Any] | None = None) -> None:
        self.requests: list[SocketModeRequest] = []
        self.reply = reply

    async def __call__(self, client: AsyncBaseSocketModeClient, req: SocketModeRequest) -> None:
        self.requests.append(req)
        await client.send_socket_mode_response(SocketModeResponse(req.envelope_id, self.reply))


@pytest.fixture
async def socket_client(slack: FakeSlack) -> AsyncIterator[SocketModeClient]:
    web_client = AsyncWebClient(base_url=slack.api_url)  # apps.connections.open uses app_token
    client = SocketModeClient(app_token=APP_TOKEN, web_client=web_client)
    try:
        yield client
    finally:
        await client.close()  # before the fake stops, so the client does not try to reconnect


async def test_socket_mode_client_connects_receives_and_acks(
    slack: FakeSlack, socket_client: SocketModeClient
) -> None:
    recorder = _Recorder(reply={"text": "working on it"})
    socket_client.socket_mode_request_listeners.append(recorder)
    await socket_client.connect()
    await slack.socket_connected(timeout=5)

    payload = slash_command_payload(text="status", response_url=slack.response_url(channel=CHANNEL))
    envelope_id = await slack.socket_send("slash_commands", payload)
    ack = await slack.wait_ack(envelope_id, timeout=5)

    assert ack.payload == {"text": "working on it"}
    assert 0 <= ack.elapsed < 3 and not ack.late
    [request] = recorder.requests
    assert (request.type, request.payload["command"], request.payload["text"]) == (
        "slash_commands",
        "/cluster",
        "status",
    )
    assert request.accepts_response_payload is True
    assert [call.method for call in slack.calls] == ["apps.connections.open"]


# "refresh_requested": Slack's announced rotation; None: the socket just drops.
@pytest.mark.parametrize("reason", ["refresh_requested", None])
async def test_socket_mode_client_reconnects_after_disconnect(
    slack: FakeSlack, socket_client: SocketModeClient, reason: str | None
) -> None:
    recorder = _Recorder()
    socket_client.socket_mode_request_listeners.append(recorder)
    await socket_client.connect()
    first = await slack.socket_connected()

    await slack.socket_disconnect(reason, timeout=5)
    second = await slack.socket_connected(timeout=5)
    envelope_id = await slack.socket_send("events_api", app_mention_event(text="hi", ts="1.1"))
    ack = await slack.wait_ack(envelope_id)

    assert (first.number, first.open, second.number) == (1, False, 2)
    assert ack.payload is None
    assert [call.method for call in slack.calls] == ["apps.connections.open"] * 2



async def test_socket_mode_envelopes_spread_across_the_open_connections(slack: FakeSlack) -> None:
    """Like Slack with one connection per replica: each gets its share, and an ack comes back
    on the connection that carried the envelope; a closed connection gets nothing more."""
    recorders = [_Recorder(), _Recorder()]
    clients = [SocketModeClient(app_token=APP_TOKEN, web_client=AsyncWebClient(base_url=slack.api_url))
               for _ in recorders]
    try:
        for client, recorder in zip(clients, recorders, strict=True):
            client.socket_mode_request_listeners.append(recorder)
            await client.connect()
        first, second = await slack.socket_connections(2)
        spread = [await slack.wait_ack(await slack.socket_send(
            "events_api", app_mention_event(text="hi", ts=f"1.{i}"))) for i in range(4)]
        assert [ack.connection for ack in spread] == [first.number, second.number] * 2
        assert [len(r.requests) for r in recorders] == [2, 2]
        aimed = await slack.wait_ack(await slack.socket_send(
            "events_api", app_mention_event(text="hi", ts="2.0"), connection=first))
        await clients[1].close()
        await asyncio.wait_for(second.closed.wait(), 5)
        left = await slack.wait_ack(await slack.socket_send("events_api", app_mention_event(
            text="hi", ts="3.0")))
        assert (aimed.connection, left.connection) == (first.number, first.number)
    finally:
        for client in clients:
            await client.close()


# --------------------------------------------------------------------------- Bolt end to end


def _bolt_app(slack: FakeSlack) -> AsyncApp:
    return AsyncApp(
        client=AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url),
        signing_secret=SIGNING_SECRET,
    )


async def test_bolt_socket_mode_app_handles_command_action_and_mention(slack: FakeSlack) -> None:
    app = _bolt_app(slack)

    @app.command("/cluster")
    async def on_command(ack: AsyncAck, say: AsyncSay, command: dict[str, Any]) -> None:
        await ack(f"running {command['text']}")
        await say(text=f"status of {command['text']}", blocks=[section("all good")])

    @app.action("approve")
    async def on_approve(ack: AsyncAck, respond: AsyncRespond, body: dict[str, Any]) -> None:
        await ack()
        await respond(text=f"approved by {body['user']['id']}", replace_original=True)

    @app.event("app_mention")
    async def on_mention(say: AsyncSay, event: dict[str, Any]) -> None:
        await say(text="pong", thread_ts=event["ts"])

    handler = AsyncSocketModeHandler(app, APP_TOKEN)
    await handler.connect_async()
    try:
        await _drive_bolt_app(slack)
    finally:
        await handler.close_async()
    assert slack.violations == [] and slack.warnings == []


async def _drive_bolt_app(slack: FakeSlack) -> None:
    command_url = slack.response_url(channel=CHANNEL)
    command = slash_command_payload(text="prod", response_url=command_url)
    ack = await slack.wait_ack(await slack.socket_send("slash_commands", command))
    assert ack.payload == {"text": "running prod"}
    posted = await slack.wait_for("chat.postMessage")
    assert posted.params["text"] == "status of prod" and posted.params["channel"] == CHANNEL

    ts = posted.response["ts"]
    action_url = slack.response_url(channel=CHANNEL, message_ts=ts, kind="actions")
    message = slack.messages[(CHANNEL, ts)].to_api()
    click = block_actions_payload(
        action_id="approve", value="yes", message_ts=ts, response_url=action_url, message=message
    )
    await slack.wait_ack(await slack.socket_send("interactive", click))
    await slack.wait_for("response_url")
    assert slack.messages[(CHANNEL, ts)].text == "approved by U0USER"

    mention = app_mention_event(text="ping", ts=slack.next_ts())
    await slack.socket_send("events_api", mention)
    reply = await slack.wait_for("chat.postMessage", lambda c: c.params["text"] == "pong")
    assert reply.params["thread_ts"] == mention["event"]["ts"]


# --------------------------------------------------------------------------- signing + HTTP bodies


def test_signature_is_accepted_by_sdk_verifier_and_tamper_is_refused() -> None:
    body = slash_command_body(text="status", response_url="http://127.0.0.1:1/hooks/commands/x")
    headers = sign(SIGNING_SECRET, body)
    verifier = SignatureVerifier(SIGNING_SECRET)

    assert verifier.is_valid_request(body, headers)
    assert not verifier.is_valid_request(body + b"&text=rm", headers)
    assert not verifier.is_valid_request(body, sign("other-secret", body))
    assert not verifier.is_valid_request(body, sign(SIGNING_SECRET, body, int(time.time()) - 600))


async def test_bolt_http_mode_accepts_signed_bodies(slack: FakeSlack) -> None:
    app = _bolt_app(slack)
    seen: list[str] = []

    @app.command("/cluster")
    async def on_command(ack: AsyncAck, command: dict[str, Any]) -> None:
        seen.append(f"command:{command['text']}:{command['channel_id']}")
        await ack()

    @app.action("restart")
    async def on_action(ack: AsyncAck, action: dict[str, Any], body: dict[str, Any]) -> None:
        seen.append(f"action:{action['value']}:{body['container']['message_ts']}")
        await ack()

    @app.event("message")
    async def on_message(event: dict[str, Any]) -> None:
        seen.append(f"message:{event['thread_ts']}")

    url = slack.response_url(channel=CHANNEL)
    bodies = [
        (slash_command_body(text="status", response_url=url), FORM_CONTENT_TYPE),
        (
            block_actions_body(action_id="restart", value="node1", message_ts="5.5", response_url=url),
            FORM_CONTENT_TYPE,
        ),
        (
            events_body(thread_message_event(text="more", ts="6.6", thread_ts="5.5")),
            JSON_CONTENT_TYPE,
        ),
    ]
    for body, content_type in bodies:
        headers: dict[str, str | Sequence[str]] = {**signed_headers(SIGNING_SECRET, body, content_type)}
        response = await app.async_dispatch(AsyncBoltRequest(body=body.decode(), headers=headers))
        assert response.status == 200, response.body

    tampered = bodies[0][0].replace(b"status", b"reboot")
    headers = {**signed_headers(SIGNING_SECRET, bodies[0][0], FORM_CONTENT_TYPE)}
    refused = await app.async_dispatch(AsyncBoltRequest(body=tampered.decode(), headers=headers))
    assert refused.status == 401
    await slack.wait_for("auth.test")  # Bolt authorized the requests against the fake
    assert seen[:2] == ["command:status:C0CHAN", "action:node1:5.5"]
