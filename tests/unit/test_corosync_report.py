"""The Corosync layer inside reports, status and alerts, over the real captures: reading the tools'
answers, the cluster summary, merged findings, the Corosync sections, snapshot and diff events,
and the simulator's `corosync-cfgtool -s`."""

from __future__ import annotations

import json
from dataclasses import replace
from functools import cache
from pathlib import Path

import pytest

from bot.collect import _read_tool
from bot.corosync.model import NodeCorosync
from bot.corosync.parse import parse_cfgtool, parse_quorum
from bot.corosync.summary import LinkDown, summarize
from bot.demo.sim import Simulator
from bot.pacemaker.diff import Event, EventKind, WatchState, incidents, step
from bot.pacemaker.health import Expectations, Severity
from bot.pacemaker.merge import ClusterReport, NodeResult, merge
from bot.pacemaker.parse import parse
from bot.pacemaker.snapshot import Snapshot, snapshot
from bot.render.blocks import to_blocks
from bot.render.status import corosync_section, status_doc
from bot.render.text import to_text
from bot.ssh import Completed
from tests.conftest import FIXTURES, NODES, PCMK, capture
from tests.fakes.nodes import LAB, cfgtool_answer, quorumtool_answer
from tests.unit.test_render import assert_slack_limits

K = EventKind
HAND = FIXTURES / "corosync" / "hand"
PROD = Expectations(vips=("virtual_ip_1", "virtual_ip_2", "virtual_ip_3"),
                    everywhere=("loadbalancer-clone",))
QUORUM = ("corosync-quorumtool", "-s")
LINKS = ("corosync-cfgtool", "-s")


def done(argv: tuple[str, ...], rc: int, stdout: str, stderr: str = "") -> Completed:
    return Completed("node1", argv, rc, stdout, stderr, 0.0)


@cache
def corosync_of(scenario: str, node: str) -> NodeResult:
    """What the collector makes of that node's real Corosync answers (no crm_mon view)."""
    q = _read_tool(done(QUORUM, *quorumtool_answer(scenario, node)), parse_quorum)
    ls = _read_tool(done(LINKS, *cfgtool_answer(scenario, node)), parse_cfgtool)
    failed = q if q.value is None else ls
    return NodeResult(node, corosync=NodeCorosync(q.value, ls.value), corosync_error=failed.error,
                      corosync_error_kind=failed.kind)


def both(scenario: str, node: str) -> NodeResult:
    return replace(corosync_of(scenario, node), view=parse(capture(scenario, node)))


def pcmk(scenario: str) -> ClusterReport:
    return merge("prod-haproxy", [both(scenario, n) for n in NODES], PROD)


def only(scenario: str | tuple[str, ...], **changes: NodeResult) -> ClusterReport:
    scenarios = (scenario,) * 3 if isinstance(scenario, str) else scenario
    results = [changes.get(n) or corosync_of(s, n) for n, s in zip(NODES, scenarios, strict=True)]
    return merge("pve", results, kind="corosync")


def as_node(r: NodeResult, node: str) -> NodeResult:
    """Another node's answer given by `node` (its Corosync is down the same way)."""
    return replace(r, node=node)


def silent(node: str) -> NodeResult:
    return NodeResult(node, error="connection refused", error_kind="unreachable")


def with_links(node: str, text: str, scenario: str = "a_healthy") -> NodeResult:
    r = corosync_of(scenario, node)
    assert r.corosync is not None
    return replace(r, corosync=replace(r.corosync, links=parse_cfgtool(text)))


def kinds(events: tuple[Event, ...]) -> list[tuple[str, str]]:
    return [(e.kind.value, e.subject) for e in events]


def polls(*reports: ClusterReport, expect: Expectations = PROD) -> list[tuple[Event, ...]]:
    state, first = step(None, reports[0], expect)
    assert first == ()
    out = []
    for r in reports[1:]:
        state, events = step(state, r, expect)
        out.append(events)
    return out


# ---------------------------------------------------------------- reading the tools


