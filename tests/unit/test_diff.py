"""The diff engine over real poll sequences from the 3-node lab: exact events, incidents, SSH
reachability with its N-polls rule, the no-view case, JSON state, and the flapping detector."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.pacemaker.diff import (
    Event,
    EventKind,
    Flapping,
    IncidentDraft,
    WatchState,
    diff,
    incidents,
    step,
)
from bot.pacemaker.health import Expectations, Remedy, Severity
from bot.pacemaker.merge import ClusterReport, NodeResult, merge, single
from bot.pacemaker.model import FenceEvent, NodeView, ResourceHistory
from bot.pacemaker.parse import parse
from bot.pacemaker.snapshot import Snapshot, snapshot
from tests.conftest import FIXTURES, capture

K = EventKind
PROD = Expectations(vips=("virtual_ip_1", "virtual_ip_2", "virtual_ip_3"),
                    everywhere=("loadbalancer-clone",))
NODES = ("node1", "node2", "node3")
Change = Callable[[NodeView], NodeView]


@cache
def view(scenario: str, node: str) -> NodeView:
    return parse(capture(scenario, node))


def report(scenario: str | tuple[str, str, str], change: Change | None = None,
           **errors: str) -> ClusterReport:
    """Every node's real answer in `scenario` (or one scenario per node); `errors` make a node
    silent over SSH; `change` edits every connected view the same way."""
    scenarios = (scenario,) * 3 if isinstance(scenario, str) else scenario
    results = []
    for node, scen in zip(NODES, scenarios, strict=True):
        if node in errors:
            results.append(NodeResult(node, error=errors[node], error_kind="timeout"))
            continue
        v = view(scen, node)
        results.append(NodeResult(node, change(v) if change and v.connected else v))
    return merge("prod-haproxy", results, PROD)


def run(*reports: ClusterReport, after: int = 3) -> list[tuple[Event, ...]]:
    """Step through the polls from first sight; the events of every poll after the first."""
    state, first = step(None, reports[0], PROD, unreachable_after=after)
    assert first == ()
    polls = []
    for r in reports[1:]:
        state, events = step(state, r, PROD, unreachable_after=after)
        polls.append(events)
    return polls


def brief(events: Iterable[Event]) -> list[tuple[str, str, str | None, str | None]]:
    return [(e.kind.value, e.subject, e.before, e.after) for e in events]


def with_node(name: str, **changes: bool) -> Change:
    def change(v: NodeView) -> NodeView:
        nodes = tuple(replace(n, **changes) if n.name == name else n for n in v.nodes)  # type: ignore[arg-type]
        return replace(v, nodes=nodes)
    return change


def pacemaker_down_everywhere() -> ClusterReport:
    """node2's real exit-102 answer from d_two_nodes_down, given by every node."""
    return merge("prod-haproxy", [NodeResult(n, view("d_two_nodes_down", "node2")) for n in NODES], PROD)


def complex_view() -> NodeView:
    return parse((FIXTURES / "crm_mon" / "complex-2.x.xml").read_bytes())


# ---------------------------------------------------------------- real sequences


def test_first_sight_reports_nothing_but_keeps_a_snapshot() -> None:
    state, events = step(None, report("d_two_nodes_down"), PROD)
    assert events == ()
    assert state.last is not None and state.last.quorate is False and state.last.members == ("node1",)
    assert state.last.vips == (("virtual_ip_1", ()), ("virtual_ip_2", ()), ("virtual_ip_3", ()))


def test_standby_then_unstandby() -> None:
    standby, back = run(report("a_healthy"), report("b_standby"), report("b2_unstandby"))
    # node2 in standby is not eligible: its missing clone instance is no gap, so no clone event.
    assert brief(standby) == [("node_standby", "node2", "active", "standby"),
                              ("vip_moved", "virtual_ip_2", "node2", "node3")]
    assert standby[0].remedy == Remedy("unstandby", ("node2",))
    assert standby[1].nodes == ("node2", "node3")
    assert brief(back) == [("node_unstandby", "node2", "standby", "active"),
                           ("vip_moved", "virtual_ip_2", "node3", "node2")]
    assert back[0].recovery and back[0].clears == (K.NODE_STANDBY,) and back[0].key == standby[0].key

    (inc,) = incidents(standby)
    assert (inc.key, inc.severity, inc.is_recovery) == ("node:node2", Severity.WARNING, False)
    assert inc.title == "node2 was put in standby; virtual_ip_2 moved node2 → node3"
    (rec,) = incidents(back)
    assert (rec.key, rec.is_recovery, rec.closes) == ("node:node2", True, ("node_standby:node2",))
    assert rec.title == "node2 left standby; virtual_ip_2 moved node3 → node2"


