"""Issue 17 items 1-3 on the real lab: a partitioned node is one out-of-sync finding; with
Pacemaker stopped everywhere the status says so; a corosync-only cluster's node whose Corosync
is down gets `start-corosync` through the approval flow, and is a member again."""

from __future__ import annotations

from pathlib import Path

from bot.approvals import State
from bot.collect import Collector
from bot.pacemaker.health import Remedy
from bot.pacemaker.merge import ClusterReport
from bot.runtime import running
from bot.settings import ClusterConfig
from commands import lookup
from commands.spec import Invocation, Source
from tests.lab import labkit
from tests.lab.harness import RecordingPoster
from tests.lab.labkit import NODES, anodectl, finding, report_until
from tests.lab.test_lab_approvals import approve_and_run, audit_verified

ASKER, APPROVER = "U0ASKER", "U0APPROVER"


def about(report: ClusterReport, node: str) -> list[tuple[str, Remedy | None]]:
    return [(f.code, f.remedy) for f in report.findings if f.subject == node]


def cut_off(report: ClusterReport, node: str) -> bool:
    """The others count NODE offline while it answers over SSH with Pacemaker running."""
    own = report.result(node)
    ref = report.reference
    seen = ref.node(node) if ref is not None and report.reference_node != node else None
    return (seen is not None and not seen.online and own is not None and own.view is not None
            and own.view.connected)


async def test_partitioned_node3_is_one_out_of_sync_finding(collector: Collector,
                                                            cluster: ClusterConfig) -> None:
    try:
        await anodectl("node3", "partition")
        report = await report_until(collector, cluster, lambda r: cut_off(r, "node3"),
                                    "node3 cut off and out of sync", timeout=60)
        assert about(report, "node3") == [("out_of_sync", Remedy("resync", ("node3",)))], \
            labkit.describe(report)
        out_of_sync = finding(report, "out_of_sync", "node3")
        assert out_of_sync is not None and "the others see it OFFLINE" in out_of_sync.message
    finally:
        await anodectl("node3", "unpartition")
    labkit.wait("node1", "healthy")


def corosync_only(cluster: ClusterConfig) -> ClusterConfig:
    """The lab as a Proxmox-shaped cluster: judged by Corosync alone."""
    return cluster.model_copy(update={"kind": "corosync", "vips": (), "everywhere": (),
                                      "approvers": (APPROVER,)})


async def stop_pacemaker_everywhere() -> None:
    for node in NODES:
        await anodectl(node, "exec", "systemctl", "stop", "pacemaker")


async def test_pacemaker_stopped_everywhere_says_so_and_start_works(
        tmp_path: Path, collector: Collector, cluster: ClusterConfig) -> None:
    await stop_pacemaker_everywhere()
    report = await report_until(collector, cluster, lambda r: all(
        r.view is not None and not r.view.connected for r in r.results), "Pacemaker down everywhere")
    assert report.findings[0].message == ("Pacemaker is not running on any node (3/3 nodes answered); "
                                          "Corosync is up and quorate (3/3 members)")
    assert all(about(report, n) == [("pacemaker_down", Remedy("start", (n,)))] for n in NODES)
    # The fix each node's finding offers is one the catalogue files and runs (it used to be
    # refused: "no node answered").
    state, verified, thread = await approve_and_run(tmp_path, ("start", "lab", "node1"))
    assert state is State.SUCCEEDED and verified, thread
    after = await collector.collect(cluster)
    assert after.reference_node == "node1" and after.reference is not None and after.reference.quorate


async def test_start_corosync_through_the_approval_flow(tmp_path: Path, collector: Collector,
                                                        cluster: ClusterConfig) -> None:
    pve = corosync_only(cluster)
    await stop_pacemaker_everywhere()
    await anodectl("node3", "exec", "systemctl", "stop", "corosync")
    report = await report_until(collector, pve, lambda r: finding(r, "corosync_down", "node3") is not None,
                                "corosync down on node3", timeout=30)
    assert about(report, "node3") == [("corosync_down", Remedy("start-corosync", ("node3",)))]
    settings = labkit.settings(tmp_path / "state").model_copy(update={"clusters": (pve,)})
    async with running(settings) as rt:
        poster = RecordingPoster()
        rem = await rt.approvals(poster, default_channel="C0LAB")
        spec = lookup("start-corosync")
        assert spec is not None
        reply = await rem.request(Invocation("start-corosync", ("lab", "node3"), user=ASKER,
                                             channel="C0LAB", source=Source.CONSOLE), spec)
        assert reply.request_id is not None
        assert await rem.decide(reply.request_id, APPROVER, "approve") is None
        await rem.wait_idle()
        req = await rt.store.get_request(reply.request_id)
        assert req is not None
        thread = "\n".join(p.text for p in poster.posts)
        assert req.state is State.SUCCEEDED and await audit_verified(rt.store, req.id), thread
    # The lab has no pve-cluster unit: only corosync was started, never pcs.
    assert req.argv == ("systemctl", "start", "corosync"), req.argv
    after = await collector.collect(pve)
    assert after.corosync is not None and after.corosync.members == NODES and after.healthy, \
        labkit.describe(after)