def test_not_quorate_exit_2_still_reads_the_view() -> None:
    rc, out, err = quorumtool_answer("d_two_nodes_down", "node1")
    assert rc == 2
    answer = _read_tool(done(QUORUM, rc, out, err), parse_quorum)
    assert answer.value is not None and answer.value.quorate is False and answer.error is None


@pytest.mark.parametrize(("argv", "stderr"), [
    (QUORUM, "Cannot initialize CMAP service\n"),
    (LINKS, "Could not initialize corosync configuration API error 2\n"),
])
def test_corosync_down_is_its_own_kind(argv: tuple[str, ...], stderr: str) -> None:
    answer = _read_tool(done(argv, 1, "", stderr), parse_quorum)
    assert (answer.value, answer.kind) == (None, "down")
    assert answer.error is not None and answer.error.startswith("corosync is not running (")


def test_missing_tool_and_garbage() -> None:
    missing = _read_tool(done(("pvecm", "status"), 127, "", "bash: pvecm: command not found\n"), parse_quorum)
    assert (missing.kind, missing.error) == ("not_found", "pvecm not found")
    garbage = _read_tool(done(QUORUM, 0, "Segmentation fault\n"), parse_quorum)
    assert garbage.kind == "parse" and "corosync-quorumtool" in (garbage.error or "")


def test_lab_capture_failures_read_as_down() -> None:
    r = corosync_of("c_node3_crashed", "node3")
    assert r.corosync_down and r.corosync == NodeCorosync() and r.answered and not r.ok


# ---------------------------------------------------------------- summary


def test_summary_names_ids_by_each_nodes_own_answer() -> None:
    s = summarize({n: corosync_of("a_healthy", n).corosync for n in NODES})
    assert (s.reference_node, s.quorate, s.members) == ("node1", True, NODES)
    assert s.names == ((1, "node1"), (2, "node2"), (3, "node3")) and s.links_down == ()
    assert (s.link_ids, s.transport) == ((0,), "knet")


def test_summary_prefers_the_quorate_view_and_marks_links_to_non_members() -> None:
    views = {n: corosync_of("c_node3_crashed", n).corosync for n in NODES}
    s = summarize(views, known={3: "node3"})
    assert s.reference_node == "node1" and s.members == ("node1", "node2")
    assert s.links_down == (LinkDown(0, "node1", "node3", members=False),
                            LinkDown(0, "node2", "node3", members=False))
    assert s.redundancy_lost == ()
    # Without Pacemaker's node list nobody names id 3 any more: said as such, never guessed.
    assert summarize(views).name(3) == "nodeid 3"


def test_summary_redundancy_lost_and_faulty_ring() -> None:
    views = {n: corosync_of("a_healthy", n).corosync for n in NODES}
    views["node1"] = with_links("node1", (HAND / "knet-link-disconnected.cfgtool.txt").read_text()).corosync
    s = summarize(views)
    assert s.redundancy_lost == (LinkDown(1, "node1", "node3"),) and s.link_ids == (0, 1)
    views["node1"] = with_links("node1", (HAND / "corosync2-ring-faulty.cfgtool.txt").read_text()).corosync
    assert summarize(views).links_down == (LinkDown(1, "node1", None),)
    assert LinkDown(1, "node1", None).label == "ring 1 on node1"


# ---------------------------------------------------------------- merged findings


def test_old_callers_without_corosync_keep_their_report() -> None:
    results = [NodeResult(n, parse(capture("c_node3_crashed", n))) for n in NODES]
    report = merge("prod-haproxy", results, PROD)
    assert report.corosync is None and report.kind == "pacemaker"
    assert not any(f.code.startswith("corosync") for f in report.findings)


def test_pacemaker_cluster_gains_corosync_findings() -> None:
    assert pcmk("a_healthy").healthy
    crashed = pcmk("c_node3_crashed")
    assert ("corosync_votes_low", "cluster") in {f.key for f in crashed.findings}
    assert crashed.findings[0].code == "node_offline"  # Pacemaker's finding still leads
    down = pcmk("d_two_nodes_down")
    assert ("corosync_not_quorate", "node1") in {f.key for f in down.findings}