def test_crash_two_down_and_back() -> None:
    crash, two_down, node2_back, healed = run(
        report("a_healthy"), report("c_node3_crashed"), report("d_two_nodes_down"),
        report("g1_node2_back"), report("a_healthy"))
    assert brief(crash) == [("node_offline", "node3", "online", "offline"),
                            ("vip_moved", "virtual_ip_3", "node3", "node1")]
    assert brief(two_down) == [
        ("quorum_lost", "cluster", "with quorum", "without quorum"),
        ("node_offline", "node2", "online", "offline"),
        ("vip_stopped", "virtual_ip_1", "node1", None),
        ("vip_stopped", "virtual_ip_2", "node2", None),
        ("vip_stopped", "virtual_ip_3", "node1", None),
    ]
    lost = two_down[0]
    assert lost.severity is Severity.CRITICAL and lost.nodes == ("node1",)  # the partition
    assert lost.message == "quorum LOST: partition [node1] has no quorum; node2, node3 are not in it"
    assert lost.remedy == Remedy("start", ("node2",))  # the node that just left
    assert brief(node2_back) == [
        ("quorum_regained", "cluster", "without quorum", "with quorum"),
        ("node_online", "node2", "offline", "online"),
        ("vip_started", "virtual_ip_1", None, "node1"),
        ("vip_started", "virtual_ip_2", None, "node2"),
        ("vip_started", "virtual_ip_3", None, "node1"),
    ]
    assert node2_back[0].nodes == ("node1", "node2")
    assert brief(healed) == [("node_online", "node3", "offline", "online"),
                             ("vip_moved", "virtual_ip_3", "node1", "node3")]


def test_a_crash_is_one_incident_naming_the_vip_move() -> None:
    (crash,) = run(report("a_healthy"), report("c_node3_crashed"))
    (inc,) = incidents(crash)
    assert inc.key == "node:node3" and inc.severity is Severity.WARNING and not inc.is_recovery
    assert inc.title == "node3 went OFFLINE; virtual_ip_3 moved node3 → node1"
    assert inc.evidence == ("node3 went OFFLINE", "virtual_ip_3 moved node3 → node1")
    assert inc.remedy == Remedy("start", ("node3",))
    assert inc.opens == ("node_offline:node3",)


def test_quorum_loss_absorbs_the_whole_poll_and_its_return_resolves_it() -> None:
    two_down, node2_back = run(report("c_node3_crashed"), report("d_two_nodes_down"),
                               report("g1_node2_back"))
    (inc,) = incidents(two_down)
    assert (inc.key, inc.severity, inc.is_recovery) == ("quorum", Severity.CRITICAL, False)
    assert [e.kind for e in inc.cause] == [K.QUORUM_LOST]
    assert inc.title == ("quorum LOST: partition [node1] has no quorum; node2, node3 are not in it; "
                         "virtual_ip_1, virtual_ip_2, virtual_ip_3 STOPPED")
    assert inc.remedy == Remedy("start", ("node2",))
    (rec,) = incidents(node2_back)
    assert (rec.key, rec.is_recovery) == ("quorum", True)
    assert rec.title == ("quorum regained: partition [node1 node2]; "
                         "virtual_ip_1, virtual_ip_2, virtual_ip_3 started")
    assert set(rec.closes) == set(inc.opens)  # everything the loss opened is closed again


def test_failed_actions_then_cleanup() -> None:
    failed, cleaned = run(report("a_healthy"), report("e_failed_actions"), report("e2_after_cleanup"))
    assert brief(failed) == [
        ("failed_action", "virtual_ip_1@node1", None, "2026-11-25T21:20:56+00:00"),
        ("failed_action", "loadbalancer-clone@node2", None, "2026-11-25T21:20:50+00:00"),
    ]
    assert failed[1].message == "new failed action: monitor of loadbalancer on node2 (not running)"
    assert failed[1].remedy == Remedy("cleanup", ("loadbalancer-clone", "node2"))
    assert failed[1].key == "failed_action:loadbalancer-clone@node2:loadbalancer_monitor_10000"
    assert brief(cleaned) == [
        ("failed_action_cleared", "virtual_ip_1@node1", "not running", None),
        ("failed_action_cleared", "loadbalancer-clone@node2", "not running", None),
    ]
    assert [e.key for e in cleaned] == [e.key for e in failed]
    # fail-count 1 is far below the lab's migration-threshold: no threshold event.
    assert [(d.key, d.is_recovery) for d in incidents(failed)] == [
        ("vip:virtual_ip_1", False), ("resource:loadbalancer-clone", False)]
    assert [(d.key, d.is_recovery) for d in incidents(cleaned)] == [
        ("vip:virtual_ip_1", True), ("resource:loadbalancer-clone", True)]


