"""The public HTTP edge against hostile and malformed input: real HTTP to the running bot (the fake
Slack behind it, the demo cluster over SSH), every request built by hand the way an attacker would.

What must hold for every request that is not Slack's: 401 (413 for a body over the limit), no 5xx,
exactly one short log line, no traceback, and never the request body in the log."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from bot.demo.cluster import DemoCluster
from bot.errors import ConfigError
from bot.metrics import Metrics
from bot.ops_http import push_routes, serve_ops
from bot.server import start_bot
from bot.slack.serve import REFUSALS_LOGGED_PER_MINUTE, RefusalLog
from tests.fakes.botharness import CHANNEL, SECRET, Harness, demo_settings, running_bot
from tests.fakes.signing import block_actions_payload, interactivity_body, sign, slash_command_payload
from tests.fakes.slack import FakeSlack

FORM = "application/x-www-form-urlencoded"
# Distinctive text in every hostile body: it must never show up in a log record.
MARKER = "hostile-body-7f3a"
LOG_LINE_MAX = 200


def now() -> str:
    return str(int(time.time()))


def hostile() -> list[tuple[str, bytes, dict[str, str], int]]:
    """(case, body, headers, expected status) for requests that are not Slack's."""
    body = f"text={MARKER}&command=/cluster".encode()
    return [
        ("no signature headers", body, {}, 401),
        ("empty signature headers", body, {"X-Slack-Request-Timestamp": "", "X-Slack-Signature": ""}, 401),
        ("non-numeric timestamp", body, {"X-Slack-Request-Timestamp": "abc", "X-Slack-Signature": "v0=00"},
         401),
        ("40-digit timestamp", body, {"X-Slack-Request-Timestamp": "9" * 40, "X-Slack-Signature": "v0=00"},
         401),
        ("negative timestamp", body, {"X-Slack-Request-Timestamp": "-5", "X-Slack-Signature": "v0=00"}, 401),
        ("body not UTF-8", f"payload=\xff{MARKER}".encode("latin-1"),
         {"X-Slack-Request-Timestamp": now(), "X-Slack-Signature": "v0=00"}, 401),
        ("non-ASCII signature", body, {"X-Slack-Request-Timestamp": now(), "X-Slack-Signature": "v0=é"}, 401),
        ("stale but correctly signed", body, sign(SECRET, body, int(time.time()) - 600), 401),
        ("signed with another secret", body, sign("not-the-secret", body), 401),
        ("JSON body, bad signature", json.dumps({"type": "event_callback", "x": MARKER}).encode(),
         {"X-Slack-Request-Timestamp": now(), "X-Slack-Signature": "v0=00",
          "Content-Type": "application/json"}, 401),
        ("wrong content type", body, {"X-Slack-Request-Timestamp": now(), "X-Slack-Signature": "v0=00",
                                      "Content-Type": "text/html; charset=utf-8"}, 401),
        ("body over the limit", (f"text={MARKER}&x=" + "y" * (2 * 1024 * 1024)).encode(),
         {"X-Slack-Request-Timestamp": now(), "X-Slack-Signature": "v0=00"}, 413),
    ]


