"""The Corosync layer end to end: fake nodes over real loopback SSH answer `corosync-quorumtool -s`
with the real capture of their scenario (and its exit code) and `corosync-cfgtool -s` with the
lab capture of the same situation; the collector, merge, renderer and watcher do the rest."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.collect import Ask, Collector
from bot.pacemaker.health import Severity
from bot.pacemaker.merge import ClusterReport
from bot.render.json import report_json
from bot.render.status import status_doc
from bot.render.text import to_text
from bot.ssh import SshPool
from bot.store import AsyncStore
from bot.watcher import Watcher
from tests.fakes.nodes import FakeCluster, fake_cluster


async def collect(fc: FakeCluster) -> ClusterReport:
    async with SshPool() as pool:
        return await Collector(pool, fc.settings).collect(fc.config)


def by_code(report: ClusterReport, code: str) -> list[Any]:
    return [f for f in report.findings if f.code == code]


def section(text: str, title: str) -> list[str]:
    """The lines of one titled section of the text rendering."""
    lines = text.splitlines()
    start = lines.index(title) + 1
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("  ")), len(lines))
    return lines[start:end]


# ---------------------------------------------------------------- Pacemaker clusters


async def test_healthy_corosync_section_is_one_line(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path) as fc:
        report = await collect(fc)
    assert report.healthy and report.corosync is not None and report.corosync.quorate is True
    assert report.corosync.members == ("node1", "node2", "node3")
    assert all(r.corosync is not None and r.corosync.quorum and r.corosync.links for r in report.results)
    text = to_text(status_doc(report, fc.config.expectations))
    assert section(text, "Corosync") == [
        "  🟢 quorate · 3/3 votes (2 needed) · members: node1, node2, node3 · 1 link connected"]
    assert text.index("Nodes") < text.index("Corosync") < text.index("Clones")


async def test_node3_crashed_votes_and_corosync_down(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path, "c_node3_crashed") as fc:
        report = await collect(fc)
        commands = fc.nodes["node3"].server.commands  # type: ignore[union-attr]
    [votes] = by_code(report, "corosync_votes_low")
    assert votes.severity is Severity.WARNING
    assert "2 of 3 expected votes" in votes.message and "not in the membership: node3" in votes.message
    node3 = report.result("node3")
    assert node3 is not None and node3.view is not None and node3.corosync_down
    assert "Cannot initialize CMAP service" in (node3.corosync_error or "")
    # Pacemaker's offline finding already says it: no second finding for corosync being down.
    assert {f.code for f in report.findings if f.subject == "node3"} == {"node_offline"}
    text = to_text(status_doc(report, fc.config.expectations))
    lines = section(text, "Corosync")
    assert lines[0].startswith("  🟡 quorate · 2/3 votes (2 needed) · members: node1, node2")
    assert "  ❌ node3: corosync is not running (Cannot initialize CMAP service)" in lines
    assert any("link 0 to node3: disconnected (not a member)" in line for line in lines)
    assert "sudo -n corosync-quorumtool -s" in commands and "sudo -n corosync-cfgtool -s" in commands


async def test_two_nodes_down_corosync_not_quorate_is_critical(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path, "d_two_nodes_down") as fc:
        report = await collect(fc)
    # node1's quorumtool exited 2 (not quorate): its full view is still read.
    node1 = report.result("node1")
    assert node1 is not None and node1.corosync is not None and node1.corosync.quorum is not None
    [f] = by_code(report, "corosync_not_quorate")
    assert f.severity is Severity.CRITICAL and f.subject == "node1"
    assert "1 of 3 expected votes, 2 needed" in f.message
    assert report.corosync is not None and report.corosync.quorate is False
    assert "🔴 NOT quorate · 1/3 votes" in to_text(status_doc(report, fc.config.expectations))


async def test_corosync_tools_refused_keep_the_pacemaker_answer(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path) as fc:
        for node in fc.nodes.values():
            node.mode = "corosync_sudo_refused"
        report = await collect(fc)
    assert report.healthy and all(r.ok for r in report.results)
    assert all(r.corosync_error_kind == "sudo" for r in report.results)
    text = to_text(status_doc(report, fc.config.expectations))
    assert "no node gave a Corosync quorum view" in text and "sudo refused" in text


# ---------------------------------------------------------------- corosync-only clusters


async def test_corosync_only_cluster_healthy(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path, kind="corosync", name="pve") as fc:
        report = await collect(fc)
        commands = [c for s in fc.servers() for c in s.commands]
    assert report.kind == "corosync" and report.reference is None
    assert report.has_view and report.healthy and not report.findings
    assert all(r.ok and r.view is None for r in report.results)
    assert not any("crm_mon" in c for c in commands)
    assert commands.count("sudo -n systemctl is-active corosync") == 3
    text = to_text(status_doc(report))
    assert text.splitlines()[0] == "🟢 pve is healthy · Corosync quorate · 3/3 members · 3/3 votes"
    assert "Virtual IPs" not in text and "Nodes" not in text and "Corosync\n" not in text
    assert section(text, "Members")[1:] == [
        "  ✅ node1 · nodeid 1 · 1 vote (local)", "  ✅ node2 · nodeid 2 · 1 vote (local)",
        "  ✅ node3 · nodeid 3 · 1 vote (local)"]
    assert section(text, "Links") == ["  ✅ 1 link connected"]
    assert "reference: node1's view · 3/3 nodes answered · Corosync knet" in text


async def test_corosync_only_cluster_node3_crashed(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path, "c_node3_crashed", kind="corosync", name="pve") as fc:
        report = await collect(fc)
    assert report.has_view and not report.healthy
    assert {(f.code, f.subject) for f in report.findings} == {
        ("corosync_votes_low", "cluster"), ("corosync_down", "node3")}
    down = by_code(report, "corosync_down")[0]
    assert str(down.remedy) == "start-corosync node3"  # never `pcs cluster start`: no Pacemaker here
    node3 = report.result("node3")
    assert node3 is not None and node3.answered and not node3.ok and node3.error is None
    text = to_text(status_doc(report))
    assert text.splitlines()[0].startswith("🟡 pve: 2 warnings · ")
    assert ("  ❌ node3 · not a member · corosync is not running (Cannot initialize CMAP service)"
            in section(text, "Members"))


async def test_corosync_only_cluster_without_quorum(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path, "d_two_nodes_down", kind="corosync", name="pve") as fc:
        report = await collect(fc)
    assert report.has_view and report.severity is Severity.CRITICAL
    assert report.findings[0].code == "corosync_not_quorate"
    assert "Corosync NO QUORUM · 1/3 members · 1/3 votes" in to_text(status_doc(report)).splitlines()[0]


async def test_corosync_only_unreachable_node(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path, kind="corosync", name="pve") as fc:
        await fc.nodes["node2"].server.set_reachable(False)  # type: ignore[union-attr]
        report = await collect(fc)
    node2 = report.result("node2")
    assert node2 is not None and not node2.answered and node2.error_kind in ("unreachable", "timeout")
    assert report.unreachable == (node2,)
    [f] = by_code(report, "node_unreachable")
    # Corosync on node1 and node3 still counts node2: our SSH path is the problem, not the node.
    assert f.severity is Severity.WARNING and "although Corosync counts it as a member" in f.message
    assert report.corosync is not None and report.corosync.members == ("node1", "node2", "node3")


# ---------------------------------------------------------------- alerts


async def roots(store: AsyncStore) -> list[str]:
    now = datetime(2100, 1, 1, tzinfo=UTC)
    return [json.dumps(i.payload["doc"]) for i in await store.due(now, limit=100) if i.kind == "root"]


async def watch(fc: FakeCluster, tmp_path: Path, *scenarios: str) -> list[list[str]]:
    """Poll once per scenario; the root alerts that each poll added."""
    seen: list[list[str]] = []
    store = await AsyncStore.open(tmp_path / "state.db")
    try:
        async with SshPool() as pool:
            watcher = Watcher(fc.settings, Collector(pool, fc.settings).collect, store,
                              lambda: datetime.now(UTC))
            for scenario in scenarios:
                before = len(await roots(store))
                fc.set_scenario(scenario)
                await watcher.poll(fc.config)
                seen.append((await roots(store))[before:])
    finally:
        await store.close()
    return seen


async def test_watcher_member_lost_for_a_corosync_only_cluster(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path, kind="corosync", name="pve") as fc:
        seen = await watch(fc, tmp_path, "a_healthy", "c_node3_crashed", "c_node3_crashed")
    assert seen[0] == [] and seen[2] == []  # healthy at start: nothing; no repeat
    [root] = seen[1]
    assert "node3 left the Corosync membership: corosync is not running there" in root
    assert "2 of 3 votes, 2 needed" in root and "/cluster start-corosync pve node3" in root


async def test_watcher_corosync_only_quorum_lost(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path, kind="corosync", name="pve") as fc:
        seen = await watch(fc, tmp_path, "a_healthy", "d_two_nodes_down")
    [root] = seen[1]  # quorum is the cause: the members it lost are its evidence
    assert "Corosync quorum LOST: partition [node1] has 1 of 3 votes, 2 needed" in root
    assert "node2 left the Corosync membership" in root and "node3 left the Corosync membership" in root


async def test_watcher_pacemaker_crash_is_one_incident(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path) as fc:
        seen = await watch(fc, tmp_path, "a_healthy", "c_node3_crashed")
    [root] = seen[1]
    assert "node3 went OFFLINE" in root and "node3 left the Corosync membership" in root
    assert "incident node:node3" in root


async def test_light_polls_of_a_corosync_only_cluster_never_ask_crm_mon(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path, kind="corosync", name="pve") as fc, SshPool() as pool:
        collector = Collector(pool, fc.settings)
        first = await collector.collect(fc.config, ask=Ask.TURN)
        polls = [await collector.collect(fc.config, ask=Ask.TURN) for _ in range(6)]
        commands = [c for s in fc.servers() for c in s.commands]
        assert all(p is first for p in polls)  # a light poll: one node's quorum, links, daemons
        assert not any("crm_mon" in c for c in commands)
        assert sum("quorumtool" in c for c in commands) == 3 + 6
        fc.set_scenario("c_node3_crashed")
        changed = await collector.collect(fc.config, ask=Ask.TURN)  # every node's answer changed
    assert ("corosync_down", "node3") in {f.key for f in changed.findings}


async def test_corosync_only_garbage_quorum_answer_is_no_answer(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path, kind="corosync", name="pve") as fc:
        fc.config = fc.config.model_copy(update={"commands": fc.config.commands.model_copy(
            update={"quorum": ("pvecm", "status")})})
        report = await collect(fc)
    # The fake nodes have no pvecm: every node's answer is unusable, and said so.
    assert not report.has_view and report.findings[0].code == "no_view"
    assert {(r.error, r.error_kind) for r in report.results} == {("pvecm not found", "not_found")}
    assert all(not r.answered for r in report.results)


async def test_json_carries_the_corosync_layer(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path, scenario="c_node3_crashed") as fc:
        data = json.loads(json.dumps(report_json(await collect(fc))))
    assert data["kind"] == "pacemaker"
    c = data["corosync"]
    assert c["quorate"] is True and c["members"] == ["node1", "node2"]
    assert (c["expected_votes"], c["total_votes"], c["quorum_votes"]) == (3, 2, 2)
    views = {v["node"]: v for v in data["views"]}
    assert views["node1"]["corosync"]["members"] == ["node1", "node2"]
    assert views["node1"]["corosync"]["quorate"] is True
    assert views["node1"]["details_at"] is not None
    assert views["node3"]["corosync"] is None and "not running" in views["node3"]["corosync_error"]


async def test_json_of_a_corosync_only_cluster_has_its_quorum(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path, kind="corosync") as fc:
        data = report_json(await collect(fc))
    assert data["kind"] == "corosync" and data["dc"] is None
    assert data["quorum"] is True and data["corosync"]["members"] == ["node1", "node2", "node3"]
