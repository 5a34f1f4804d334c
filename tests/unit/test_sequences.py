"""The recorded lab sequences (tests/fixtures/sequences) and their loader (tests/fakes/sequences).

Facts asserted here come from the real cluster and could fail on a bad recording or loader:
every recording starts healthy and ends settled, answers only ever move forward in time, and
each scenario shows what it says it did, in the order a real cluster does it."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable
from functools import cache
from itertools import pairwise
from pathlib import Path
from types import ModuleType

import pytest

from bot.collect import COROSYNC_DAEMONS, controller_argv
from bot.corosync.parse import parse_cfgtool, parse_quorum
from bot.pacemaker.model import Node, NodeView
from bot.pacemaker.parse import parse
from bot.settings import ClusterConfig, Commands
from bot.ssh import build_command
from tests.fakes.sequences import FIXTURES, Sample, Sequence, cmd_of, load, names

RECORDED = ("power_cut_rejoin", "flapping_node", "cluster_stop_start", "resync", "standby_unstandby",
            "move_clear", "monitor_failure_cleanup", "quorum_loss", "maintenance",
            "corosync_member_loss")
CATALOGUE = {"cleanup", "resync", "standby", "unstandby", "move", "clear", "start"}
LAB = Path(__file__).resolve().parents[2] / "deploy" / "lab"
MAX_TOTAL_BYTES = 10_000_000


@cache
def _recorder() -> ModuleType:
    """deploy/lab/record.py, imported by path (it is a script, not a package module)."""
    spec = importlib.util.spec_from_file_location("cblab_record", LAB / "record.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("cblab_record", module)
    spec.loader.exec_module(module)
    return module


def _view(sample: Sample | None) -> NodeView | None:
    return parse(sample.out) if sample is not None and sample.rc == 0 else None


def _healthy(seq: Sequence, view: NodeView | None) -> bool:
    if view is None or not view.quorate:
        return False
    home = all(view.running_on(vip) == (node,) for vip, node in zip(seq.vips, seq.nodes, strict=True))
    everywhere = all(set(view.running_on(r)) == set(seq.nodes) for r in seq.everywhere)
    nodes_ok = all((n := view.node(name)) is not None and n.online and not n.standby
                   for name in seq.nodes)
    return home and everywhere and nodes_ok and not view.failures


def _members(sample: Sample | None) -> int | None:
    if sample is None or not sample.out.strip():
        return None
    quorum = parse_quorum(sample.out)
    return len(quorum.members) if quorum.quorate else None


@pytest.fixture(scope="module", params=RECORDED)
def seq(request: pytest.FixtureRequest) -> Sequence:
    return load(request.param)


def test_every_recorded_scenario_is_tested_and_small() -> None:
    assert set(names()) == set(RECORDED)
    total = sum(f.stat().st_size for f in FIXTURES.glob("*/*"))
    assert total < MAX_TOTAL_BYTES


def test_metadata_is_complete(seq: Sequence) -> None:
    meta = json.loads((FIXTURES / seq.name / "meta.json").read_text())
    assert meta["kind"] in ("pacemaker", "corosync") and meta["kind"] == seq.kind
    assert set(meta["versions"]) >= {"pacemaker", "corosync", "pcs"}
    assert 0.2 <= seq.interval_s <= 0.5 and seq.token_ms == 1000
    assert seq.steps and all(s.rc == 0 for s in seq.steps)
    # One after the other, except actions started together (two nodes cut at the same instant).
    assert all(a.t_end <= b.t or abs(b.t - a.t) < 0.1 for a, b in pairwise(seq.steps))
    assert seq.samples[-1].t <= seq.duration


def test_samples_are_sorted_and_change_each_time(seq: Sequence) -> None:
    record = _recorder()
    assert [s.t for s in seq.samples] == sorted(s.t for s in seq.samples)
    for node in seq.nodes:
        for cmd in seq.cmds:
            lines = seq.changes(node, cmd)
            assert lines, f"{node} never answered {cmd}"
            keys = [(s.rc, record.stable(cmd, s.out), s.err) for s in lines]
            assert all(a != b for a, b in pairwise(keys)), f"{node} {cmd}: unchanged line kept"


def test_answer_is_the_latest_at_or_before_t(seq: Sequence) -> None:
    node, cmd = seq.nodes[0], seq.cmds[0]
    lines = seq.changes(node, cmd)
    assert seq.answer(node, cmd, lines[0].t - 0.001) is None
    for a, b in pairwise(lines):
        assert seq.answer(node, cmd, a.t) is a
        assert seq.answer(node, cmd, (a.t + b.t) / 2) is a
    assert seq.answer(node, cmd, seq.duration + 100) is lines[-1]
    assert seq.answer("nodeX", cmd, 1.0) is None
    assert 0 < seq.ready < 1.0 < seq.steps[0].t
    assert all(seq.answer(n, c, seq.ready) is not None for n in seq.nodes for c in seq.cmds)
    for sudo in (False, True):
        assert seq.reply(node, build_command(lines[-1].argv, sudo), seq.duration) is lines[-1]
    assert seq.reply(node, "pcs status", seq.duration) is None


def test_answers_are_monotonic_in_t(seq: Sequence) -> None:
    grid = [i * seq.interval_s / 2 for i in range(int(seq.duration / seq.interval_s * 2) + 2)]
    for node in seq.nodes:
        for cmd in seq.cmds:
            times = [a.t for t in grid if (a := seq.answer(node, cmd, t)) is not None]
            assert times == sorted(times)
            assert all(t <= g for t, g in zip(times, grid[len(grid) - len(times):], strict=True))


def test_starts_healthy_for_3s_and_ends_settled_for_10s(seq: Sequence) -> None:
    first, last = seq.steps[0], seq.steps[-1]
    assert first.t >= 3.0
    assert seq.duration - last.t_end >= 10.0
    for node in seq.nodes:
        if seq.kind == "pacemaker":
            assert _healthy(seq, _view(seq.answer(node, "crm_mon", first.t)))
            assert _healthy(seq, _view(seq.answer(node, "crm_mon", seq.duration)))
        assert _members(seq.answer(node, "quorumtool", first.t)) == len(seq.nodes)
        assert _members(seq.answer(node, "quorumtool", seq.duration)) == len(seq.nodes)


def test_cmd_of_maps_every_command_the_collector_sends() -> None:
    cmds = Commands()
    sent = {cmds.crm_mon: "crm_mon", cmds.daemons: "daemons", COROSYNC_DAEMONS: "daemons",
            cmds.quorum: "quorumtool", cmds.links: "cfgtool"}
    for argv, name in sent.items():
        for sudo in (False, True):
            assert cmd_of(build_command(argv, sudo)) == name
    for node in ("node1", "n1.example.com"):
        assert cmd_of(build_command(controller_argv(node), True)) == "crmadmin"
    assert cmd_of(build_command(("crmadmin", "--status=node1"), True)) is None
    assert cmd_of(build_command(("pcs", "resource", "cleanup", "virtual_ip_1"), True)) is None
    assert cmd_of(build_command(("crm_mon", "--one-shot"), False)) is None
    assert cmd_of("crm_mon 'unbalanced") is None


def test_recorder_asks_what_the_collector_asks() -> None:
    record = _recorder()
    cluster = ClusterConfig.model_validate(
        {"name": "lab", "nodes": [{"name": "node1", "host": "10.224.77.11"}]})
    for kind in ("pacemaker", "corosync"):
        for probe in record.probes(cluster, kind, "node1"):
            assert cmd_of(build_command(probe.argv, False)) == probe.cmd
    assert controller_argv("node1") in {p.argv for p in record.probes(cluster, "pacemaker", "node1")}
    assert {p.argv for p in record.probes(cluster, "corosync", "node1")} == {
        COROSYNC_DAEMONS, cluster.commands.quorum, cluster.commands.links}


def test_recorded_argv_is_the_collectors(seq: Sequence) -> None:
    for s in seq.samples:
        assert cmd_of(build_command(s.argv, False)) == s.cmd


def test_power_cut_shows_links_then_membership_then_failover_then_rejoin() -> None:
    seq = load("power_cut_rejoin")
    cut, on = seq.step("power_cut"), seq.step("power_on")
    assert cut is not None and on is not None and cut.node == "node3"

    offline = seq.first_change("node1", "crm_mon", _offline("node3"), after=cut.t)
    assert offline is not None and offline.t < on.t
    links = seq.first_change("node1", "cfgtool",
                             lambda s: any(3 in lk.down_peers for lk in parse_cfgtool(s.out).links),
                             after=cut.t)
    assert links is not None and links.t < offline.t, "knet links drop before membership"
    # Corosync's membership changes within a sampling round or so of Pacemaker's view (the
    # 2026-12-02 13:25 take: crm_mon at 8.828, quorumtool at 9.084, the next round).
    assert _members(seq.answer("node1", "quorumtool", offline.t + 2 * seq.interval_s)) == 2
    moved = _view(seq.answer("node1", "crm_mon", on.t))
    assert moved is not None and moved.running_on("virtual_ip_3") in (("node1",), ("node2",))
    back = seq.first_change("node1", "crm_mon", lambda s: _healthy(seq, _view(s)), after=on.t)
    assert back is not None and back.t > on.t
    # While cut, node3's own crm_mon cannot reach its (dead) cluster stack.
    own = seq.answer("node3", "crm_mon", offline.t)
    assert own is not None and own.rc != 0


def _node(view: NodeView, name: str) -> Node:
    node = view.node(name)
    assert node is not None, f"{name} is not in the view"
    return node


def _offline(name: str) -> Callable[[Sample], bool]:
    """A crm_mon answer that shows node `name` offline."""
    return lambda s: (v := _view(s)) is not None and not _node(v, name).online


def _crm(seq: Sequence, t: float, node: str = "node1") -> NodeView:
    view = _view(seq.answer(node, "crm_mon", t))
    assert view is not None, f"{node} had no crm_mon view at {t}"
    return view


def _between(seq: Sequence, a: float, b: float, node: str = "node1") -> list[NodeView]:
    """node's crm_mon views answered in [a, b) (plus the one standing at a)."""
    first = seq.answer(node, "crm_mon", a)
    lines = [s for s in seq.changes(node, "crm_mon") if a < s.t < b]
    return [v for s in ([first] if first else []) + lines if (v := _view(s)) is not None]