async def post_raw(h: Harness, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    data = io.BytesIO(body)  # aiohttp streams it: a 2 MiB body must not block the loop
    async with h.http.post(h.events_url, data=data, headers={"Content-Type": FORM, **headers}) as resp:
        return resp.status, await resp.text()


@pytest.mark.parametrize("case", [c[0] for c in hostile()])
async def test_request_not_from_slack_gets_4xx_and_one_line(case: str, caplog: pytest.LogCaptureFixture
                                                            ) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_bot(watch=False) as h:
        _, body, headers, expected = next(c for c in hostile() if c[0] == case)
        caplog.clear()
        status, answer = await post_raw(h, body, headers)
        records = list(caplog.records)
        calls = [c.method for c in h.slack.calls]
    assert status == expected, (status, answer)
    assert MARKER not in answer
    assert calls == ["auth.test"]  # nothing reached a listener
    said = [r for r in records if r.levelno >= logging.INFO]
    assert len(said) == 1, [r.getMessage() for r in said]
    line = said[0]
    assert line.exc_info is None and "\n" not in line.getMessage() and len(line.getMessage()) < LOG_LINE_MAX
    assert all(MARKER not in r.getMessage() for r in records)  # not even at DEBUG


async def test_signed_requests_still_work_after_hostile_ones() -> None:
    async with running_bot(watch=False) as h:
        for _, body, headers, _ in hostile()[:3]:
            await post_raw(h, body, headers)
        status, body, _ = await h.slash("status nope")
        assert status == 200 and "unknown cluster `nope`" in json.loads(body)["text"]


async def test_the_slack_port_serves_only_what_the_readme_says() -> None:
    """No metrics_port: /slack/events, /healthz and /readyz; /push only with push_secret; no /metrics."""
    async with running_bot(watch=False) as h:
        assert h.bot.http is not None
        base = f"http://127.0.0.1:{h.bot.http.port}"
        seen = {path: await status_of(h.http, base + path)
                for path in ("/metrics", "/healthz", "/readyz", "/push", "/", "/slack/events")}
    assert seen == {"/metrics": 404, "/healthz": 200, "/readyz": 200, "/push": 404, "/": 404,
                    "/slack/events": 405}


async def test_with_a_metrics_port_the_slack_port_serves_slack_alone() -> None:
    async with running_bot(watch=False, metrics_port=0, push_secret="push-secret") as h:
        assert h.bot.http is not None and h.bot.ops is not None
        public = f"http://127.0.0.1:{h.bot.http.port}"
        ops = f"http://127.0.0.1:{h.bot.ops.port}"
        on_public = {p: await status_of(h.http, public + p) for p in ("/metrics", "/healthz", "/readyz")}
        on_ops = {p: await status_of(h.http, ops + p) for p in ("/metrics", "/healthz", "/readyz")}
        async with h.http.post(public + "/push", data=b"{}") as resp:
            push_public = resp.status
        async with h.http.post(ops + "/push", data=b"{}") as resp:
            push_ops = resp.status
    assert on_public == {"/metrics": 404, "/healthz": 404, "/readyz": 404} and push_public == 404
    assert on_ops == {"/metrics": 200, "/healthz": 200, "/readyz": 200} and push_ops == 401


async def test_push_on_the_slack_port_without_a_metrics_port() -> None:
    async with running_bot(watch=False, push_secret="push-secret") as h:
        assert h.bot.http is not None
        async with h.http.post(f"http://127.0.0.1:{h.bot.http.port}/push", data=b"{}") as resp:
            assert resp.status == 401  # mounted, and refused unsigned


async def status_of(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(url) as resp:
        return resp.status


async def test_chunked_push_over_the_limit_is_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    """A chunked body announces no length: aiohttp stopped it with its own 413, uncounted, unlogged."""
    metrics = Metrics()
    ops = await serve_ops("127.0.0.1", 0, push_routes(secret="push-secret", wake=lambda c: True,
                                                      metrics=metrics))

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b" " * 8192  # 160 KiB in all, over the 64 KiB limit

    try:
        caplog.set_level(logging.INFO)
        async with aiohttp.ClientSession() as http, \
                http.post(f"http://127.0.0.1:{ops.port}/push", data=chunks()) as resp:
            assert resp.status == 413
    finally:
        await ops.close()
    assert 'clusterbot_push_requests_total{outcome="too_large"} 1.0' in metrics.render().decode()
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("push ")] == [
        "push from 127.0.0.1 refused: body over 65536 bytes"]


# ---------------------------------------------------------------- payload values: range as well as shape

CLICKER = "U0CLICK"


def click_payload(h: Harness, action_id: str, value: object, **changes: object) -> dict[str, Any]:
    url = h.slack.response_url(channel=CHANNEL, user=CLICKER, message_ts="1.0", kind="actions")
    payload = block_actions_payload(action_id=action_id, value="x", user_id=CLICKER, channel_id=CHANNEL,
                                    message_ts="1.0", response_url=url)
    payload["actions"][0]["value"] = value
    payload.update(changes)
    return payload


async def signed_click(h: Harness, payload: dict[str, Any]) -> int:
    status, _, _ = await h.post(interactivity_body(payload), FORM)
    return status


@pytest.mark.parametrize("value", ["9" * 20, "9" * 19, "0" * 30 + "1", "1" * 5000, "-1", "1e9", "٣", 7, None])
async def test_request_fix_value_out_of_range_answers_one_line(value: object,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with running_bot(watch=False) as h:
        assert await signed_click(h, click_payload(h, "clusterbot:request_fix", value)) == 200
        said = await h.slack.wait_for("chat.postEphemeral", lambda c: c.params.get("user") == CLICKER)
    assert "this alert has no fix to request" in said.params["text"]
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


@pytest.mark.parametrize(("case", "changes"), [
    ("no actions", {"actions": []}),
    ("actions not a list", {"actions": "approve"}),
    ("action not an object", {"actions": ["x"]}),
    ("user not an object", {"user": "U0CLICK"}),
    ("user id not a string", {"user": {"id": ["U0BOSS"]}}),
    ("channel missing", {"channel": None}),
])
async def test_malformed_click_payloads_never_raise(case: str, changes: dict[str, object],
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with running_bot(watch=False) as h:
        for action_id in ("clusterbot:approve", "clusterbot:request_fix"):
            payload = click_payload(h, action_id, "1", **changes)
            if case.startswith("action"):
                payload["actions"] = changes["actions"]
            # 400: bolt cannot read it; 404: it names no action a listener has
            assert await signed_click(h, payload) in (200, 400, 404)
        await h.remediation.wait_idle()
    assert not [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert all("\n" not in r.getMessage() for r in caplog.records if r.name.startswith("slack_bolt"))


# ---------------------------------------------------------------- approver groups, read for every decision

ONCALL, BOSS, ALICE = "S0ONCALL", "U0BOSS", "U0ALICE"


async def test_removed_from_the_group_cannot_approve_a_second_later() -> None:
    async with running_bot(watch=False, cluster={"approvers": (ONCALL,), "approvals_required": 2}) as h:
        h.slack.usergroup_members[ONCALL] = [BOSS, ALICE]
        await h.demo.demo_command(("fail", "virtual_ip_2"))
        await h.slash("cleanup prod-haproxy virtual_ip_2")
        await h.slack.wait_for("chat.postMessage", lambda c: "requested by" in json.dumps(c.params))
        req = await pending(h)
        await h.click("clusterbot:approve", req.id, BOSS)  # 1/2: the group was read just now
        await h.slack.wait_for("chat.postMessage", lambda c: f"<@{BOSS}> approved (1/2)" in str(c.params))
        h.slack.usergroup_members[ONCALL] = [BOSS]  # ALICE leaves the on-call group
        await h.click("clusterbot:approve", req.id, ALICE)
        said = await h.slack.wait_for("chat.postEphemeral", lambda c: c.params.get("user") == ALICE)
        await h.remediation.wait_idle()
        stored = await h.bot.runtime.store.get_request(req.id)
    assert "you are not an approver" in said.params["text"]
    assert stored is not None and stored.approvers == (BOSS,) and str(stored.state) == "pending"
    assert h.node_commands("pcs resource cleanup") == []


async def test_a_group_slack_will_not_list_refuses_with_the_reason() -> None:
    async with running_bot(watch=False, cluster={"approvers": (ONCALL,)}) as h:
        h.slack.usergroup_members[ONCALL] = [BOSS]
        await h.demo.demo_command(("fail", "virtual_ip_2"))
        await h.slash("cleanup prod-haproxy virtual_ip_2")
        req = await pending(h)
        h.slack.fail("usergroups.users.list", error="missing_scope")
        await h.click("clusterbot:approve", req.id, BOSS)
        said = await h.slack.wait_for("chat.postEphemeral", lambda c: c.params.get("user") == BOSS)
        stored = await h.bot.runtime.store.get_request(req.id)
    assert "could not check the approver group S0ONCALL with Slack (missing_scope)" in said.params["text"]
    assert stored is not None and stored.approvers == ()


async def pending(h: Harness) -> Any:
    for _ in range(200):
        if requests := await h.bot.runtime.store.pending_requests():
            return requests[-1]
        await asyncio.sleep(0.02)
    raise AssertionError("no request was filed")


# ---------------------------------------------------------------- one Web API client, every call counted


def bot_count(h: Harness) -> int:
    """Slack requests the bot logged and counted, from its own /metrics series."""
    lines = h.bot.metrics.render().decode().splitlines()
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in lines
                   if line.startswith("clusterbot_slack_calls_total{")))


def slack_count(h: Harness) -> int:
    """Every request the fake Slack answered: Web API methods and response_url replies."""
    return len(h.slack.calls)


async def counts_agree(h: Harness) -> bool:
    """The fake records a call before the bot has read its reply (and counted it): allow a moment."""
    for _ in range(100):
        if bot_count(h) == slack_count(h):
            return True
        await asyncio.sleep(0.02)
    return False


async def answers_approvals_and_a_retry(h: Harness, send_slash: Callable[[str, str], Awaitable[None]],
                                        send_click: Callable[[str, str, str], Awaitable[None]]) -> None:
    """Drive every kind of answer: a status (progress + edit), a refusal in a thread, a request with
    its root message, a denied approval told privately (rate limited once, so retried), approvals."""
    h.slack.usergroup_members[ONCALL] = [BOSS]
    await send_slash("status prod-haproxy", "U0USER")
    await h.slack.wait_for("chat.update", lambda c: "is healthy" in json.dumps(c.params), timeout=15)
    await h.demo.demo_command(("fail", "virtual_ip_2"))
    await send_slash("cleanup prod-haproxy virtual_ip_2", "U0USER")
    req = await pending(h)
    h.slack.rate_limit("chat.postEphemeral", times=1, retry_after=0)
    await send_click("clusterbot:approve", req.id, "U0STRANGER")
    await h.slack.wait_for("chat.postEphemeral", lambda c: c.ok and c.params.get("user") == "U0STRANGER")
    await send_click("clusterbot:approve", req.id, BOSS)
    await h.slack.wait_for("chat.postMessage", lambda c: "verified" in json.dumps(c.params), timeout=30)
    await h.remediation.wait_idle()


async def test_every_web_api_call_is_counted_in_http_mode() -> None:
    async with running_bot(watch=False, cluster={"approvers": (ONCALL,)}) as h:
        async def slash(text: str, user: str) -> None:
            await h.slash(text, user=user)

        async def click(action: str, value: str, user: str) -> None:
            await h.click(action, value, user)

        await answers_approvals_and_a_retry(h, slash, click)
        assert [c.status for c in h.slack.calls if c.method == "chat.postEphemeral"][:2] == [429, 200]
        assert slack_count(h) > 10 and await counts_agree(h), (bot_count(h), slack_count(h))


async def test_every_web_api_call_is_counted_in_socket_mode() -> None:
    async with running_bot(watch=False, slack_app_token="xapp-test", cluster={"approvers": (ONCALL,)}) as h:
        async def slash(text: str, user: str) -> None:
            url = h.slack.response_url(channel=CHANNEL, user=user)
            eid = await h.slack.socket_send("slash_commands", slash_command_payload(
                text=text, user_id=user, response_url=url))
            await h.slack.wait_ack(eid)

        async def click(action: str, value: str, user: str) -> None:
            url = h.slack.response_url(channel=CHANNEL, user=user, message_ts="1.0", kind="actions")
            eid = await h.slack.socket_send("interactive", block_actions_payload(
                action_id=action, value=value, user_id=user, message_ts="1.0", response_url=url))
            await h.slack.wait_ack(eid)

        await h.slack.socket_connected(timeout=10)
        await answers_approvals_and_a_retry(h, slash, click)
        assert "apps.connections.open" in [c.method for c in h.slack.calls]
        assert slack_count(h) > 10 and await counts_agree(h), (bot_count(h), slack_count(h))


async def test_debug_logs_carry_no_slack_bodies(caplog: pytest.LogCaptureFixture) -> None:
    """slack_sdk logs every request and reply body whenever its logger's own level is unset."""
    caplog.set_level(logging.DEBUG)
    async with running_bot(watch=False, slack_app_token="xapp-test") as h:
        await h.slack.socket_connected(timeout=10)
        url = h.slack.response_url(channel=CHANNEL)
        await h.slack.socket_send("slash_commands", slash_command_payload(text="status prod-haproxy",
                                                                         response_url=url))
        await h.slack.wait_for("chat.update", timeout=15)
    logs = caplog.text
    assert "slack chat.update: ok" in logs
    for body_line in ("Sending a request", "Received the following response", "Received message"):
        assert body_line not in logs
    assert "is healthy" not in logs and "/cluster" not in logs  # the answer's text, the payload's command


# ---------------------------------------------------------------- a refused app token stops startup


@pytest.mark.parametrize(("token", "error"), [("xapp-wrong", "invalid_auth"),
                                              ("xoxb-test", "not_allowed_token_type")])
async def test_app_token_slack_refuses_stops_startup_with_one_line(token: str, error: str,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with FakeSlack() as slack, DemoCluster() as demo:
        settings = demo_settings(slack, demo, slack_app_token=token)
        refused = rf"Slack refused SLACK_APP_TOKEN \(apps.connections.open: {error}\)"
        with pytest.raises(ConfigError, match=refused):
            await asyncio.wait_for(start_bot(settings), timeout=20)
        opened = [c.method for c in slack.calls].count("apps.connections.open")
    assert opened == 1  # asked once: no retry fixes a refused token
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


# ---------------------------------------------------------------- the demo's approvers


async def test_configured_approvers_approve_on_the_demo_cluster() -> None:
    """The demo cluster's config carried alice and bob, overriding CLUSTERBOT_APPROVERS."""
    async with running_bot(watch=False, approvers=(BOSS,)) as h:
        await h.demo.demo_command(("fail", "virtual_ip_2"))
        await h.slash("cleanup prod-haproxy virtual_ip_2")
        req = await pending(h)
        await h.click("clusterbot:approve", req.id, BOSS)
        await h.slack.wait_for("chat.postMessage", lambda c: "verified" in json.dumps(c.params), timeout=30)
        await h.remediation.wait_idle()
        assert h.node_commands("pcs resource cleanup virtual_ip_2")
        assert not [e for e in h.slack.ephemerals if "not an approver" in e.text]


async def demo_says(*, slack: bool, approvers: str | None) -> str:
    """`clusterbot demo [--slack]` as a process; its first lines, up to who can approve."""
    async with FakeSlack() as fake:
        env = {"PATH": "/usr/bin:/bin", "SLACK_BOT_TOKEN": fake.bot_token, "SLACK_SIGNING_SECRET": SECRET,
               "CLUSTERBOT_SLACK_API_URL": fake.api_url, "CLUSTERBOT_HTTP_HOST": "127.0.0.1",
               "CLUSTERBOT_HTTP_PORT": "0", **({"CLUSTERBOT_APPROVERS": approvers} if approvers else {})}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "demo", *(["--slack"] if slack else []), env=env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        assert proc.stdout is not None
        lines: list[str] = []
        try:
            async with asyncio.timeout(60):
                while not any("approve" in line for line in lines):
                    line = (await proc.stdout.readline()).decode()
                    assert line, f"demo ended early: {lines}, {(await proc.stderr.read()).decode()[-500:]}"
                    lines.append(line)
        finally:
            proc.terminate()
            await proc.communicate()
    return "".join(lines)


async def test_demo_in_slack_uses_and_names_the_configured_approvers() -> None:
    said = await demo_says(slack=True, approvers='["U0BOSS", "S0ONCALL"]')
    assert "demo: approvers are U0BOSS, S0ONCALL" in said and "alice" not in said


async def test_demo_in_slack_without_approvers_says_nobody_can_approve() -> None:
    said = await demo_says(slack=True, approvers=None)
    assert "demo: nobody can approve: set CLUSTERBOT_APPROVERS" in said and "alice" not in said


async def test_console_demo_without_approvers_keeps_alice_and_bob() -> None:
    said = await demo_says(slack=False, approvers=None)
    assert "demo: approvers are alice and bob: /as alice, then /approve ID" in said


async def test_app_token_revoked_while_running_logs_lines_not_tracebacks(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with running_bot(watch=False, slack_app_token="xapp-test") as h:
        await h.slack.socket_connected(timeout=10)
        h.slack.app_token = "xapp-rotated"  # ours is revoked: every reconnect is refused
        await h.slack.socket_disconnect("refresh_requested")
        await h.slack.wait_for("apps.connections.open", lambda c: not c.ok, timeout=10)
        def sdk_errors() -> list[logging.LogRecord]:
            return [r for r in caplog.records if r.name == "bot.slack.sdk" and r.levelno >= logging.ERROR]

        for _ in range(100):
            if len(sdk_errors()) > 2:
                break
            await asyncio.sleep(0.05)
    failed = sdk_errors()
    assert failed and all(r.exc_info is None and "\n" not in r.getMessage() for r in failed)
    assert "slack apps.connections.open: invalid_auth" in caplog.text  # our line names the error


@pytest.mark.parametrize("retry_after", ["Wed, 21 Oct 2015 07:28:00 GMT", "1.5", "86400"])
async def test_a_retry_after_not_worth_waiting_fails_at_once_and_the_answer_still_comes(
        retry_after: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with running_bot(watch=False) as h:
        h.slack.rate_limit("chat.postMessage", times=1, retry_after=retry_after)
        t0 = time.perf_counter()
        await h.slash("status prod-haproxy")  # the progress post is refused; the answer is posted anew
        await h.slack.wait_for("chat.postMessage", lambda c: c.ok and "is healthy" in json.dumps(c.params),
                               timeout=15)
        took = time.perf_counter() - t0
        assert await counts_agree(h), (bot_count(h), slack_count(h))
    assert took < 15
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def test_slacks_url_verification_still_answers_its_challenge() -> None:
    """What Slack sends when the Request URL is saved: signed, it gets the challenge; unsigned, 401."""
    body = json.dumps({"token": "x", "challenge": "c-42", "type": "url_verification"}).encode()
    async with running_bot(watch=False) as h:
        status, text, _ = await h.post(body, "application/json")
        assert status == 200 and json.loads(text)["challenge"] == "c-42"
        status, text, _ = await h.post(body, "application/json", headers={})
        assert status == 401 and "c-42" not in text


async def test_a_flood_of_forged_requests_is_not_a_flood_of_log_lines(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with running_bot(watch=False) as h:
        caplog.clear()
        for _ in range(REFUSALS_LOGGED_PER_MINUTE + 15):
            status, _ = await post_raw(h, b"text=x", {"X-Slack-Signature": "v0=00"})
            assert status == 401
    lines = [r.getMessage() for r in caplog.records if r.name == "bot.slack.serve"]
    assert len(lines) == REFUSALS_LOGGED_PER_MINUTE
    assert lines[0] == "Slack request from 127.0.0.1 refused: HTTP 401, missing signature headers"


def test_the_first_line_after_a_quiet_minute_counts_what_was_not_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [1000.0]
    refusals = RefusalLog("push", per_minute=2, clock=lambda: now[0])
    caplog.set_level(logging.INFO)
    for _ in range(5):
        refusals.refused("10.0.0.9", "bad signature")
    now[0] += 61
    refusals.refused("10.0.0.9", "bad signature")
    refusals.refused("10.0.0.9", "bad signature")
    assert [r.getMessage() for r in caplog.records] == [
        "push from 10.0.0.9 refused: bad signature",
        "push from 10.0.0.9 refused: bad signature",
        "push from 10.0.0.9 refused: bad signature (3 more refused before this, not logged)",
        "push from 10.0.0.9 refused: bad signature",
    ]
