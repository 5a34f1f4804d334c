"""Socket Mode: the bot connects over the fake's WebSocket, acks envelopes, answers via the API."""

from __future__ import annotations

import json

from tests.fakes.botharness import running_bot
from tests.fakes.signing import app_mention_event, slash_command_payload


async def test_slash_command_over_socket_mode() -> None:
    async with running_bot(slack_app_token="xapp-test") as h:
        assert h.bot.mode == "socket" and h.bot.http is None
        await h.slack.socket_connected(timeout=10)
        url = h.slack.response_url(channel="C0CHAN")
        eid = await h.slack.socket_send("slash_commands", slash_command_payload(
            text="status prod-haproxy", response_url=url))
        ack = await h.slack.wait_ack(eid, timeout=5)
        assert not ack.late and ack.elapsed < 1.0
        final = await h.slack.wait_for("chat.update", timeout=10)
        assert "is healthy" in json.dumps(final.params["blocks"])


async def test_usage_error_rides_on_the_socket_ack() -> None:
    async with running_bot(slack_app_token="xapp-test") as h:
        url = h.slack.response_url(channel="C0CHAN")
        eid = await h.slack.socket_send("slash_commands", slash_command_payload(
            text="reboot-everything", response_url=url))
        ack = await h.slack.wait_ack(eid, timeout=5)
        assert ack.payload is not None and "unknown command" in ack.payload["text"]


async def test_mention_and_reconnect() -> None:
    async with running_bot(slack_app_token="xapp-test") as h:
        first = await h.slack.socket_connected(timeout=10)
        await h.slack.socket_disconnect("refresh_requested")
        again = await h.slack.socket_connected(timeout=15)
        assert again.number > first.number
        eid = await h.slack.socket_send("events_api", app_mention_event(text="list", ts="1700000002.000100"))
        await h.slack.wait_ack(eid, timeout=5)
        post = await h.slack.wait_for("chat.postMessage", timeout=10)
        assert post.params["thread_ts"] == "1700000002.000100"
        assert "prod-haproxy" in json.dumps(post.params["blocks"])


async def test_identity_is_learned_before_connecting_and_acks_never_wait_on_the_api() -> None:
    async with running_bot(watch=False, slack_app_token="xapp-test") as h:
        await h.slack.socket_connected(timeout=10)
        assert [c.method for c in h.slack.calls][:2] == ["auth.test", "apps.connections.open"]
        h.slack.set_down(True, status=503)  # the open WebSocket stays up; the Web API does not
        url = h.slack.response_url(channel="C0CHAN")
        eid = await h.slack.socket_send("slash_commands", slash_command_payload(
            text="status nope", response_url=url))
        ack = await h.slack.wait_ack(eid, timeout=5)
        assert not ack.late and ack.elapsed < 1.0
        assert ack.payload is not None and "unknown cluster `nope`" in ack.payload["text"]
        h.slack.set_down(False)
        assert [c.method for c in h.slack.calls].count("auth.test") == 1