def _step(seq: Sequence, action: str, nth: int = 0) -> float:
    step = seq.step(action, nth)
    assert step is not None, f"{seq.name} has no step {action} #{nth}"
    return step.t


def test_remediation_steps_are_catalogue_fixes(seq: Sequence) -> None:
    for step in seq.remediations:
        assert step.remediation is not None and step.remediation[0] in CATALOGUE
        assert step.remediation[1], "a remediation names its target"


def test_flapping_node_goes_offline_five_times_within_a_minute() -> None:
    seq = load("flapping_node")
    online = [n.online for s in seq.changes("node1", "crm_mon")
              if (v := _view(s)) is not None and (n := v.node("node2")) is not None]
    drops = sum(1 for a, b in pairwise(online) if a and not b)
    assert drops == 5 and online[-1]
    cuts = [s for s in seq.steps if s.action == "power_cut"]
    assert len(cuts) == 5 and {s.node for s in cuts} == {"node2"}
    assert seq.steps[-1].t_end - cuts[0].t < 70


def test_clean_stop_leaves_membership_before_links_and_start_is_a_remediation() -> None:
    seq = load("cluster_stop_start")
    stop, start = _step(seq, "cluster_stop"), _step(seq, "start")
    assert [s.remediation for s in seq.remediations] == [("start", ("node3",))]
    assert any(not _node(v, "node3").online for v in _between(seq, stop, start))
    off = seq.first_change("node1", "crm_mon", _offline("node3"), after=stop)
    links = seq.first_change("node1", "cfgtool",
                             lambda s: any(3 in lk.down_peers for lk in parse_cfgtool(s.out).links),
                             after=stop)
    assert off is not None and links is not None and off.t <= links.t, \
        "pacemaker leaves first on a clean stop; corosync (and its links) goes after it"
    assert _healthy(seq, _crm(seq, seq.duration))


