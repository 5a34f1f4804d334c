"""The Slack app end to end: signed HTTP in, Web API calls out to the fake Slack, real SSH to
the demo cluster."""

from __future__ import annotations

import asyncio
import json
import time
from types import SimpleNamespace
from typing import Any, cast

import aiohttp
import pytest

from bot.demo.cluster import DemoCluster
from bot.errors import ConfigError
from bot.ops_http import push_routes, serve_ops
from bot.server import start_bot
from bot.slack.app import build_app
from bot.slack.client import web_client
from bot.slack.serve import serve_http
from commands.spec import Services
from tests.fakes.botharness import CHANNEL, SECRET, Harness, demo_settings, running_bot
from tests.fakes.signing import app_mention_event, events_body, sign, slash_command_body
from tests.fakes.slack import Call, FakeSlack


def blocks_text(call: Call) -> str:
    return json.dumps(call.params.get("blocks", [])) + str(call.params.get("text", ""))


async def test_status_is_acked_fast_then_updated_in_place() -> None:
    async with running_bot() as h:
        status, _, elapsed = await h.slash("status prod-haproxy")
        assert status == 200 and elapsed < 3.0
        progress = await h.slack.wait_for("chat.postMessage")
        assert "gathering status from 3 nodes" in blocks_text(progress)
        assert progress.params["channel"] == CHANNEL
        final = await h.slack.wait_for("chat.update", timeout=10)
        assert final.params["ts"] == progress.response["ts"]
        text = blocks_text(final)
        assert "prod-haproxy* is healthy" in text and "virtual_ip_2` \\u2192 node2" in text
        assert not h.slack.violations


async def test_crashed_node_named_in_channel_answer() -> None:
    async with running_bot() as h:
        h.demo.sim.crash("node3")
        await h.slash("status")
        final = await h.slack.wait_for("chat.update", timeout=10)
        text = blocks_text(final)
        assert "node3 is OFFLINE" in text and "/cluster start prod-haproxy node3" in text


async def test_powered_off_node_is_named_not_dropped() -> None:
    async with running_bot() as h:
        await h.demo.demo_command(("poweroff", "node2"))
        await h.slash("status prod-haproxy")
        final = await h.slack.wait_for("chat.update", timeout=15)
        assert "node2 did not answer" in blocks_text(final)


async def test_usage_errors_are_ephemeral_on_the_ack() -> None:
    async with running_bot() as h:
        for text, needle in (("frobnicate", "unknown command `frobnicate`"),
                             ("status nope", "unknown cluster `nope`"),
                             ("status bad;name", "is not a valid cluster name")):
            status, body, _ = await h.slash(text)
            assert status == 200
            ack = json.loads(body)
            assert ack["response_type"] == "ephemeral" and needle in ack["text"]
        assert not [c for c in h.slack.calls if c.method == "chat.postMessage"
                    and "unknown" in blocks_text(c)]


async def test_bad_or_stale_signature_is_refused() -> None:
    async with running_bot() as h:
        url = h.slack.response_url(channel=CHANNEL)
        body = slash_command_body(text="status", response_url=url)
        forged = {**sign("wrong-secret", body)}
        status, _, _ = await h.slash("status", headers=forged)
        assert status == 401
        stale = sign(SECRET, body, timestamp=int(time.time()) - 600)
        status, _, _ = await h.post(body, "application/x-www-form-urlencoded", stale)
        assert status == 401
        tampered = sign(SECRET, body)
        status, _, _ = await h.post(body.replace(b"status", b"list"), "application/x-www-form-urlencoded",
                                    tampered)
        assert status == 401
        assert not [c for c in h.slack.calls if c.method.startswith("chat.")]


async def test_channel_allowlist_refuses_politely() -> None:
    async with running_bot(allowed_channels=("C0OPS",)) as h:
        status, body, _ = await h.slash("status", channel="C0RANDOM")
        ack: dict[str, Any] = json.loads(body)
        assert status == 200 and ack["response_type"] == "ephemeral"
        assert "does not answer in this channel" in ack["text"] and "C0OPS" in ack["text"]
        await h.slash("list", channel="C0OPS")
        await h.slack.wait_for("chat.postMessage", lambda c: c.params["channel"] == "C0OPS")


async def test_app_mention_answers_in_thread() -> None:
    async with running_bot() as h:
        status, _, _ = await h.event(app_mention_event(text="status prod-haproxy", ts="1700000001.000100"))
        assert status == 200
        final = await h.slack.wait_for("chat.update", timeout=10)
        post = next(c for c in h.slack.calls if c.method == "chat.postMessage")
        assert post.params["thread_ts"] == "1700000001.000100"
        assert "is healthy" in blocks_text(final)


async def test_help_is_ephemeral() -> None:
    async with running_bot() as h:
        await h.slash("help status")
        call = await h.slack.wait_for("response_url")
        assert call.params["response_type"] == "ephemeral"
        assert "/cluster status [CLUSTER]" in json.dumps(call.params)


async def test_rate_limited_update_is_retried() -> None:
    async with running_bot() as h:
        h.slack.rate_limit("chat.update", times=1, retry_after=0)
        await h.slash("status prod-haproxy")
        ok = await h.slack.wait_for("chat.update", lambda c: c.ok, timeout=10)
        assert "is healthy" in blocks_text(ok)
        assert [c.status for c in h.slack.calls if c.method == "chat.update"] == [429, 200]


