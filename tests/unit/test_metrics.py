"""Metrics (own registry, typed methods, exposition) and the /metrics, /healthz, /readyz routes."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from bot import ops_http
from bot.metrics import CONTENT_TYPE, OTHER, Metrics, label
from bot.ops_http import health_routes, metrics_routes, ops_routes, serve_ops, sqlite_writable
from bot.pacemaker.health import Severity
from bot.pacemaker.merge import NodeResult, merge
from bot.pacemaker.parse import parse
from bot.ssh import PoolStats
from tests.conftest import capture


def samples(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(m.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(m: Metrics, name: str, **labels: str) -> float | None:
    return samples(m).get((name, tuple(sorted(labels.items()))))


# ---------------------------------------------------------------- the Metrics object


def test_poll_and_node_series() -> None:
    m = Metrics()
    m.poll("prod", 0.42, ok=True, now=1700000000.0)
    m.poll("prod", 1.5, ok=False, now=1700000005.0)
    m.node_answer("prod", "node1", 0.03)
    m.ssh_error("prod", "node2", "unreachable")
    m.ssh_error("prod", "node2", "unreachable")
    assert value(m, "clusterbot_polls_total", cluster="prod", outcome="ok") == 1
    assert value(m, "clusterbot_polls_total", cluster="prod", outcome="partial") == 1
    assert value(m, "clusterbot_poll_duration_seconds_count", cluster="prod") == 2
    assert value(m, "clusterbot_poll_duration_seconds_sum", cluster="prod") == pytest.approx(1.92)
    assert value(m, "clusterbot_last_poll_timestamp_seconds", cluster="prod") == 1700000005.0
    assert value(m, "clusterbot_node_answer_duration_seconds_count", cluster="prod", node="node1") == 1
    assert value(m, "clusterbot_ssh_errors_total", cluster="prod", node="node2", kind="unreachable") == 2


def test_health_incidents_approvals_slack() -> None:
    m = Metrics()
    m.cluster_health("prod", Severity.CRITICAL, 2)
    m.cluster_health("dev", None, 3)
    m.incident_opened("prod", Severity.WARNING)
    m.incident_resolved("prod")
    m.approval_final("succeeded")
    m.slack_call("chat.postMessage", "ok")
    m.slack_call("chat.postMessage", "ratelimited")
    assert value(m, "clusterbot_cluster_severity", cluster="prod") == 3
    assert value(m, "clusterbot_cluster_severity", cluster="dev") == 0
    assert value(m, "clusterbot_cluster_reachable_nodes", cluster="prod") == 2
    assert value(m, "clusterbot_incidents_opened_total", cluster="prod", severity="warning") == 1
    assert value(m, "clusterbot_incidents_resolved_total", cluster="prod") == 1
    assert value(m, "clusterbot_approvals_final_total", state="succeeded") == 1
    assert value(m, "clusterbot_slack_calls_total", method="chat.postMessage", result="ratelimited") == 1


def test_record_poll_from_a_real_report() -> None:
    view = parse(capture("a_healthy", "node1"))
    report = merge("prod", [NodeResult("node1", view=view, duration_s=0.05),
                            NodeResult("node3", error="connection refused", error_kind="unreachable",
                                       duration_s=3.0)], collected_at=datetime.now(UTC))
    m = Metrics()
    m.record_poll(report, 3.1)
    assert value(m, "clusterbot_polls_total", cluster="prod", outcome="partial") == 1
    assert value(m, "clusterbot_cluster_reachable_nodes", cluster="prod") == 1
    assert value(m, "clusterbot_cluster_severity", cluster="prod") == int(report.severity or 0)
    assert value(m, "clusterbot_ssh_errors_total", cluster="prod", node="node3", kind="unreachable") == 1
    assert value(m, "clusterbot_node_answer_duration_seconds_count", cluster="prod", node="node1") == 1
    # The collector hands back the very same node result when a node was not asked again (or
    # said the same): its answer time was observed once and is not observed again.
    again = merge("prod", [report.results[0], NodeResult("node3", error="connection refused",
                                                         error_kind="unreachable", duration_s=3.0)])
    m.record_poll(again, 3.0)
    assert value(m, "clusterbot_node_answer_duration_seconds_count", cluster="prod", node="node1") == 1
    assert value(m, "clusterbot_node_answer_duration_seconds_count", cluster="prod", node="node3") == 2


def test_every_series_is_prefixed_and_the_global_registry_is_untouched() -> None:
    before = {f.name for f in REGISTRY.collect()}
    m, other = Metrics(), Metrics()  # two registries: no "Duplicated timeseries" error
    m.poll("c", 0.1, ok=True)
    other.poll("c", 0.1, ok=True)
    names = {f.name for f in text_string_to_metric_families(m.render().decode())}
    assert names and all(n.startswith("clusterbot_") for n in names)
    assert {f.name for f in REGISTRY.collect()} == before


def test_label_values_are_bounded() -> None:
    assert label("prod-haproxy01.example.com") == "prod-haproxy01.example.com"
    assert label("x" * 64) == OTHER and label("a b") == OTHER and label("") == OTHER
    m = Metrics()
    m.slack_call("chat.postMessage", "weird error {with} \"quotes\"\n")
    assert value(m, "clusterbot_slack_calls_total", method="chat.postMessage", result=OTHER) == 1


def test_pool_stats_are_read_at_scrape_time() -> None:
    stats = PoolStats()
    m = Metrics()
    m.watch_pool(lambda: stats)
    stats.commands_run = 7
    stats.connect_failures = 2
    assert value(m, "clusterbot_ssh_commands_run_total") == 7
    assert value(m, "clusterbot_ssh_connect_failures_total") == 2


def test_content_type_is_the_classic_text_format() -> None:
    assert Metrics().content_type == CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"


# ---------------------------------------------------------------- the routes, over loopback

Get = Callable[..., Awaitable[tuple[int, Any, str]]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[Get]]]:
    servers = []

    async def start(routes: list[Any]) -> Get:
        ops = await serve_ops("127.0.0.1", 0, routes)
        servers.append(ops)

        async def get(path: str) -> tuple[int, Any, str]:
            async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{ops.port}{path}") as r:
                body = await r.text()
                return r.status, (await r.json()) if r.content_type == "application/json" else body, \
                    r.headers["Content-Type"]

        return get

    yield start
    for ops in servers:
        await ops.close()


@pytest.mark.integration
async def test_metrics_route(serve: Any) -> None:
    m = Metrics()
    m.poll("prod", 0.2, ok=True)
    get = await serve(metrics_routes(m))
    status, body, ctype = await get("/metrics")
    assert status == 200 and ctype == CONTENT_TYPE
    assert 'clusterbot_polls_total{cluster="prod",outcome="ok"} 1.0' in body


@pytest.mark.integration
async def test_liveness_and_readiness(serve: Any) -> None:
    slack = {"up": True}

    async def connected() -> bool:  # Socket Mode's client.is_connected() is a coroutine
        return slack["up"]

    get = await serve(health_routes(slack_connected=connected, store_writable=lambda: True))
    assert (await get("/healthz"))[:2] == (200, {"status": "ok"})
    assert (await get("/readyz"))[:2] == (200, {"status": "ready", "checks": {"slack": True, "store": True}})
    slack["up"] = False
    assert (await get("/healthz"))[0] == 200  # liveness does not care about Slack
    status, body, _ = await get("/healthz?ready=1")
    assert status == 503 and body["checks"] == {"slack": False, "store": True}
    assert (await get("/readyz"))[0] == 503


@pytest.mark.integration
async def test_a_failing_or_hanging_check_is_not_ready(serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ops_http, "CHECK_TIMEOUT_S", 0.2)

    def broken() -> bool:
        raise sqlite3.OperationalError("disk I/O error")

    async def hangs() -> bool:
        await asyncio.sleep(30)
        return True

    get = await serve(health_routes(slack_connected=hangs, store_writable=broken))
    status, body, _ = await get("/readyz")
    assert status == 503 and body["checks"] == {"slack": False, "store": False}


@pytest.mark.integration
async def test_ops_routes_mount_only_what_is_wired(serve: Any) -> None:
    get = await serve(ops_routes())
    assert (await get("/healthz"))[0] == 200
    assert (await get("/metrics"))[0] == 404
    get = await serve(ops_routes(metrics=Metrics(), push_secret="s", wake=lambda c: True))
    assert (await get("/metrics"))[0] == 200
    assert (await get("/push"))[0] == 405  # mounted, POST only


# ---------------------------------------------------------------- the store probe


async def test_sqlite_probe(tmp_path: Path) -> None:
    db = tmp_path / "clusterbot.sqlite3"
    sqlite3.connect(db).close()
    assert await sqlite_writable(db)() is True
    missing = tmp_path / "gone.sqlite3"
    with pytest.raises(sqlite3.OperationalError):
        await sqlite_writable(missing)()
    assert not missing.exists()  # mode=rw: the probe never creates a database


async def test_sqlite_probe_fails_while_another_writer_holds_the_lock(tmp_path: Path) -> None:
    db = tmp_path / "clusterbot.sqlite3"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            await sqlite_writable(db, busy_timeout_s=0.05)()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert await sqlite_writable(db)() is True