def test_out_of_sync_node_is_one_finding_not_three() -> None:
    lonely = parse(capture("d_two_nodes_down", "node1"))  # node3 answering a lonely view
    isolated = NodeCorosync(parse_quorum((HAND / "node3-isolated.quorumtool.txt").read_text()))
    results = [both("a_healthy", "node1"), both("a_healthy", "node2"),
               NodeResult("node3", lonely, corosync=isolated)]
    report = merge("prod-haproxy", results, PROD)
    assert {f.code for f in report.findings if f.subject == "node3"} == {"out_of_sync"}
    assert report.severity is Severity.WARNING
    # Judged by Corosync alone, the same answers say it twice: its partition and its membership.
    alone = merge("pve", [corosync_of("a_healthy", "node1"), corosync_of("a_healthy", "node2"),
                          NodeResult("node3", corosync=isolated)], kind="corosync")
    assert {f.code for f in alone.findings if f.subject == "node3"} == {
        "corosync_not_quorate", "corosync_membership_mismatch"}


def test_corosync_only_report_without_any_answer() -> None:
    report = only("a_healthy", node1=silent("node1"), node2=silent("node2"), node3=silent("node3"))
    assert not report.has_view and not report.healthy and report.corosync is None
    assert report.findings[0].code == "no_view" and report.severity is Severity.CRITICAL
    assert len(report.unreachable) == 3
    assert "no node could report Corosync status" in status_doc(report).verdict


def test_corosync_only_all_down_is_critical_per_node() -> None:
    report = only("d_two_nodes_down", node1=as_node(corosync_of("d_two_nodes_down", "node2"), "node1"))
    assert not report.has_view
    assert {f.key: f.severity for f in report.findings if f.code == "corosync_down"} == {
        ("corosync_down", "node1"): Severity.CRITICAL, ("corosync_down", "node2"): Severity.CRITICAL,
        ("corosync_down", "node3"): Severity.CRITICAL}


# ---------------------------------------------------------------- rendering


def test_section_is_absent_without_corosync_data() -> None:
    results = [NodeResult(n, parse(capture("a_healthy", n))) for n in NODES]
    report = merge("prod-haproxy", results, PROD)
    assert corosync_section(report) is None
    assert "Corosync" not in to_text(status_doc(report, PROD))


def test_section_shows_lost_redundancy() -> None:
    text = (HAND / "knet-link-disconnected.cfgtool.txt").read_text()
    node1 = replace(with_links("node1", text), view=parse(capture("a_healthy", "node1")))
    report = merge("prod-haproxy", [node1, both("a_healthy", "node2"), both("a_healthy", "node3")], PROD)
    sec = corosync_section(report)
    assert sec is not None
    assert sec.lines[0].startswith(":large_green_circle: quorate · 3/3 votes")
    assert sec.lines[1] == ":large_yellow_circle: link 1 node1↔node3 down: redundancy lost"
    assert ("corosync_link_down", "node1->node3 link 1") in {f.key for f in report.findings}


def test_corosync_only_view_of_an_out_of_sync_node() -> None:
    isolated = NodeCorosync(parse_quorum((HAND / "node3-isolated.quorumtool.txt").read_text()))
    report = only("c_node3_crashed", node3=NodeResult("node3", corosync=isolated))
    text = to_text(status_doc(report))
    assert "  ❌ node3 · not a member · own view: [node3], NOT quorate" in text
    assert "/cluster resync pve node3" in text