def test_resync_takes_node2_out_and_back() -> None:
    seq = load("resync")
    fixes = [s.remediation for s in seq.remediations]
    assert fixes == [("resync", ("node2",)), ("resync", ("node2",))]
    views = _between(seq, _step(seq, "restart_corosync"), seq.duration)
    assert any(not _node(v, "node2").online for v in views)
    assert any(v.running_on("virtual_ip_2") not in ((), ("node2",)) for v in views)


def test_standby_moves_node2s_resources_off_and_back() -> None:
    seq = load("standby_unstandby")
    during = _crm(seq, _step(seq, "unstandby"))
    assert _node(during, "node2").standby
    assert "node2" not in during.running_on("virtual_ip_2") and during.running_on("virtual_ip_2")
    assert "node2" not in during.running_on("loadbalancer-clone")
    assert _healthy(seq, _crm(seq, seq.duration))


def test_move_puts_virtual_ip_1_on_node3_until_cleared() -> None:
    seq = load("move_clear")
    assert _crm(seq, _step(seq, "clear")).running_on("virtual_ip_1") == ("node3",)
    assert _crm(seq, seq.duration).running_on("virtual_ip_1") == ("node1",)
    assert [s.remediation for s in seq.remediations] == [
        ("move", ("virtual_ip_1", "node3")), ("clear", ("virtual_ip_1",))]


