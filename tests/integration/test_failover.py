"""Two real `clusterbot run` replicas on one state: one leader watches and posts, the other takes
over when it dies or stops, and no alert is lost or doubled (issue 15)."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
from pathlib import Path

from bot.demo.cluster import DemoCluster
from bot.ops import check_state
from bot.settings import Settings
from bot.store import SCHEMA_VERSION
from tests.fakes.nodes import fake_cluster
from tests.fakes.slack import Call, FakeSlack
from tests.integration.replicas import WAIT_S, Replicas, replicas
from tests.integration.test_cli_first_hour import cli

CRASH = "c_node3_crashed"
BOSS = "U0BOSS"


async def incident_then_kill_leader(group: Replicas) -> None:
    """A leader posts an incident, is SIGKILLed; the cluster recovers meanwhile; the follower
    takes over and finishes the incident in its thread, without posting it again."""
    a = await group.start("a")
    await a.leading()
    b = await group.start("b")
    group.cluster.set_scenario(CRASH)
    root = await group.wait_post(lambda c: c.params.get("channel") == "C0ALERTS"
                                 and not c.params.get("thread_ts"))
    # Killed once the root is posted and recorded: a kill between the two is the one duplicate
    # a crash may cost (measured by the failover bench).
    await a.wait_log(lambda r: r.get("kind") == "root" and "delivered" in str(r.get("msg")))
    a.kill()
    group.cluster.set_scenario("a_healthy")
    epoch = await b.leading()
    assert epoch == int(a.said("leadership gained")[0]["epoch"]) + 1
    thread = root.response["ts"]
    await group.wait_post(lambda c: c.params.get("thread_ts") == thread
                          and "node3 is back ONLINE" in str(c.params.get("text")))
    await group.slack.wait_for("chat.update", lambda c: c.params.get("ts") == thread
                               and "resolved" in str(c.params.get("text")).lower(), timeout=WAIT_S)
    assert [c.response["ts"] for c in group.roots()] == [thread]  # continued, never re-posted
    assert len(b.said("leadership gained")) == 1 and not b.said("leadership lost")
    assert await b.stop() == 0


async def test_sqlite_follower_takes_over_a_killed_leaders_incident(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path) as fc, FakeSlack() as slack, replicas(slack, fc, tmp_path) as group:
        await incident_then_kill_leader(group)


async def test_sqlite_sigterm_hands_over_without_a_duplicate(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path) as fc, FakeSlack() as slack, replicas(slack, fc, tmp_path) as group:
        a = await group.start("a")
        await a.leading()
        b = await group.start("b")
        assert not b.said("leadership gained")  # the lock is taken: b follows
        fc.set_scenario(CRASH)
        root = await group.wait_post(lambda c: not c.params.get("thread_ts"))
        assert await a.stop(signal.SIGTERM) == 0
        assert a.said("planned handover")
        await b.leading()
        fc.set_scenario("a_healthy")
        thread = root.response["ts"]
        await group.slack.wait_for("chat.update", lambda c: c.params.get("ts") == thread
                                   and "resolved" in str(c.params.get("text")).lower(), timeout=WAIT_S)
        texts = [str(c.params.get("text")) for c in group.posts()]
        assert len(texts) == len(set(texts)), texts  # nothing said twice
        assert len(group.roots()) == 1


async def test_sqlite_replicas_show_their_roles_on_readyz_and_metrics(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path) as fc, FakeSlack() as slack, replicas(slack, fc, tmp_path) as group:
        a = await group.start("a")
        epoch = await a.leading()
        b = await group.start("b")
        shown = {}
        for r in (a, b):
            status, body = await r.ops("/readyz")
            assert status == 200, body
            shown[r.name] = json.loads(body)
            _, metrics = await r.ops("/metrics")
            assert f"clusterbot_leader {1.0 if r is a else 0.0}" in metrics
        assert (shown["a"]["role"], shown["a"]["epoch"], shown["a"]["database"]) == ("leader", epoch, True)
        assert (shown["b"]["role"], shown["b"]["epoch"], shown["b"]["database"]) == ("follower", None, True)
        assert shown["a"]["checks"]["delivery"] and shown["b"]["checks"]["delivery"]


async def test_an_approval_clicked_through_both_replicas_runs_once(tmp_path: Path) -> None:
    await approval_race(tmp_path, None)


async def approval_race(tmp_path: Path, store: str | None) -> None:
    """A fix requested through one replica, its approval clicked through both at once."""
    async with FakeSlack() as slack, DemoCluster() as demo, \
            replicas(slack, demo, tmp_path, store=store, approvers=[BOSS]) as group:
        await demo.demo_command(("fail", "virtual_ip_2"))
        a = await group.start("a")
        await a.leading()
        b = await group.start("b")
        assert await b.slash(slack, "cleanup prod-haproxy virtual_ip_2", "U0USER") == 200
        root = await group.slack.wait_for("chat.postMessage", lambda c: "requested by" in _text(c),
                                          timeout=WAIT_S)
        request = next(e["value"] for block in root.params["blocks"] if block["type"] == "actions"
                       for e in block["elements"] if e.get("action_id") == "clusterbot:approve")
        clicks = await asyncio.gather(*(r.click(slack, "clusterbot:approve", request, BOSS)
                                        for r in (a, b, a, b)))
        assert clicks == [200] * 4
        await group.slack.wait_for("chat.postMessage", lambda c: "verified" in _text(c), timeout=WAIT_S)
        cleanups = [c for s in demo.servers.values() for c in s.commands if "pcs resource cleanup" in c]
        assert cleanups == ["sudo -n pcs resource cleanup virtual_ip_2"]


def _text(call: Call) -> str:
    return json.dumps(call.params.get("blocks", [])) + str(call.params.get("text", ""))


async def test_check_config_connect_reports_the_state_schema_and_whether_a_replica_leads(
        tmp_path: Path) -> None:
    async with fake_cluster(tmp_path) as fc, FakeSlack() as slack, replicas(slack, fc, tmp_path) as group:
        def state() -> str:
            out = cli("check-config", "--connect", "--config", str(group.config))
            return next(line for line in out.stdout.splitlines() if " state: " in line)

        fresh = await asyncio.to_thread(state)
        a = await group.start("a")
        await a.leading()
        leading = await asyncio.to_thread(state)
        await a.stop()
        stopped = await asyncio.to_thread(state)
    db = tmp_path / "state" / "clusterbot.sqlite3"
    assert fresh == f"  OK  state: SQLite {db}: no state yet: `run` creates it (schema version " \
        f"{SCHEMA_VERSION})"
    assert leading == f"  OK  state: SQLite {db}: schema version {SCHEMA_VERSION}; a replica leads now"
    assert stopped == f"  OK  state: SQLite {db}: schema version {SCHEMA_VERSION}; no replica leads now"


def test_check_config_connect_refuses_a_state_from_a_newer_release(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    with sqlite3.connect(tmp_path / "state" / "clusterbot.sqlite3") as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    ok, said = check_state(Settings(state_dir=tmp_path / "state"))
    assert not ok and said.endswith(f"schema version {SCHEMA_VERSION + 1} is newer than this release's "
                                    f"{SCHEMA_VERSION}: upgrade clusterbot, or restore the backup taken "
                                    "before the upgrade")