def test_a_failure_again_under_the_same_key_is_news() -> None:
    def later(v: NodeView) -> NodeView:
        fa = v.failures[0]
        assert fa.last_rc_change is not None
        again = replace(fa, last_rc_change=fa.last_rc_change.replace(minute=30))
        return replace(v, failures=(again, *v.failures[1:]))
    (again,) = run(report("e_failed_actions"), report("e_failed_actions", later))
    assert brief(again) == [("failed_action", "virtual_ip_1@node1", "2026-11-25T21:20:56+00:00",
                             "2026-11-25T21:30:56+00:00")]
    assert again[0].message.startswith("failed again: monitor of virtual_ip_1 on node1")


def test_cluster_maintenance_on_and_off() -> None:
    on, off = run(report("a_healthy"), report("f2_cluster_maintenance"), report("a_healthy"))
    # Everything is unmanaged in maintenance-mode: the mode is the one event, not 4 unmanaged ones.
    assert brief(on) == [("maintenance_on", "cluster", "off", "on")]
    assert on[0].severity is Severity.WARNING
    assert brief(off) == [("maintenance_off", "cluster", "on", "off")]
    assert [(d.key, d.is_recovery) for d in incidents(on) + incidents(off)] == [
        ("maintenance", False), ("maintenance", True)]


# ---------------------------------------------------------------- SSH reachability


def test_a_node_is_unreachable_only_after_three_silent_polls() -> None:
    silent = report("a_healthy", node2="timed out")
    one, two, three, four, back = run(report("a_healthy"), silent, silent, silent, silent,
                                      report("a_healthy"))
    assert one == two == () and four == ()
    assert brief(three) == [("node_unreachable", "node2", "reachable", "unreachable")]
    assert three[0].severity is Severity.WARNING
    assert three[0].message == ("node2 did not answer 3 polls in a row although Pacemaker reports "
                                "it online: timed out")
    assert brief(back) == [("node_reachable", "node2", "unreachable", "reachable")]
    assert back[0].key == three[0].key == "node_unreachable:node2"
    assert [(d.key, d.is_recovery) for d in incidents(back)] == [("node:node2", True)]


def test_two_silent_polls_then_an_answer_is_no_news_and_resets_the_count() -> None:
    silent = report("a_healthy", node2="timed out")
    polls = run(report("a_healthy"), silent, silent, report("a_healthy"), silent, silent)
    assert polls == [(), (), (), (), ()]


def test_the_number_of_silent_polls_is_configurable() -> None:
    (one,) = run(report("a_healthy"), report("a_healthy", node3="timed out"), after=1)
    assert brief(one) == [("node_unreachable", "node3", "reachable", "unreachable")]


def test_a_silent_node_that_pacemaker_sees_offline_is_only_info() -> None:
    silent = report("c_node3_crashed", node3="connection refused")
    polls = run(report("c_node3_crashed"), silent, silent, silent)
    assert polls[2][0].severity is Severity.INFO
    assert polls[2][0].message == "node3 did not answer 3 polls in a row: connection refused"


# ---------------------------------------------------------------- no view at all


def test_pacemaker_down_everywhere_is_one_event_at_once_then_quiet() -> None:
    dead = pacemaker_down_everywhere()
    gone, still, back = run(report("a_healthy"), dead, dead, report("a_healthy"))
    assert brief(gone) == [("cluster_unreachable", "cluster", "seen", "no view")]
    assert gone[0].severity is Severity.CRITICAL and gone[0].nodes == NODES
    assert "node1: Pacemaker not running" in gone[0].message
    assert still == ()  # and no "VIP stopped" storm: without a view nothing is known to be stopped
    assert brief(back) == [("cluster_reachable", "cluster", "no view", "seen")]
    assert back[0].key == gone[0].key
    assert [(d.key, d.is_recovery) for d in incidents(back)] == [("view", True)]


