"""The running bot's ops surface over HTTP: /healthz, /readyz, /metrics, the signed /push path,
and that secrets never reach the logs."""

from __future__ import annotations

import json
import logging
import time

import aiohttp
import pytest

from bot.ops_http import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature
from tests.fakes.botharness import ALERTS, SECRET, Harness, running_bot

PUSH = "push-secret-for-tests"


def ops_url(h: Harness, path: str) -> str:
    assert h.bot.ops is not None
    return f"http://127.0.0.1:{h.bot.ops.port}{path}"


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with http.get(url) as resp:
        return resp.status, await resp.text()


async def test_health_and_metrics_after_a_status_and_an_alert() -> None:
    async with running_bot(metrics_port=0, cluster={"approvers": ("U0BOSS",)}) as h:
        status, _ = await get(h.http, ops_url(h, "/healthz"))
        assert status == 200
        status, body = await get(h.http, ops_url(h, "/readyz"))
        assert status == 200, body
        await h.slash("status prod-haproxy")
        await h.slack.wait_for("chat.update", timeout=10)
        await h.watcher.wait_polls(1)
        await h.demo.demo_command(("kill", "node2"))
        await h.slack.wait_for("chat.postMessage", lambda c: c.params.get("channel") == ALERTS)
        await h.watcher.wait_polls(1)
        status, text = await get(h.http, ops_url(h, "/metrics"))
    assert status == 200
    for series in ('clusterbot_polls_total{cluster="prod-haproxy"', 'clusterbot_incidents_opened_total',
                   'clusterbot_slack_calls_total{method="chat.postMessage"',
                   'clusterbot_cluster_severity{cluster="prod-haproxy"} 2.0', "clusterbot_ssh_"):
        assert series in text, series


def push_headers(body: bytes, secret: str = PUSH, ts: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if ts is None else ts)
    return {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: signature(secret, stamp, body),
            "Content-Type": "application/json"}


async def test_signed_push_polls_at_once_and_bad_signatures_are_refused() -> None:
    async with running_bot(metrics_port=0, push_secret=PUSH, poll_interval_s=60) as h:
        await h.watcher.wait_polls(1)
        body = json.dumps({"cluster": "prod-haproxy", "event": {"kind": "node", "node": "node2"}}).encode()
        before = h.watcher.polls
        for headers in (push_headers(body, "wrong"), push_headers(body, ts=int(time.time()) - 900)):
            async with h.http.post(ops_url(h, "/push"), data=body, headers=headers) as resp:
                assert resp.status == 401
        assert h.watcher.polls == before  # refused pushes wake nothing
        await h.demo.demo_command(("kill", "node2"))
        t0 = time.perf_counter()
        async with h.http.post(ops_url(h, "/push"), data=body, headers=push_headers(body)) as resp:
            assert resp.status == 202
        await h.slack.wait_for("chat.postMessage", lambda c: c.params.get("channel") == ALERTS, timeout=10)
        assert time.perf_counter() - t0 < 5  # the next timed poll is 60 s away


async def test_secrets_never_reach_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_bot(metrics_port=0, push_secret=PUSH, cluster={"approvers": ("U0BOSS",)}) as h:
        await h.slash("status prod-haproxy")
        await h.slack.wait_for("chat.update", timeout=10)
        await h.demo.demo_command(("fail", "virtual_ip_2"))
        await h.slash("cleanup prod-haproxy virtual_ip_2")
        await h.slack.wait_for("chat.postMessage", lambda c: "requested by" in json.dumps(c.params))
        assert h.demo.keys is not None
        key_text = h.demo.keys.client_key_path.read_text()
    logs = "\n".join(r.getMessage() for r in caplog.records) + caplog.text
    assert "slack " in logs and "crm_mon" in logs  # it did log the calls
    key_body = [line for line in key_text.splitlines() if line and "PRIVATE KEY" not in line]
    for secret in (h.slack.bot_token, SECRET, PUSH, *key_body):
        assert secret not in logs