def test_big_corosync_only_cluster_fits_slack() -> None:
    names = tuple(f"pve{i:02d}" for i in range(32))
    sim = Simulator(nodes=names, vips=())
    for n in names[:15]:
        sim.crash(n)
    results = []
    for n in names:
        q = _read_tool(done(QUORUM, *_triple(sim, n, QUORUM)), parse_quorum)
        ls = _read_tool(done(LINKS, *_triple(sim, n, LINKS)), parse_cfgtool)
        failed = q if q.value is None else ls
        results.append(NodeResult(n, corosync=NodeCorosync(q.value, ls.value),
                                  corosync_error=failed.error, corosync_error_kind=failed.kind))
    report = merge("pve", results, kind="corosync")
    assert report.corosync is not None and report.corosync.quorate is True  # 17 of 32
    blocks = to_blocks(status_doc(report))
    assert_slack_limits(blocks)
    text = json.dumps(blocks, ensure_ascii=False)
    assert "…and 9 more" in text and "members: pve15, pve16" in text  # capped, problems first
    assert text.index("pve00 · *not a member*") < text.index("pve15 · nodeid 16")


def _triple(sim: Simulator, node: str, argv: tuple[str, ...]) -> tuple[int, str, str]:
    got = sim.handle(node, argv)
    return got.exit_status, got.stdout, got.stderr


# ---------------------------------------------------------------- snapshot and diff


def test_snapshot_records_corosync() -> None:
    snap = snapshot(only("c_node3_crashed"))
    assert snap.kind == "corosync" and snap.has_view and snap.reference_node == "node1"
    cs = snap.corosync
    assert cs is not None and cs.quorate and cs.members == ((1, "node1"), (2, "node2"))
    assert (cs.total_votes, cs.expected_votes, cs.quorum, cs.down) == (2, 3, 2, ("node3",))
    assert snap.members == ("node1", "node2") and snap.disconnected == ("node3",)
    assert Snapshot.from_json(json.loads(json.dumps(snap.to_json()))) == snap


def test_member_lost_and_back() -> None:
    lost, back = polls(only("a_healthy"), only("c_node3_crashed"), only("a_healthy"), expect=Expectations())
    assert kinds(lost) == [("member_lost", "node3")]
    assert lost[0].message == ("node3 left the Corosync membership: corosync is not running there "
                               "· 2 of 3 votes, 2 needed")
    assert str(lost[0].remedy) == "start-corosync node3" and lost[0].group == "node:node3"
    assert kinds(back) == [("member_back", "node3")] and back[0].key == lost[0].key
    (inc,) = incidents(back)
    assert inc.is_recovery


def test_member_lost_to_silence_names_the_ssh_error() -> None:
    (lost,) = polls(only("a_healthy"), only("c_node3_crashed", node3=silent("node3")),
                    expect=Expectations())
    assert "it does not answer (connection refused)" in lost[0].message


def test_corosync_quorum_lost_absorbs_the_members() -> None:
    (events,) = polls(only("a_healthy"), only("d_two_nodes_down"), expect=Expectations())
    assert kinds(events) == [("corosync_quorum_lost", "cluster"), ("member_lost", "node2"),
                             ("member_lost", "node3")]
    assert events[0].severity is Severity.CRITICAL and str(events[0].remedy) == "start-corosync node2"
    (inc,) = incidents(events)
    assert inc.key == "quorum" and inc.title.startswith(
        "Corosync quorum LOST: partition [node1] has 1 of 3 votes, 2 needed")
    (regained,) = polls(only("d_two_nodes_down"), only("a_healthy"), expect=Expectations())
    assert kinds(regained)[0] == ("corosync_quorum_regained", "cluster")


def test_link_down_and_up() -> None:
    text = (HAND / "knet-link-disconnected.cfgtool.txt").read_text()
    down, up = polls(only("a_healthy"), only("a_healthy", node1=with_links("node1", text)),
                     only("a_healthy"), expect=Expectations())
    assert kinds(down) == [("link_down", "link 1 node1↔node3")]
    assert down[0].group == "link:link 1 node1↔node3" and down[0].nodes == ("node1", "node3")
    assert kinds(up) == [("link_up", "link 1 node1↔node3")] and up[0].key == down[0].key


def test_pacemaker_crash_groups_offline_and_member_lost() -> None:
    (events,) = polls(pcmk("a_healthy"), pcmk("c_node3_crashed"))
    assert ("node_offline", "node3") in kinds(events) and ("member_lost", "node3") in kinds(events)
    node = [d for d in incidents(events) if d.key == "node:node3"]
    assert len(node) == 1 and {e.kind for e in node[0].cause} == {K.NODE_OFFLINE, K.MEMBER_LOST}