def test_ssh_silence_everywhere_waits_three_polls_and_then_says_it_once() -> None:
    dark = report("a_healthy", node1="timed out", node2="timed out", node3="timed out")
    one, two, three, four = run(report("a_healthy"), dark, dark, dark, dark)
    assert one == two == () and four == ()
    # One cluster event; per-node verdicts wait for a view rather than add three more alerts.
    assert brief(three) == [("cluster_unreachable", "cluster", "seen", "no view")]
    assert "node1: timed out; node2: timed out; node3: timed out" in three[0].message


def test_a_short_blackout_is_no_news_and_changes_seen_after_it_are_diffed() -> None:
    dark = report("a_healthy", node1="timed out", node2="timed out", node3="timed out")
    polls = run(report("a_healthy"), dark, report("c_node3_crashed"))
    assert polls[0] == ()
    assert brief(polls[1]) == [("node_offline", "node3", "online", "offline"),
                               ("vip_moved", "virtual_ip_3", "node3", "node1")]


def test_after_a_long_blackout_the_return_and_what_changed_meanwhile() -> None:
    dark = report("a_healthy", node1="timed out", node2="timed out", node3="timed out")
    *_, back = run(report("a_healthy"), dark, dark, dark, report("c_node3_crashed", node3="timed out"))
    # node3 is still silent after 4 polls: its verdict comes with the view; Pacemaker sees it offline.
    assert brief(back) == [("cluster_reachable", "cluster", "no view", "seen"),
                           ("node_offline", "node3", "online", "offline"),
                           ("vip_moved", "virtual_ip_3", "node3", "node1"),
                           ("node_unreachable", "node3", "reachable", "unreachable")]
    drafts = incidents(back)
    assert [(d.key, [e.kind.value for e in d.events]) for d in drafts] == [
        ("node:node3", ["node_offline", "node_unreachable", "vip_moved"]),
        ("view", ["cluster_reachable"]),
    ]


def test_first_sight_without_a_view_then_the_view() -> None:
    dead = pacemaker_down_everywhere()
    state, events = step(None, dead, PROD)
    assert events == () and state.last is None and state.no_view_said
    # The watcher's first alert said "no view": its recovery closes it.
    _, events = step(state, report("a_healthy"), PROD)
    assert brief(events) == [("cluster_reachable", "cluster", "no view", "seen")]


# ---------------------------------------------------------------- more kinds, from real views edited


def test_nodes_disagree_and_agree_again() -> None:
    # node3 answers with node1's view from d_two_nodes_down: alone, without quorum; the others quorate.
    mixed = merge("prod-haproxy", [NodeResult("node1", view("a_healthy", "node1")),
                                   NodeResult("node2", view("a_healthy", "node2")),
                                   NodeResult("node3", view("d_two_nodes_down", "node1"))], PROD)
    *quiet, out, back = run(report("a_healthy"), mixed, mixed, mixed, report("a_healthy"))
    assert quiet == [(), ()]  # views differ for a few seconds in every failover: wait for 3 polls
    assert brief(out) == [("nodes_disagree", "node3", None, "out_of_sync")]
    assert out[0].severity is Severity.WARNING and out[0].remedy == Remedy("resync", ("node3",))
    assert "node3 is out of sync with the cluster" in out[0].message
    assert brief(back) == [("nodes_agree", "node3", "out_of_sync", None)]
    assert [d.key for d in incidents(out)] == ["node:node3"]


def test_a_disagreement_of_one_poll_is_no_news() -> None:
    """During a failover the nodes' views differ for a moment; that is no out-of-sync node."""
    mixed = merge("prod-haproxy", [NodeResult("node1", view("a_healthy", "node1")),
                                   NodeResult("node2", view("a_healthy", "node2")),
                                   NodeResult("node3", view("d_two_nodes_down", "node1"))], PROD)
    assert run(report("a_healthy"), mixed, report("a_healthy"), mixed, mixed, report("a_healthy")) == [
        (), (), (), (), ()]


def test_out_of_sync_turning_into_split_brain_is_news() -> None:
    def other_dc(v: NodeView) -> NodeView:
        return replace(v, summary=replace(v.summary, dc_name="node3"))
    rest = [NodeResult(n, view("a_healthy", n)) for n in NODES[1:]]  # node3's is the reference
    out = merge("prod-haproxy", [NodeResult("node1", view("d_two_nodes_down", "node1")), *rest], PROD)
    split = merge("prod-haproxy", [NodeResult("node1", other_dc(view("a_healthy", "node1"))), *rest], PROD)
    *_, events = run(out, out, out, split, split, split)
    assert brief(events) == [("nodes_disagree", "node1", None, "split_brain")]
    assert events[0].severity is Severity.CRITICAL and "SPLIT BRAIN" in events[0].message


