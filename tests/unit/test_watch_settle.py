"""Settling with Pacemaker's own word on whether it is acting (issue 14): `busy` read from the poll
(a transition, pending actions) holds derived findings, an idle read releases what still holds,
and `settle_s` bounds every hold whatever Pacemaker says."""

from __future__ import annotations

from dataclasses import replace

from bot.pacemaker.diff import EventKind
from bot.watch.settle import Settling, pacemaker_busy, settle
from tests.unit.test_controller import _snap
from tests.unit.test_watch_core import ev

K = EventKind
GAP = ev(K.CLONE_STOPPED, "loadbalancer-clone@node3", nodes=("node3",))
STOPPED = ev(K.RESOURCE_STOPPED, "virtual_ip_1", nodes=("node1",))
STARTED = replace(ev(K.RESOURCE_STARTED, "virtual_ip_1"), key=STOPPED.key)


def test_a_derived_finding_while_pacemaker_reads_busy_is_held_and_dropped_if_it_clears() -> None:
    # Before: with no node change and no fix, this was news at once.
    assert settle(Settling(), (STOPPED,), 100.0, 15.0)[1] == (STOPPED,)
    state, news = settle(Settling(), (STOPPED,), 100.0, 15.0, busy=True)
    assert news == () and state.holds(STOPPED.key)
    state, news = settle(state, (STARTED,), 101.0, 15.0, busy=False)
    assert news == () and not state.held


def test_a_held_finding_still_true_once_pacemaker_reads_idle_is_released_then() -> None:
    state, _ = settle(Settling(), (STOPPED,), 100.0, 15.0, busy=True)
    state, news = settle(state, (), 101.0, 15.0, busy=True)
    assert news == ()
    state, news = settle(state, (), 102.0, 15.0, busy=False)
    assert news == (STOPPED,) and not state.held  # 2 s, not settle_s


def test_settle_s_bounds_the_hold_however_long_pacemaker_acts() -> None:
    state, _ = settle(Settling(), (STOPPED,), 100.0, 15.0, busy=True)
    state, news = settle(state, (), 114.9, 15.0, busy=True)
    assert news == ()
    state, news = settle(state, (), 115.0, 15.0, busy=True)
    assert news == (STOPPED,) and not state.held


def test_unreadable_is_not_idle_the_hold_lasts_settle_s() -> None:
    state, _ = settle(Settling(), (STOPPED,), 100.0, 15.0, busy=True)
    state, news = settle(state, (), 102.0, 15.0, busy=None)
    assert news == () and state.holds(STOPPED.key)
    assert settle(state, (), 115.0, 15.0, busy=None)[1] == (STOPPED,)


def test_idle_releases_nothing_while_a_node_change_or_a_fix_is_recent() -> None:
    # A rebalance after a rejoin runs several transitions with idle gaps between them.
    state, _ = settle(Settling(), (ev(K.NODE_ONLINE, "node3"), GAP), 100.0, 15.0, busy=True)
    state, news = settle(state, (), 103.0, 15.0, busy=False)
    assert news == () and state.holds(GAP.key)
    assert settle(state, (), 115.0, 15.0, busy=False)[1] == (GAP,)
    fixing, _ = settle(Settling(), (STOPPED,), 100.0, 15.0, fixing=True)
    state, news = settle(fixing, (), 102.0, 15.0, fixing=True, busy=False)
    assert news == () and state.holds(STOPPED.key)


def test_idle_releases_only_derived_findings_a_link_or_a_move_waits_for_the_membership() -> None:
    # Links drop and VIPs move away while Pacemaker is idle, before the membership loses the node.
    link = ev(K.LINK_DOWN, "link 0 node1↔node3", nodes=("node1", "node3"))
    moved = ev(K.VIP_MOVED, "virtual_ip_3", before="node3", after="node1")
    state, news = settle(Settling(), (link, moved), 100.0, 15.0, busy=False)
    assert news == ()
    state, news = settle(state, (), 102.0, 15.0, busy=False)
    assert news == () and state.holds(link.key) and state.holds(moved.key)


def test_critical_conditions_are_never_held_even_while_pacemaker_acts() -> None:
    lost = (ev(K.NODE_OFFLINE, "node3", nodes=("node3",)), ev(K.VIP_STOPPED, "virtual_ip_3"))
    assert settle(Settling(), lost, 100.0, 15.0, busy=True)[1] == lost


def test_busy_is_the_snapshots_reading_and_unknown_without_a_view() -> None:
    assert pacemaker_busy(None) is None
    assert pacemaker_busy(_snap({"node1": "S_IDLE"})) is False
    assert pacemaker_busy(_snap({"node1": "S_TRANSITION_ENGINE"})) is True
    assert pacemaker_busy(_snap({"node1": ""})) is None


def test_a_vip_move_waits_even_while_pacemaker_reads_busy_moving_it_is_the_transition() -> None:
    # `pcs cluster stop` moves the VIPs away before the membership loses the node: the move must
    # still wait to be absorbed by the node's loss, although Pacemaker is busy moving it.
    moved = ev(K.VIP_MOVED, "virtual_ip_3", before="node3", after="node1")
    state, news = settle(Settling(), (moved,), 100.0, 15.0, busy=True)
    assert news == () and state.holds(moved.key)


def test_a_node_not_answering_while_it_leaves_is_held_and_its_answer_again_says_nothing() -> None:
    # Recorded: `pcs cluster stop` on node3; its crm_mon answered "Could not connect to the CIB"
    # for 2 s (three 1 s polls without an answer), then "not connected". Both were told in the
    # thread while node3 was gone ("node3 answers again" read as a recovery).
    offline = ev(K.NODE_OFFLINE, "node3", nodes=("node3",))
    silent = ev(K.NODE_UNREACHABLE, "node3", nodes=("node3",))
    answers = replace(ev(K.NODE_REACHABLE, "node3", nodes=("node3",)), key=silent.key)
    state, news = settle(Settling(), (offline,), 100.0, 15.0)
    assert news == (offline,)
    state, news = settle(state, (silent,), 102.0, 15.0)
    assert news == () and state.holds(silent.key)
    state, news = settle(state, (answers,), 103.0, 15.0)
    assert news == () and not state.held


def test_daemons_seen_dead_wait_for_the_membership_and_their_flicker_says_nothing() -> None:
    # Recorded power cut: node3's systemctl said corosync and pacemaker inactive while its crm_mon
    # still answered; a poll later crm_mon failed there, so the finding went ("active again").
    dead = ev(K.DAEMON_INACTIVE, "node3", nodes=("node3",))
    again = replace(ev(K.DAEMON_ACTIVE, "node3", nodes=("node3",)), key=dead.key)
    state, news = settle(Settling(), (dead,), 100.0, 15.0)
    assert news == () and state.holds(dead.key)
    state, news = settle(state, (again,), 100.25, 15.0)
    assert news == () and not state.held
    state, _ = settle(Settling(), (dead,), 100.0, 15.0)
    offline = ev(K.NODE_OFFLINE, "node3", nodes=("node3",))
    state, news = settle(state, (offline,), 103.5, 15.0)
    assert news == (offline,) and not state.held  # the node's loss is the news
    state, _ = settle(Settling(), (dead,), 100.0, 15.0)
    assert settle(state, (), 115.0, 15.0)[1] == (dead,)  # still dead, node still in: told