def test_pacemaker_quorum_loss_is_said_once() -> None:
    (events,) = polls(pcmk("a_healthy"), pcmk("d_two_nodes_down"))
    found = {e.kind for e in events}
    assert K.QUORUM_LOST in found and K.COROSYNC_QUORUM_LOST not in found
    assert [d.key for d in incidents(events)] == ["quorum"]


def test_state_stored_before_corosync_reads_and_says_nothing_new() -> None:
    state, _ = step(None, pcmk("a_healthy"), PROD)
    old = state.to_json()
    assert old["version"] == 1
    del old["last"]["kind"], old["last"]["corosync"]  # what an earlier clusterbot wrote
    loaded = WatchState.from_json(json.loads(json.dumps(old)))
    assert loaded.last is not None and loaded.last.corosync is None
    _, events = step(loaded, pcmk("a_healthy"), PROD)
    assert events == ()
    # And the new state round-trips, links and all.
    text = (HAND / "knet-link-disconnected.cfgtool.txt").read_text()
    state, _ = step(None, only("a_healthy", node1=with_links("node1", text)), Expectations())
    assert WatchState.from_json(json.loads(json.dumps(state.to_json()))) == state


def test_corosync_only_cluster_gone_and_back() -> None:
    down = only("d_two_nodes_down", node1=as_node(corosync_of("d_two_nodes_down", "node2"), "node1"))
    gone, back = polls(only("a_healthy"), down, only("a_healthy"), expect=Expectations())
    assert kinds(gone) == [("cluster_unreachable", "cluster")]
    assert "node1: corosync not running" in gone[0].message
    assert kinds(back)[0] == ("cluster_reachable", "cluster") and "from node1" in back[0].message


def test_unreachable_member_warns_for_corosync_only() -> None:
    seq = [only("a_healthy")] + [only("a_healthy", node2=silent("node2"))] * 3
    events = [e for poll in polls(*seq, expect=Expectations()) for e in poll]
    (e,) = [e for e in events if e.kind is K.NODE_UNREACHABLE]
    assert e.severity is Severity.WARNING and "although Corosync counts it as a member" in e.message


# ---------------------------------------------------------------- the simulator's cfgtool


@pytest.mark.parametrize(("crash", "lab"), [((), "healthy"), (("node3",), "node3_down"),
                                            (("node3", "node2"), "node2_node3_down")])
def test_sim_cfgtool_is_the_lab_capture(crash: tuple[str, ...], lab: str) -> None:
    sim = Simulator()
    for n in crash:
        sim.crash(n)
    meta = json.loads((LAB / "meta.json").read_text())
    for out in (o for o in meta["outputs"] if o["scenario"] == lab and o["kind"] == "cfgtool"):
        got = sim.handle(out["node"], ["sudo", "-n", "corosync-cfgtool", "-s"])
        assert got.exit_status == out["rc"]
        assert got.stdout == (LAB / out["file"]).read_text()
        assert got.stderr.strip() == out["stderr"]


def test_sim_cfgtool_desynced_node_is_cut_off_both_ways() -> None:
    sim = Simulator()
    sim.desync("node2")
    node1 = parse_cfgtool(sim.handle("node1", LINKS).stdout)
    node2 = parse_cfgtool(sim.handle("node2", LINKS).stdout)
    assert node1.links[0].down_peers == (2,) and node2.links[0].down_peers == (1, 3)
    assert sim.handle("node1", ["corosync-cfgtool", "-n"]).exit_status != 0  # only -s is simulated


def test_pcmk_scenarios_all_have_corosync_answers() -> None:
    # Every Pacemaker scenario maps onto a lab cfgtool capture (the fakes rely on it).
    for scenario in (p.name for p in PCMK.iterdir() if p.is_dir()):
        for node in NODES:
            cfgtool_answer(scenario, node)
            assert Path(PCMK / scenario / f"{node}.quorumtool.txt").exists()