@pytest.mark.parametrize("attr,problem,recovery,severity", [
    ("unclean", K.NODE_UNCLEAN, K.NODE_CLEAN, Severity.CRITICAL),
    ("pending", K.NODE_PENDING, K.NODE_JOINED, Severity.WARNING),
    ("maintenance", K.NODE_MAINTENANCE, K.NODE_UNMAINTENANCE, Severity.WARNING),
])
def test_node_states(attr: str, problem: EventKind, recovery: EventKind, severity: Severity) -> None:
    bad = report("a_healthy", with_node("node1", **{attr: True}))
    on, off = run(report("a_healthy"), bad, report("a_healthy"))
    assert [(e.kind, e.subject, e.severity) for e in on] == [(problem, "node1", severity)]
    assert [(e.kind, e.subject, e.key) for e in off] == [(recovery, "node1", on[0].key)]


def test_dc_lost_elected_and_changed() -> None:
    def dc(name: str | None) -> Change:
        return lambda v: replace(v, summary=replace(v.summary, dc_present=name is not None, dc_name=name))
    none, elected, changed = run(report("a_healthy"), report("a_healthy", dc(None)),
                                 report("a_healthy", dc("node2")), report("a_healthy"))
    assert brief(none) == [("no_dc", "cluster", "node1", None)] and none[0].severity is Severity.CRITICAL
    assert brief(elected) == [("dc_elected", "cluster", None, "node2")] and elected[0].recovery
    assert brief(changed) == [("dc_changed", "cluster", "node2", "node1")] and changed[0].neutral


def test_node_back_with_vips_stacked_is_a_recovery_and_two_new_problems() -> None:
    # node2 left standby but virtual_ip_2 stayed on node3 and the clone did not start on node2 yet.
    stuck = report("b_standby", with_node("node2", standby=False))
    (events,) = run(report("b_standby"), stuck)
    assert brief(events) == [("node_unstandby", "node2", "standby", "active"),
                             ("vips_unbalanced", "vips", None, "vip_spread"),
                             ("clone_stopped", "loadbalancer-clone@node2", "running", "stopped")]
    assert events[1].remedy == Remedy("move", ("virtual_ip_3", "node2"))
    assert events[2].remedy == Remedy("cleanup", ("loadbalancer-clone", "node2"))
    # A recovery cause does not swallow problems of the same poll: they are incidents of their own.
    assert [(d.key, d.is_recovery) for d in incidents(events)] == [
        ("vips", False), ("resource:loadbalancer-clone", False), ("node:node2", True)]
    (healed,) = run(stuck, report("b2_unstandby"))
    assert brief(healed) == [("vips_balanced", "vips", "vip_spread", None),
                             ("vip_moved", "virtual_ip_2", "node3", "node2"),
                             ("clone_started", "loadbalancer-clone@node2", "stopped", "running")]
    assert healed[2].message == "loadbalancer-clone is running on node2 again"


def test_a_clone_gap_closed_by_the_node_going_away_is_absorbed_by_the_node() -> None:
    stuck = report("b_standby", with_node("node2", standby=False))
    (events,) = run(stuck, report("b_standby"))
    gap = next(e for e in events if e.kind is K.CLONE_STARTED)
    assert gap.message == "loadbalancer-clone is no longer expected on node2: node2 cannot run resources now"
    (inc,) = [d for d in incidents(events) if d.key == "node:node2"]
    # The VIP spread was node2's too (it served none): issue 14 groups it with its node.
    assert [e.kind for e in inc.events] == [K.NODE_STANDBY, K.VIPS_BALANCED, K.CLONE_STARTED]
    assert inc.opens == ("node_standby:node2",)
    assert inc.closes == ("vips_unbalanced:vips", "clone_stopped:loadbalancer-clone@node2")


def test_the_recovery_in_a_problem_draft_is_a_draft_of_its_own() -> None:
    # The watcher posts the absorbed clone recovery to the clone's incident, not node2's.
    stuck = report("b_standby", with_node("node2", standby=False))
    (inc,) = [d for d in incidents(run(stuck, report("b_standby"))[0]) if d.key == "node:node2"]
    assert inc.is_problem
    part = inc.only(lambda e: e.recovery)
    assert part is not None and (part.key, part.is_recovery, part.is_problem) == ("node:node2", True, False)
    assert part.title == ("VIPs are one per node again; "
                          "loadbalancer-clone is no longer expected on node2: node2 cannot run resources now")
    assert part.closes == inc.closes and part.opens == ()
    assert inc.only(lambda e: e.kind is K.FENCE_FAILED) is None