async def test_too_many_words_says_so_on_the_ack() -> None:
    async with running_bot(watch=False) as h:
        status, body, _ = await h.slash("status " + " ".join(["x"] * 9))
        ack = json.loads(body)
        assert status == 200 and ack["response_type"] == "ephemeral"
        assert "too many words (10)" in ack["text"] and "unknown command" not in ack["text"]


async def test_ack_never_waits_on_the_web_api() -> None:
    async with running_bot(watch=False) as h:
        # The bot learned who it is before serving: the only auth.test, before any request.
        assert [c.method for c in h.slack.calls] == ["auth.test"] and h.slack.calls[0].ok
        h.slack.set_down(True, status=503)  # the Web API degrades after the restart
        for text, needle in (("status nope", "unknown cluster `nope`"), ("frobnicate", "unknown command")):
            status, body, elapsed = await h.slash(text)
            assert status == 200 and elapsed < 1.0 and needle in json.loads(body)["text"]
        status, _, elapsed = await h.slash("help")  # acked empty; the answer follows
        assert status == 200 and elapsed < 1.0
        assert [c.method for c in h.slack.calls].count("auth.test") == 1


async def test_slack_down_at_startup_serves_and_authorizes_later() -> None:
    async with FakeSlack() as slack, DemoCluster() as demo:
        slack.set_down(True, status=503)
        bot = await start_bot(demo_settings(slack, demo), watch=False)
        h = Harness(slack, demo, bot, aiohttp.ClientSession())
        try:
            status, body, elapsed = await h.slash("status nope")
            assert status == 200 and elapsed < 1.0 and "unknown cluster `nope`" in json.loads(body)["text"]
            slack.set_down(False)
            await slack.wait_for("auth.test", lambda c: c.ok, timeout=20)  # retried in the background
            await h.slash("list")
            await slack.wait_for("chat.postMessage", lambda c: "prod-haproxy" in blocks_text(c), timeout=10)
        finally:
            await h.http.close()
            await bot.stop()


async def test_token_slack_refuses_fails_startup_loudly() -> None:
    async with FakeSlack() as slack, DemoCluster() as demo, aiohttp.ClientSession() as session:
        slack.fail("auth.test", error="invalid_auth")
        settings = demo_settings(slack, demo)
        services = cast(Services, SimpleNamespace(settings=settings))
        app = build_app(settings, services, web_client(settings, session), socket_mode=False)
        with pytest.raises(ConfigError, match=r"SLACK_BOT_TOKEN.*invalid_auth"):
            server = await serve_http(app, "127.0.0.1", 0)
            await server.close()
        assert [c.method for c in slack.calls] == ["auth.test"]  # no retry can fix a refused token


async def test_the_public_ports_do_not_name_their_software() -> None:
    """aiohttp's default `Server: Python/3.11 aiohttp/3.x` would tell a scanner which versions,
    and so which known bugs, to try: every answer says only `clusterbot`, refusals and 404s too,
    on the Slack port and on the ops port (push, health, metrics)."""
    async with running_bot() as h:
        ops = await serve_ops("127.0.0.1", 0, push_routes(secret="push-secret", wake=lambda c: True))
        try:
            slack = h.events_url.removesuffix("/slack/events")
            asked = [("POST", f"{slack}/slack/events"), ("GET", f"{slack}/slack/events"),
                     ("GET", f"{slack}/nope"), ("POST", f"http://127.0.0.1:{ops.port}/push/lab"),
                     ("GET", f"http://127.0.0.1:{ops.port}/nope")]
            for method, url in asked:
                async with h.http.request(method, url, data=b"x") as resp:
                    assert resp.headers.getall("Server") == ["clusterbot"], (method, url, resp.status)
            assert h.bot.http is not None
            for port in (h.bot.http.port, ops.port):  # what aiohttp cannot parse passes no app hook
                for garbage in (b"GARBAGE\r\n\r\n", b"GET /x HTTP/1.1\r\nBad Header\r\n\r\n"):
                    head = await _raw_answer(port, garbage)
                    assert head.split(b" ", 2)[1] == b"400" and b"\r\nServer: clusterbot\r\n" in head, head
                    assert b"aiohttp" not in head and b"Python" not in head
        finally:
            await ops.close()


async def _raw_answer(port: int, request: bytes) -> bytes:
    """The status line and headers a raw request gets back, over a plain TCP connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    finally:
        writer.close()


async def test_an_event_slack_sends_again_is_answered_once() -> None:
    """Slack re-sends an event whose 200 it did not get in time (X-Slack-Retry-Num), with the
    same event_id: answered once, so a mention that files a fix would not file it twice. A new
    event (another event_id) is still answered."""
    async with running_bot() as h:
        first = events_body(app_mention_event(text="status prod-haproxy", ts="1700000001.000100"))
        status, _, _ = await h.post(first, "application/json")
        assert status == 200
        await h.slack.wait_for("chat.update", timeout=10)
        retry = {**sign(SECRET, first), "X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
        status, _, _ = await h.post(first, "application/json", retry)
        assert status == 200  # acknowledged, so Slack stops re-sending
        again = events_body(app_mention_event(text="status prod-haproxy", ts="1700000002.000100"))
        mark = len(h.slack.calls)
        await h.post(again, "application/json")
        await h.slack.wait_for("chat.update", timeout=10, since=mark)
        threads = [c.params["thread_ts"] for c in h.slack.calls if c.method == "chat.postMessage"]
        assert threads == ["1700000001.000100", "1700000002.000100"]
