"""The push path end to end: the real alert agent (bash, curl) against the real /push route.

The agent runs exactly as Pacemaker would run it: CRM_alert_* variables in a bare environment.
The route is served on 127.0.0.1 (port 0) by serve_ops; `wake` is a recording fake.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.metrics import Metrics
from bot.ops_http import (
    MAX_PUSH_BYTES,
    MAX_SKEW_S,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    push_routes,
    serve_ops,
    signature,
)

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).parents[2] / "deploy" / "alert-agent" / "clusterbot-alert.sh"
SECRET = "0f3c9a1b2d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8"
CLUSTER = "prod-haproxy"
NEEDS = ("bash", "curl", "sha256sum", "od")
TRICKY_DESC = 'lost "node" \\ back\nslash\ttab\x01 é $(touch PWNED) `touch PWNED2` %s &'


@dataclass
class PushServer:
    url: str
    known: set[str]
    woken: list[str] = field(default_factory=list)
    seen: list[tuple[bytes, int]] = field(default_factory=list)  # (body, status answered)

    def wake(self, cluster: str) -> bool:
        if cluster not in self.known:
            return False
        self.woken.append(cluster)
        return True

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for body, status in self.seen if status == 202]

    def statuses(self) -> list[int]:
        return [status for _, status in self.seen]


def _recording(server: PushServer, clock: Callable[[], float], metrics: Metrics) -> list[web.RouteDef]:
    (real,) = push_routes(secret=SECRET, wake=server.wake, metrics=metrics, clock=clock)

    async def handler(request: web.Request) -> web.StreamResponse:
        body = await request.read()  # cached: the real handler reads the same bytes
        response = await real.handler(request)  # type: ignore[call-arg]
        server.seen.append((body, response.status))
        return response

    return [web.post("/push", handler)]


@pytest.fixture
def skew() -> list[float]:
    """Seconds added to the server's clock (to make the agent's timestamp stale)."""
    return [0.0]


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def push(skew: list[float], metrics: Metrics) -> AsyncIterator[PushServer]:
    server = PushServer(url="", known={CLUSTER})
    ops = await serve_ops("127.0.0.1", 0, _recording(server, lambda: time.time() + skew[0], metrics))
    assert ops.port != 0
    server.url = f"http://127.0.0.1:{ops.port}/push"
    try:
        yield server
    finally:
        await ops.close()


@dataclass
class Agent:
    returncode: int
    stderr: str
    seconds: float


@pytest.fixture
def agent(tmp_path: Path) -> Callable[..., Any]:
    missing = [tool for tool in NEEDS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"the alert agent needs {', '.join(missing)} (Debian: apt-get install curl)")
    secret_file = tmp_path / "push.secret"
    secret_file.write_text(SECRET + "\n")
    secret_file.chmod(0o600)

    async def run(url: str, *, kind: str = "node", config: str | None = None,
                  **env: str) -> Agent:
        conf = tmp_path / "alert.conf"
        conf.write_text(config if config is not None else
                        f"# written by the test\nCLUSTERBOT_CLUSTER={CLUSTER}\n"
                        f"CLUSTERBOT_SECRET_FILE='{secret_file}'\n")
        base = {
            "PATH": "/usr/bin:/bin",  # what Pacemaker gives agents, roughly: nothing of ours
            "CLUSTERBOT_ALERT_CONFIG": str(conf),
            "CRM_alert_version": "2.1.5", "CRM_alert_recipient": url, "CRM_alert_kind": kind,
            "CRM_alert_node": "node2", "CRM_alert_nodeid": "2", "CRM_alert_desc": TRICKY_DESC,
            "CRM_alert_timestamp": "12:00:00.123456", "CRM_alert_timestamp_epoch": "1700000000",
            "CRM_alert_node_sequence": "17",
        }
        started = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            "bash", str(SCRIPT), env={**base, **env}, cwd=tmp_path,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(proc.communicate(), timeout=30)
        assert proc.returncode is not None
        return Agent(proc.returncode, err.decode(errors="replace"), time.perf_counter() - started)

    return run


# ---------------------------------------------------------------- the real agent


async def test_agent_push_wakes_the_cluster(push: PushServer, agent: Any, tmp_path: Path,
                                            metrics: Metrics) -> None:
    done = await agent(push.url)
    assert done.returncode == 0 and done.stderr == ""
    assert push.woken == [CLUSTER] and push.statuses() == [202]
    (doc,) = push.events()
    assert doc["cluster"] == CLUSTER and doc["agent"] == "clusterbot-alert/1"
    assert doc["event"] == {
        "kind": "node", "node": "node2", "nodeid": "2", "desc": TRICKY_DESC,
        "timestamp": "12:00:00.123456", "timestamp_epoch": "1700000000", "node_sequence": "17",
        "version": "2.1.5"}
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "PWNED2").exists()
    assert b'clusterbot_push_requests_total{outcome="accepted"} 1.0' in metrics.render()


async def test_resource_event_fields(push: PushServer, agent: Any) -> None:
    done = await agent(push.url, kind="resource", CRM_alert_rsc="virtual_ip_2", CRM_alert_task="monitor",
                       CRM_alert_rc="7", CRM_alert_target_rc="0", CRM_alert_status="0",
                       CRM_alert_interval="10000")
    assert done.returncode == 0 and push.woken == [CLUSTER]
    event = push.events()[0]["event"]
    assert (event["rsc"], event["task"], event["rc"], event["target_rc"]) == ("virtual_ip_2", "monitor",
                                                                              "7", "0")


async def test_wrong_secret_is_refused_and_wakes_nothing(push: PushServer, agent: Any,
                                                         tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.secret"
    wrong.write_text("not-the-secret\n")
    done = await agent(push.url, CLUSTERBOT_SECRET_FILE=str(wrong))  # environment beats the file
    assert done.returncode == 0  # never an error to Pacemaker
    assert push.statuses() == [401] and push.woken == []
    assert "curl exit 22" in done.stderr and "not-the-secret" not in done.stderr


async def test_stale_timestamp_is_refused(push: PushServer, agent: Any, skew: list[float]) -> None:
    skew[0] = MAX_SKEW_S + 5  # the bot's clock is ahead: the agent's timestamp looks old
    done = await agent(push.url)
    assert done.returncode == 0 and push.statuses() == [401] and push.woken == []


async def test_unknown_cluster_is_404(push: PushServer, agent: Any, tmp_path: Path) -> None:
    done = await agent(push.url, CLUSTERBOT_CLUSTER="staging")
    assert done.returncode == 0 and push.statuses() == [404] and push.woken == []
    assert "curl exit 22" in done.stderr


async def test_attribute_alerts_are_not_forwarded(push: PushServer, agent: Any) -> None:
    done = await agent(push.url, kind="attribute", CRM_alert_attribute_name="master-db")
    assert done.returncode == 0 and done.stderr == "" and push.seen == []


async def test_kinds_are_configurable(push: PushServer, agent: Any) -> None:
    done = await agent(push.url, kind="fencing", CLUSTERBOT_KINDS="node")
    assert done.returncode == 0 and push.seen == []


async def test_without_a_cluster_name_nothing_is_sent(push: PushServer, agent: Any) -> None:
    done = await agent(push.url, config="")
    assert done.returncode == 0 and push.seen == []
    assert "CLUSTERBOT_CLUSTER" in done.stderr


async def test_config_values_are_never_executed(push: PushServer, agent: Any, tmp_path: Path) -> None:
    hostile = ("CLUSTERBOT_CLUSTER=$(touch PWNED)\nCLUSTERBOT_URL=`touch PWNED2`\n"
               "PATH=/tmp/evil\nCLUSTERBOT_SECRET_FILE=/nonexistent; touch PWNED3\n")
    done = await agent(push.url, config=hostile)
    assert done.returncode == 0 and push.seen == []
    assert not any((tmp_path / name).exists() for name in ("PWNED", "PWNED2", "PWNED3"))
    assert "unknown key PATH" in done.stderr


async def test_url_from_config_when_the_recipient_is_not_one(push: PushServer, agent: Any,
                                                             tmp_path: Path) -> None:
    done = await agent("clusterbot", CLUSTERBOT_URL=push.url)  # a recipient like value=clusterbot
    assert done.returncode == 0 and push.woken == [CLUSTER]


async def test_missing_secret_file_sends_nothing(push: PushServer, agent: Any, tmp_path: Path) -> None:
    done = await agent(push.url, CLUSTERBOT_SECRET_FILE=str(tmp_path / "absent"))
    assert done.returncode == 0 and push.seen == [] and "push secret" in done.stderr


async def test_unreachable_bot_costs_seconds_not_a_hang(agent: Any) -> None:
    done = await agent(f"http://127.0.0.1:{closed_port()}/push", CLUSTERBOT_TIMEOUT="2")
    assert done.returncode == 0 and "curl exit" in done.stderr and done.seconds < 10


def closed_port() -> int:
    """A loopback port with nothing listening (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- the route, signed by Python


def signed(body: bytes, *, ts: int | None = None, secret: str = SECRET) -> dict[str, str]:
    stamp = str(int(time.time()) if ts is None else ts)
    return {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: signature(secret, stamp, body),
            "Content-Type": "application/json"}


GOOD = json.dumps({"cluster": CLUSTER, "event": {"kind": "node"}}).encode()


@pytest.mark.parametrize(("body", "headers", "status"), [
    pytest.param(GOOD, lambda b: signed(b), 202, id="accepted"),
    pytest.param(GOOD, lambda b: {}, 401, id="no-headers"),
    pytest.param(GOOD, lambda b: {**signed(b), SIGNATURE_HEADER: "v1=" + "0" * 64}, 401, id="bad-sig"),
    pytest.param(GOOD, lambda b: signed(b, secret="other"), 401, id="other-secret"),
    pytest.param(GOOD, lambda b: {**signed(b), SIGNATURE_HEADER: "v0=abc"}, 401, id="bad-version"),
    pytest.param(GOOD, lambda b: {**signed(b), TIMESTAMP_HEADER: "12ab"}, 401, id="bad-timestamp"),
    pytest.param(GOOD, lambda b: signed(b, ts=int(time.time()) - MAX_SKEW_S - 2), 401, id="stale"),
    pytest.param(GOOD, lambda b: signed(b, ts=int(time.time()) + MAX_SKEW_S + 2), 401, id="future"),
    pytest.param(GOOD, lambda b: signed(b, ts=int(time.time()) - MAX_SKEW_S + 5), 202, id="old-but-ok"),
    pytest.param(GOOD, lambda b: signed(GOOD.replace(b"prod", b"dev!")), 401, id="tampered"),
    pytest.param(b"{not json", lambda b: signed(b), 400, id="not-json"),
    pytest.param(b"[]", lambda b: signed(b), 400, id="not-object"),
    pytest.param(b'{"cluster": "a b"}', lambda b: signed(b), 400, id="bad-name"),
    pytest.param(b'{"cluster": "prod-haproxy", "event": 3}', lambda b: signed(b), 400, id="bad-event"),
    pytest.param(b'{"cluster": "nope"}', lambda b: signed(b), 404, id="unknown-cluster"),
    pytest.param(b" " * (MAX_PUSH_BYTES + 1), lambda b: signed(b), 413, id="too-large"),
])
async def test_route(push: PushServer, body: bytes, headers: Callable[[bytes], dict[str, str]],
                     status: int) -> None:
    async with aiohttp.ClientSession() as http, http.post(push.url, data=body, headers=headers(body)) as r:
        assert r.status == status, await r.text()
    assert push.woken == ([CLUSTER] if status == 202 else [])


async def test_only_post() -> None:
    ops = await serve_ops("127.0.0.1", 0, push_routes(secret=SECRET, wake=lambda c: True))
    try:
        async with aiohttp.ClientSession() as http, \
                http.get(f"http://127.0.0.1:{ops.port}/push") as r:
            assert r.status == 405
    finally:
        await ops.close()


def test_an_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        push_routes(secret="", wake=lambda c: True)