def test_the_retries_of_a_failing_fence_are_one_series_of_one_shots() -> None:
    # Each failed attempt is news of its own (its own key), yet of one series: paged once per incident.
    start = datetime(2024, 1, 1, tzinfo=UTC)

    def attempts(n: int) -> Change:
        history = tuple(FenceEvent("reboot", "node3", "failed", exit_reason="timed out",
                                   completed=start + timedelta(seconds=40 * i)) for i in range(n))
        return lambda v: replace(v, fence_history=history)

    polls = run(report("a_healthy"), *(report("a_healthy", attempts(n)) for n in (1, 2)))
    (one,), (two,) = polls
    assert (one.kind, two.kind) == (K.FENCE_FAILED, K.FENCE_FAILED) and one.one_shot and two.one_shot
    assert one.key != two.key and one.series == two.series == "fence_failed:node3"
    assert incidents(polls[1])[0].opens == ()


def test_an_escalated_draft_tells_the_whole_story_and_survives_json() -> None:
    standby, unclean = run(report("a_healthy"), report("a_healthy", with_node("node3", standby=True)),
                           report("a_healthy", with_node("node3", standby=True, online=False, unclean=True)))
    (first,), (worse,) = incidents(standby), incidents(unclean)
    whole = first.merged(worse)
    assert (whole.key, whole.severity) == ("node:node3", Severity.CRITICAL)
    assert whole.title.startswith("node3 was put in standby; node3 went OFFLINE; node3 is UNCLEAN")
    assert whole.remedy == first.remedy == Remedy("unstandby", ("node3",))
    assert IncidentDraft.from_json(json.loads(json.dumps(whole.to_json()))) == whole
    with pytest.raises(ValueError):
        IncidentDraft.from_json({"key": "node:node3", "cause": [], "effects": []})
    with pytest.raises(ValueError):
        IncidentDraft.from_json({"key": "node:node3"})


def test_resource_flags_thresholds_failures_and_fencing_on_the_complex_cluster() -> None:
    after = complex_view()
    calm = replace(
        after, failures=(), fence_history=(),
        history=tuple(replace(h, fail_count=0) for h in after.history),
        instances=tuple(replace(i, failed=False, blocked=False, managed=True) for i in after.instances))
    before_snap, after_snap = snapshot(single(calm)), snapshot(single(after))
    events = diff(before_snap, after_snap)
    assert [(e.kind.value, e.subject, e.severity) for e in events] == [
        ("fence_succeeded", "core2", Severity.WARNING),
        ("fence_failed", "core3", Severity.CRITICAL),  # the pending one has no outcome yet
        ("resource_failed", "web-group", Severity.WARNING),
        ("resource_blocked", "web-group", Severity.CRITICAL),
        ("resource_unmanaged", "web-group", Severity.WARNING),
        ("failed_action", "web-group@core2", Severity.WARNING),
        ("threshold_reached", "web-group@core2", Severity.CRITICAL),
    ]
    assert events[1].message == "fencing (reboot) of core3 FAILED: timed out"
    assert events[6].remedy == Remedy("cleanup", ("web-group", "core2"))
    back = diff(after_snap, before_snap)
    assert [e.kind.value for e in back] == [
        "resource_recovered", "resource_unblocked", "resource_managed", "failed_action_cleared",
        "threshold_cleared"]  # fence history entries only ever appear
    assert all(e.recovery for e in back)


def test_failed_vip_is_critical() -> None:
    def failed(v: NodeView) -> NodeView:
        return replace(v, instances=tuple(replace(i, failed=i.id == "virtual_ip_1") for i in v.instances))
    on, off = run(report("a_healthy"), report("a_healthy", failed), report("a_healthy"))
    assert [(e.kind, e.subject, e.severity, e.group) for e in on] == [
        (K.RESOURCE_FAILED, "virtual_ip_1", Severity.CRITICAL, "vip:virtual_ip_1")]
    assert [e.kind for e in off] == [K.RESOURCE_RECOVERED]


def test_threshold_on_a_real_fail_count() -> None:
    def low_threshold(v: NodeView) -> NodeView:
        hist: tuple[ResourceHistory, ...] = tuple(replace(h, migration_threshold=1) for h in v.history)
        return replace(v, history=hist)
    (events,) = run(report("e_failed_actions"), report("e_failed_actions", low_threshold))
    assert brief(events) == [("threshold_reached", "loadbalancer-clone@node2", None, "1/1"),
                             ("threshold_reached", "virtual_ip_1@node1", None, "1/1")]


