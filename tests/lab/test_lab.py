"""The bot against the real lab cluster: break it with deploy/lab/nodectl.sh, observe it with the
bot's own collector over real SSH (and its watcher and Slack app), heal it.

Every test starts from the healthy cluster (conftest.healthy): virtual_ip_N on nodeN,
loadbalancer-clone on all three, quorum, no failures.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from bot.collect import Collector
from bot.pacemaker.health import Severity
from bot.pacemaker.merge import ClusterReport
from bot.runtime import running
from bot.settings import ClusterConfig
from bot.watcher import Watcher
from tests.lab import labkit
from tests.lab.harness import CHANNEL, RecordingPoster, call_text, lab_bot
from tests.lab.labkit import CLONE, DAEMONS_UP, NODES, VIPS, anodectl, finding, keys, report_until, where

pytestmark = pytest.mark.lab
SURVIVORS = ("node1", "node2")


def healthy(report: ClusterReport) -> bool:
    return report.healthy and labkit.vips_home(report)


def offline_in_view(report: ClusterReport, node: str) -> bool:
    view = report.reference
    state = view.node(node) if view is not None else None
    return state is not None and not state.online


# ---------------------------------------------------------------- healthy


async def test_healthy_cluster_as_the_bot_sees_it(collector: Collector, cluster: ClusterConfig) -> None:
    report = await report_until(collector, cluster, healthy, "healthy")
    view = report.reference
    assert view is not None and view.quorate is True
    assert view.dc in NODES
    for vip, node in VIPS.items():
        assert where(report, vip) == (node,), vip
    assert where(report, CLONE) == NODES
    assert keys(report) == [("fencing_disabled", "cluster")]  # stonith is off in the lab: INFO
    assert keys(report, above=Severity.INFO) == []
    for result in report.results:
        assert result.ok and result.error is None, result.node
        assert result.view is not None and result.view.quorate is True and result.view.dc == view.dc
        assert result.daemons is not None and result.daemons.states == DAEMONS_UP, result.node
    assert report.healthy and report.severity is Severity.INFO
    # Through OpenSSH and the nodes' own /bin/sh: every read was answered by a read shell.
    stats = collector.pool.stats
    assert stats.shell_commands == stats.commands_run > 0 and stats.shells_opened >= len(NODES)


# ---------------------------------------------------------------- standby


async def test_standby_moves_the_vip_and_unstandby_brings_it_back(
        collector: Collector, cluster: ClusterConfig) -> None:
    await anodectl("node2", "standby")
    report = await report_until(
        collector, cluster,
        lambda r: where(r, "virtual_ip_2") not in ((), ("node2",))
        and finding(r, "node_standby", "node2") is not None
        and where(r, CLONE) == ("node1", "node3"),  # its clone instance stops in the same transition
        "virtual_ip_2 and the clone moved off node2 in standby")
    (elsewhere,) = where(report, "virtual_ip_2")
    assert elsewhere in ("node1", "node3")
    standby = finding(report, "node_standby", "node2")
    assert standby is not None and standby.severity is Severity.WARNING
    assert standby.message == "node2 is in standby: it serves no resources"
    assert str(standby.remedy) == "unstandby node2"
    assert where(report, CLONE) == ("node1", "node3")

    await anodectl("node2", "unstandby")
    report = await report_until(collector, cluster, healthy, "virtual_ip_2 back on node2, healthy")
    assert where(report, "virtual_ip_2") == ("node2",)
    assert finding(report, "node_standby", "node2") is None


# ---------------------------------------------------------------- crashes


async def test_crash_one_node_vip_fails_over_with_quorum(
        collector: Collector, cluster: ClusterConfig) -> None:
    await anodectl("node3", "crash")
    report = await report_until(
        collector, cluster,
        lambda r: offline_in_view(r, "node3") and where(r, "virtual_ip_3") not in ((), ("node3",)),
        "node3 offline with virtual_ip_3 on a survivor")
    (survivor,) = where(report, "virtual_ip_3")
    assert survivor in SURVIVORS
    assert report.reference is not None and report.reference.quorate is True
    assert report.reference_node in SURVIVORS
    offline = finding(report, "node_offline", "node3")
    assert offline is not None and offline.severity is Severity.WARNING
    assert offline.message.startswith(
        "node3 is OFFLINE: it answers over SSH but Pacemaker is not running there")
    assert str(offline.remedy) == "start node3"
    node3 = report.result("node3")
    assert node3 is not None and node3.error is None  # it answered over SSH ...
    assert node3.view is not None and not node3.view.connected  # ... but crm_mon is disconnected
    assert finding(report, "no_quorum", "cluster") is None
    assert report.severity is Severity.WARNING


async def test_crash_one_node_is_one_incident_naming_the_vip_move(tmp_path: Path) -> None:
    poster = RecordingPoster()
    async with running(labkit.settings(tmp_path / "state", poll_interval_s=1.0)) as rt:
        watcher = rt.watch(poster)
        await watcher.wait_polls(2)
        assert poster.posts == []  # healthy at start: nothing to say
        await anodectl("node3", "crash")
        survivor = await _vip3_survivor_in_incident(poster, watcher)
        await watcher.wait_polls(3)  # nothing more may open while node3 stays down
        # One incident for node3. When node3 was the DC, a survivor's resources can flicker
        # during the DC election: a real, separate incident, but it must be over by now.
        mine = [r for r in poster.roots() if "node3" in r.text]
        assert len(mine) == 1, poster.out.getvalue()
        root = mine[0]
        incident = poster.incident_text(root)
        assert "node3 went OFFLINE" in root.text
        assert root.text.endswith("incident node:node3")  # warning, or critical if it saw the VIP stopped
        assert "`/cluster start lab node3`" in root.text
        assert [i.key for i in await rt.store.open_incidents("lab")] == ["node:node3"]
    # Also when a poll lands between Pacemaker's stop and start: the start then says "moved".
    assert f"virtual_ip_3 moved node3 → {survivor}" in incident, incident


async def _vip3_survivor_in_incident(poster: RecordingPoster, watcher: Watcher) -> str:
    """Wait (one poll at a time, bounded) until the incident says where virtual_ip_3 went."""
    found = re.compile(r"virtual_ip_3 (?:moved node3 → |started on )(node\d)")
    for _ in range(30):
        await watcher.wait_polls(1)
        roots = poster.roots()
        if roots and (match := found.search(poster.incident_text(roots[0]))):
            return match.group(1)
    raise AssertionError("no alert placed virtual_ip_3 on a survivor within 30 polls:\n"
                         + poster.out.getvalue())


async def test_crash_two_nodes_survivor_without_quorum(collector: Collector, cluster: ClusterConfig) -> None:
    await anodectl("node2", "crash")
    await anodectl("node3", "crash")
    report = await report_until(
        collector, cluster,
        lambda r: finding(r, "no_quorum", "cluster") is not None
        and offline_in_view(r, "node2") and offline_in_view(r, "node3")
        and all(where(r, vip) == () for vip in VIPS),
        "node1 alone without quorum, every VIP stopped")
    assert report.reference_node == "node1"
    assert report.reference is not None and report.reference.quorate is False
    first = report.findings[0]
    assert first.key == ("no_quorum", "cluster") and first.severity is Severity.CRITICAL
    assert "partition WITHOUT quorum" in first.message
    assert report.severity is Severity.CRITICAL and not report.healthy
    critical = {f.key for f in report.findings if f.severity is Severity.CRITICAL}
    assert {("no_quorum", "cluster"), ("few_healthy", "cluster"),
            *(("vip_stopped", vip) for vip in VIPS)} <= critical
    for node in ("node2", "node3"):
        result = report.result(node)
        assert result is not None and result.error is None
        assert result.view is not None and not result.view.connected, f"{node}'s crm_mon connected"
        assert finding(report, "node_offline", node) is not None

    await anodectl("node2", "start")
    await anodectl("node3", "start")
    report = await report_until(collector, cluster, healthy, "healthy after starting node2 and node3")
    assert keys(report, above=Severity.INFO) == []


# ---------------------------------------------------------------- failed action and cleanup


async def test_failed_action_then_cleanup_over_ssh(collector: Collector, cluster: ClusterConfig) -> None:
    await anodectl("node2", "break-resource", CLONE)
    subject = f"{CLONE}@node2"
    report = await report_until(  # the Dummy's monitor runs every 10 s
        collector, cluster, lambda r: finding(r, "failed_action", subject) is not None,
        f"a failed action of {subject}", timeout=45)
    failed = finding(report, "failed_action", subject)
    assert failed is not None and failed.severity is Severity.WARNING
    assert failed.message.startswith("failed action monitor of loadbalancer on node2")
    assert str(failed.remedy) == f"cleanup {CLONE} node2"

    done = await collector.run(cluster, "node2", ("pcs", "resource", "cleanup", CLONE))
    assert done.exit_status == 0, done.stderr
    report = await report_until(collector, cluster, healthy, "healthy after the cleanup")
    assert [f for f in report.findings if f.code == "failed_action"] == []
    assert report.reference is not None and report.reference.failures == ()


# ---------------------------------------------------------------- corosync restart, resync


async def test_corosync_restart_then_runbook_resync(collector: Collector, cluster: ClusterConfig) -> None:
    restart = asyncio.create_task(anodectl("node2", "restart-corosync"))  # ~3 s; watch it happen
    try:
        gone = await report_until(collector, cluster, lambda r: offline_in_view(r, "node2"),
                                  "node2 offline during its corosync restart")
    finally:
        await restart
    assert finding(gone, "node_offline", "node2") is not None
    await report_until(collector, cluster, healthy, "healthy again after the corosync restart")

    for argv in (("systemctl", "restart", "corosync"), ("systemctl", "restart", "pcsd")):
        done = await collector.run(cluster, "node2", argv, timeout_s=90)
        assert done.exit_status == 0, f"{' '.join(argv)}: {done.stderr}"
    report = await report_until(
        collector, cluster,
        lambda r: healthy(r) and all(x.daemons is not None and x.daemons.states == DAEMONS_UP
                                     for x in r.results),
        "healthy with every daemon active after the resync")
    assert keys(report, above=Severity.INFO) == []


# ---------------------------------------------------------------- maintenance


async def test_node_then_cluster_maintenance(collector: Collector, cluster: ClusterConfig) -> None:
    await anodectl("node1", "exec", "pcs", "node", "maintenance", "node1")
    report = await report_until(collector, cluster,
                                lambda r: finding(r, "node_maintenance", "node1") is not None,
                                "node1 in maintenance")
    node = finding(report, "node_maintenance", "node1")
    assert node is not None and node.severity is Severity.WARNING
    assert str(node.remedy) == "unmaintenance node1"
    assert finding(report, "cluster_maintenance", "cluster") is None

    await anodectl("node1", "exec", "pcs", "property", "set", "maintenance-mode=true")
    report = await report_until(collector, cluster,
                                lambda r: finding(r, "cluster_maintenance", "cluster") is not None,
                                "the cluster in maintenance-mode")
    whole = finding(report, "cluster_maintenance", "cluster")
    assert whole is not None and whole.severity is Severity.WARNING
    assert whole.message.startswith("cluster is in maintenance-mode")
    assert finding(report, "node_maintenance", "node1") is not None

    await anodectl("node1", "exec", "pcs", "property", "set", "maintenance-mode=false")
    await anodectl("node1", "exec", "pcs", "node", "unmaintenance", "node1")
    report = await report_until(collector, cluster, healthy, "healthy with maintenance undone")
    assert finding(report, "cluster_maintenance", "cluster") is None
    assert finding(report, "node_maintenance", "node1") is None


# ---------------------------------------------------------------- Slack


async def test_slash_status_in_slack_names_every_node_and_vip(tmp_path: Path) -> None:
    async with lab_bot(tmp_path / "state") as h:
        assert await h.slash("status lab") == 200
        progress = await h.slack.wait_for("chat.postMessage", lambda c: c.params.get("channel") == CHANNEL)
        assert "gathering status from 3 nodes" in call_text(progress)
        final = await h.slack.wait_for("chat.update", timeout=30)
        assert final.params["ts"] == progress.response["ts"]
        text = call_text(final)
        assert "*lab* is healthy" in text and "3/3 nodes online" in text
        for vip, node in VIPS.items():
            assert f"`{vip}` → {node}" in text
        for node in NODES:
            assert f"{node} online" in text
        assert f"`{CLONE}` on 3/3" in text and "3/3 nodes answered" in text
        assert not h.slack.violations