def test_monitor_failure_shows_then_cleanup_reprobes_and_clears_it() -> None:
    seq = load("monitor_failure_cleanup")
    broken, cleanup = _step(seq, "break_resource"), _step(seq, "cleanup")
    failed = _crm(seq, cleanup)
    assert [(f.resource, f.node, f.exitcode) for f in failed.failures] == [("virtual_ip_1", "node1", 7)]
    assert _crm(seq, broken).failures == ()
    # The cleanup's re-probe: virtual_ip_1 shows as stopped for a moment, with the failure gone.
    reprobe = _between(seq, cleanup, seq.duration)
    assert any(not v.failures and not v.running_on("virtual_ip_1") for v in reprobe)
    assert _healthy(seq, _crm(seq, seq.duration))


def test_quorum_loss_stops_every_vip_then_recovers() -> None:
    seq = load("quorum_loss")
    alone = _crm(seq, _step(seq, "power_on"))
    assert alone.quorate is False
    assert not _node(alone, "node2").online and not _node(alone, "node3").online
    assert all(not alone.running_on(vip) for vip in seq.vips)
    assert _members(seq.answer("node1", "quorumtool", _step(seq, "power_on"))) is None  # not quorate
    assert _healthy(seq, _crm(seq, seq.duration))


def test_maintenance_node_then_cluster() -> None:
    seq = load("maintenance")
    node_on = _crm(seq, _step(seq, "node_unmaintenance"))
    assert _node(node_on, "node2").maintenance and not node_on.summary.options.maintenance_mode
    cluster_on = _crm(seq, _step(seq, "cluster_unmaintenance"))
    assert cluster_on.summary.options.maintenance_mode
    end = _crm(seq, seq.duration)
    assert not end.summary.options.maintenance_mode and not _node(end, "node2").maintenance


def test_corosync_only_member_loss_and_return() -> None:
    seq = load("corosync_member_loss")
    assert seq.kind == "corosync" and "crm_mon" not in seq.cmds
    assert {s.argv for s in seq.samples if s.cmd == "daemons"} == {COROSYNC_DAEMONS}
    cut, back = _step(seq, "power_cut"), _step(seq, "start_corosync")
    assert _members(seq.answer("node1", "quorumtool", back)) == 2
    dead = seq.answer("node3", "quorumtool", back)
    assert dead is not None and dead.rc != 0
    assert _members(seq.answer("node1", "quorumtool", cut)) == 3
    assert _members(seq.answer("node1", "quorumtool", seq.duration)) == 3


def _holds(cond: str, sample: Sample | None) -> bool:
    record = _recorder()
    return bool(record.crm_holds(cond, record.crm_xml(sample)))


def test_recorder_conditions_on_real_answers() -> None:
    failure = load("monitor_failure_cleanup")
    first = failure.first_change("node1", "crm_mon", lambda s: "<failure " in s.out)
    assert first is not None and not _holds("recovered:virtual_ip_1", first)
    at_cleanup = failure.answer("node1", "crm_mon", _step(failure, "cleanup"))
    assert _holds("recovered:virtual_ip_1", at_cleanup) and _holds("idle", at_cleanup)
    maint = load("maintenance")
    assert _holds("maintenance:node2", maint.answer("node1", "crm_mon", _step(maint, "node_unmaintenance")))
    cut = load("power_cut_rejoin")
    assert not _holds("settled", cut.answer("node1", "crm_mon", _step(cut, "power_on")))
    for seq in map(load, RECORDED):
        if seq.kind == "pacemaker":
            assert _holds("settled", seq.answer("node1", "crm_mon", seq.duration)), seq.name