# ---------------------------------------------------------------- grouping rules


def test_unrelated_problems_are_separate_incidents_worst_first() -> None:
    (events,) = run(report("a_healthy"), report("b_standby", with_node("node1", unclean=True)))
    drafts = incidents(events)
    assert [(d.key, d.severity) for d in drafts] == [
        ("node:node1", Severity.CRITICAL), ("node:node2", Severity.WARNING)]
    assert drafts[1].title == "node2 was put in standby; virtual_ip_2 moved node2 → node3"


def test_every_event_lands_in_exactly_one_incident() -> None:
    polls = run(report("a_healthy"), report("c_node3_crashed"), report("d_two_nodes_down"),
                report("g1_node2_back"), report("e_failed_actions"), report("f2_cluster_maintenance"))
    for events in polls:
        grouped = [e for d in incidents(events) for e in d.events]
        assert sorted(grouped, key=repr) == sorted(events, key=repr)


def test_a_lone_vip_move_is_a_neutral_notice() -> None:
    (inc,) = incidents(run(report("c_node3_crashed"), report("c_node3_crashed", _swap_vip3))[0])
    assert (inc.key, inc.severity, inc.is_recovery, inc.opens) == (
        "vip:virtual_ip_3", Severity.INFO, False, ())


def _swap_vip3(v: NodeView) -> NodeView:
    return replace(v, instances=tuple(replace(i, nodes=("node2",)) if i.id == "virtual_ip_3" else i
                                      for i in v.instances))


def test_a_quiet_poll_has_no_incidents() -> None:
    assert incidents(()) == ()


def test_first_sight_in_the_dark_then_the_view_closes_the_watchers_first_alert() -> None:
    dark = report("a_healthy", node1="timed out", node2="timed out", node3="timed out")
    state, events = step(None, dark, PROD)
    assert events == () and state.no_view_said
    _, events = step(step(state, dark, PROD)[0], report("a_healthy"), PROD)
    assert brief(events) == [("cluster_reachable", "cluster", "no view", "seen")]


# ---------------------------------------------------------------- persistence


def test_watch_state_survives_a_json_round_trip() -> None:
    state, _ = step(None, report("e_failed_actions"), PROD)
    state, _ = step(state, report("c_node3_crashed", node3="timed out"), PROD)
    stored = json.loads(json.dumps(state.to_json()))
    assert WatchState.from_json(stored) == state
    # The restored state goes on exactly like the one that never left memory.
    nxt = report("c_node3_crashed", node3="timed out")
    assert step(WatchState.from_json(stored), nxt, PROD) == step(state, nxt, PROD)


def test_snapshot_and_events_round_trip_with_fences_and_flags() -> None:
    snap = snapshot(single(complex_view()))
    assert Snapshot.from_json(json.loads(json.dumps(snap.to_json()))) == snap
    for event in diff(replace(snap, fences=(), failed=(), thresholds=()), snap):
        assert Event.from_json(json.loads(json.dumps(event.to_json()))) == event


@pytest.mark.parametrize("data", [
    {"version": 99},
    {},
    {"version": 1, "misses": [["node1", "three"]]},
    {"version": 1, "no_view_said": 1},
    {"version": 1, "last": {"cluster": "c", "nodes": "node1"}},
])
def test_unreadable_state_is_a_value_error(data: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        WatchState.from_json(data)


# ---------------------------------------------------------------- flapping


def toggled(*times: float, limit: int = 4, window: float = 600.0) -> Flapping:
    f = Flapping(limit, window)
    for t in times:
        f = f.record("node_offline:node3", t)
    return f


@pytest.mark.parametrize("times,now,flapping", [
    ((), 0.0, False),
    ((0, 60, 120, 180), 180.0, False),  # 4 toggles: not more than 4
    ((0, 60, 120, 180, 240), 240.0, True),  # the 5th within 10 minutes
    ((0, 60, 120, 180, 240), 599.0, True),
    ((0, 60, 120, 180, 240), 600.0, False),  # the first has left the window
    ((0, 200, 400, 600, 800), 800.0, False),  # steady but slow: never 5 in a window
    ((0, 1, 2, 3, 4, 5, 6, 7), 7.0, True),
])
def test_flapping_table(times: tuple[float, ...], now: float, flapping: bool) -> None:
    assert toggled(*times).is_flapping("node_offline:node3", now) is flapping


@pytest.mark.parametrize("limit,window,times,now,flapping", [
    (2, 60.0, (0, 10, 20), 20.0, True),
    (2, 60.0, (0, 10, 70), 70.0, False),
    (1, 5.0, (0, 4.9), 4.9, True),
])
def test_flapping_limits_are_configurable(limit: int, window: float, times: tuple[float, ...],
                                          now: float, flapping: bool) -> None:
    assert toggled(*times, limit=limit, window=window).is_flapping("node_offline:node3", now) is flapping


def test_flapping_keys_are_independent_and_old_toggles_are_forgotten() -> None:
    f = toggled(0, 60, 120, 180, 240).record("quorum_lost:cluster", 250)
    assert f.flapping(250.0) == ("node_offline:node3",)
    assert not f.is_flapping("quorum_lost:cluster", 250.0)
    assert f.stable_since("node_offline:node3") == 240.0 and f.stable_since("other") is None
    later = f.record("quorum_lost:cluster", 2000.0)
    assert later.toggles == (("quorum_lost:cluster", (2000.0,)),)
    assert later.stable_since("node_offline:node3") is None  # quiet for a whole window: stable


def test_flapping_round_trips_through_json() -> None:
    f = toggled(0, 60.5, 120)
    assert Flapping.from_json(json.loads(json.dumps(f.to_json()))) == f
    assert f.record("k", 1.0) is not f and f.count("k", 1.0) == 0  # immutable


def test_a_vip_stopped_then_started_elsewhere_is_named_a_move() -> None:
    """A poll between Pacemaker's stop and start sees the VIP STOPPED; the start elsewhere then
    completes a move (real states: all VIPs stopped, then virtual_ip_3 up on node1)."""
    _, _, back = run(report("a_healthy"), report("a_healthy"), report("d_two_nodes_down"),
                     report("c_node3_crashed"))
    started = {e.subject: e for e in back if e.kind is K.VIP_STARTED}
    assert started["virtual_ip_3"].message == "virtual_ip_3 moved node3 → node1 (stopped in between)"
    assert started["virtual_ip_1"].message == "virtual_ip_1 started on node1"  # back where it was


# ---------------------------------------------------------------- grouping, any sequence

STATES = ("a_healthy", "b_standby", "b2_unstandby", "c_node3_crashed", "d_two_nodes_down",
          "e_failed_actions", "e2_after_cleanup", "f2_cluster_maintenance", "g1_node2_back", "ALL_DOWN")


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(STATES), min_size=2, max_size=6))
def test_every_event_of_any_sequence_lands_in_exactly_one_titled_draft(names: list[str]) -> None:
    # A regained view and a regained quorum in one poll (pacemaker back on every node after it
    # was down everywhere) once left an empty draft behind, and the watcher raised on it every
    # poll from then on: no alert for that cluster again.
    state = None
    for name in names:
        r = pacemaker_down_everywhere() if name == "ALL_DOWN" else report(name)
        state, events = step(state, r, PROD)
        drafts = incidents(events)
        grouped = [id(e) for d in drafts for e in d.events]
        assert sorted(grouped) == sorted(id(e) for e in events)
        assert all(d.cause and d.title for d in drafts)
        assert [d.severity for d in drafts] == sorted((d.severity for d in drafts), reverse=True)


def test_a_vip_seen_on_two_nodes_at_once_is_said_so_not_moved_to_a_list() -> None:
    """Seen on the lab: on node3's rejoin Pacemaker's probe found virtual_ip_3 up on node1 and
    node3 for a second; the alert read "virtual_ip_3 moved node1 → node1 node3"."""
    healthy = snapshot(report("a_healthy"))
    on = dict(healthy.vips)
    assert on["virtual_ip_3"] == ("node3",)

    def vip3_on(*nodes: str) -> Snapshot:
        return replace(healthy, vips=tuple((v, nodes if v == "virtual_ip_3" else n) for v, n in healthy.vips))

    moved, both = vip3_on("node1"), vip3_on("node1", "node3")
    said = [e.message for e in (*diff(moved, both), *diff(both, healthy))
            if e.kind is EventKind.VIP_MOVED]
    assert said == ["virtual_ip_3 is active on node1 and node3 at once (was on node1)",
                    "virtual_ip_3 is active only on node3 again (was on node1 and node3 at once)"]
    assert [e.message for e in diff(healthy, moved)] == ["virtual_ip_3 moved node3 → node1"]
