"""The incident lifecycle's pure core (bot/watch/): settling, grouping, fixes, and the diff facts it
relies on, over the real recorded lab sequences where the timing matters."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from bot.collect import Ask, Collector
from bot.pacemaker.diff import EventKind, IncidentDraft, WatchState, diff, incidents, step
from bot.pacemaker.health import Severity
from bot.pacemaker.merge import ClusterReport
from bot.settings import Settings
from bot.watch.events import Event
from bot.watch.fixes import Fix, explaining
from bot.watch.grouping import coalesce, owner
from bot.watch.settle import Settling, settle
from tests.fakes.replay import ReplayPool, VClock, cluster_of
from tests.fakes.sequences import load

K = EventKind
NODES = ("node1", "node2", "node3")
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def at(name: str, t: float) -> ClusterReport:
    """What the real collector makes of every node's recorded answers at t."""
    seq = load(name)
    cluster = cluster_of(seq)
    collector = Collector(pool=ReplayPool(seq, VClock(t)), settings=Settings(clusters=(cluster,)),  # type: ignore[arg-type]
                          now=VClock(t).now)
    return asyncio.run(collector.collect(cluster, ask=Ask.ALL))


def events_between(name: str, t0: float, t1: float) -> tuple[Event, ...]:
    cluster = cluster_of(load(name))
    state, _ = step(None, at(name, t0), cluster.expectations)
    _, events = step(state, at(name, t1), cluster.expectations)
    return events


def ev(kind: EventKind, subject: str, *, nodes: tuple[str, ...] = (), before: str | None = None,
       after: str | None = None, group: str = "") -> Event:
    family = {K.VIPS_BALANCED: K.VIPS_UNBALANCED, K.CLONE_STARTED: K.CLONE_STOPPED,
              K.VIP_STARTED: K.VIP_STOPPED}.get(kind, kind)
    severity = Severity.CRITICAL if kind is K.VIP_STOPPED else Severity.WARNING
    return Event(kind, severity, subject, f"{kind} {subject}", before, after, nodes, None,
                 f"{family}:{subject}", group or f"x:{subject}")


# ---------------------------------------------------------------- diff facts, on the recordings


def test_a_power_cut_shows_its_links_down_before_the_membership_loss_and_never_up_while_gone() -> None:
    # power_cut_rejoin (the 2026-12-02 13:52 take): node1's cfgtool says node3 disconnected at
    # 6.31 s, its quorum view loses node3 at 9.58 s, node3 is back at 13.60 s.
    early = events_between("power_cut_rejoin", 3.0, 7.0)
    assert {e.kind for e in early} >= {K.LINK_DOWN}
    assert K.MEMBER_LOST not in {e.kind for e in early}
    gone = events_between("power_cut_rejoin", 7.0, 10.0)
    assert K.MEMBER_LOST in {e.kind for e in gone}
    assert K.LINK_UP not in {e.kind for e in gone}  # was: "link 0 node1↔node3 is up again" (false)


def test_a_node_that_left_and_rejoined_between_two_polls_is_seen_by_its_ring_id() -> None:
    events = events_between("power_cut_rejoin", 3.0, 14.5)
    bounced = [e for e in events if e.kind is K.NODE_BOUNCED]
    assert [e.subject for e in bounced] == ["node3"] and bounced[0].group == "node:node3"


# ---------------------------------------------------------------- settling


def test_a_derived_finding_is_held_while_acting_and_dropped_when_it_clears() -> None:
    online = ev(K.NODE_ONLINE, "node3", nodes=("node3",))
    spread = ev(K.VIPS_UNBALANCED, "vips", nodes=("node1", "node3"))
    state, news = settle(Settling(), (online, spread), 100.0, 15.0)
    assert news == (online,) and state.holds(spread.key)
    state, news = settle(state, (ev(K.VIPS_BALANCED, "vips"),), 105.0, 15.0)
    assert news == () and not state.held


def test_a_derived_finding_still_true_after_settle_s_is_released() -> None:
    gap = ev(K.CLONE_STOPPED, "loadbalancer-clone@node3", nodes=("node3",))
    state, _ = settle(Settling(), (ev(K.NODE_ONLINE, "node3"), gap), 100.0, 15.0)
    state, news = settle(state, (), 114.9, 15.0)
    assert news == ()
    state, news = settle(state, (), 115.0, 15.0)
    assert news == (gap,) and not state.held


def test_with_nothing_acting_a_derived_finding_is_news_at_once() -> None:
    gap = ev(K.CLONE_STOPPED, "loadbalancer-clone@node3", nodes=("node3",))
    assert settle(Settling(), (gap,), 100.0, 15.0)[1] == (gap,)


def test_critical_losses_are_never_held_a_vip_stop_only_while_a_node_joins() -> None:
    lost = (ev(K.NODE_OFFLINE, "node3", nodes=("node3",)), ev(K.VIP_STOPPED, "virtual_ip_3"))
    assert settle(Settling(), lost, 100.0, 15.0)[1] == lost
    joined, _ = settle(Settling(), (ev(K.NODE_ONLINE, "node3"),), 100.0, 15.0)
    state, news = settle(joined, (ev(K.VIP_STOPPED, "virtual_ip_3"),), 101.0, 15.0)
    assert news == () and state.holds("vip_stopped:virtual_ip_3")


def test_a_link_down_waits_and_goes_when_its_node_leaves() -> None:
    link = ev(K.LINK_DOWN, "link 0 node1↔node3", nodes=("node1", "node3"))
    state, news = settle(Settling(), (link,), 100.0, 15.0)
    assert news == () and state.holds(link.key)
    offline = ev(K.NODE_OFFLINE, "node3", nodes=("node3",))
    state, news = settle(state, (offline,), 102.0, 15.0)
    assert news == (offline,) and not state.held


def test_a_vip_move_and_its_way_back_within_settle_s_say_nothing() -> None:
    there = ev(K.VIP_MOVED, "virtual_ip_1", before="node1", after="node3")
    back = ev(K.VIP_MOVED, "virtual_ip_1", before="node3", after="node1")
    state, news = settle(Settling(), (there,), 100.0, 15.0)
    assert news == ()
    state, news = settle(state, (back,), 104.0, 15.0)
    assert news == () and not state.held


def test_settling_survives_a_restart_in_the_watch_state() -> None:
    link = ev(K.LINK_DOWN, "link 0 node1↔node3", nodes=("node1", "node3"))
    held, _ = settle(Settling(), (link,), 1.0, 15.0)
    state = replace(WatchState(), settling=held)
    assert WatchState.from_json(state.to_json()) == state


# ---------------------------------------------------------------- grouping


def draft(*events: Event) -> IncidentDraft:
    (d,) = incidents(events)
    return d


def test_a_link_belongs_to_its_node_out_of_the_membership() -> None:
    link = draft(ev(K.LINK_DOWN, "link 0 node1↔node3", nodes=("node1", "node3"), group="link:l"))
    assert owner(link, nodes=NODES, members=("node1", "node2"), incidents=()) == "node:node3"


def test_a_vip_move_belongs_to_the_node_whose_incident_is_open() -> None:
    move = draft(ev(K.VIP_MOVED, "virtual_ip_3", nodes=("node1", "node3"), group="vip:virtual_ip_3"))
    assert owner(move, nodes=NODES, members=NODES, incidents=("node:node3",)) == "node:node3"
    assert owner(move, nodes=NODES, members=NODES, incidents=()) == "vip:virtual_ip_3"


def test_quorum_lost_after_node_losses_is_their_incident_and_then_owns_everything() -> None:
    quorum = draft(ev(K.QUORUM_LOST, "cluster", group="quorum"))
    assert owner(quorum, nodes=NODES, members=("node1",), incidents=("node:node2",)) == "node:node2"
    dc = draft(ev(K.NO_DC, "cluster", group="dc"))
    assert owner(dc, nodes=NODES, members=("node1",), incidents=(), absorbing="quorum") == "quorum"


def test_new_problems_of_one_poll_with_a_node_loss_are_one_incident() -> None:
    drafts = incidents((ev(K.NODE_OFFLINE, "node2", nodes=("node2",), group="node:node2"),
                        ev(K.NODE_OFFLINE, "node3", nodes=("node3",), group="node:node3"),
                        ev(K.VIP_STOPPED, "virtual_ip_1", nodes=("node1",), group="vip:virtual_ip_1")))
    (one,) = coalesce(drafts, lambda d: True)
    assert len(one.events) == 3 and one.key.startswith("node:")


# ---------------------------------------------------------------- fixes


def fix(action: str, *args: str, ended: datetime | None = None) -> Fix:
    return Fix("r1", action, args, "node1", "C0OPS", "1.0", ended)


def test_a_cleanup_explains_the_stop_of_its_resource_until_settle_s_after_it_ended() -> None:
    stop = draft(ev(K.VIP_STOPPED, "virtual_ip_1", nodes=("node1",), group="vip:virtual_ip_1"))
    assert explaining([fix("cleanup", "virtual_ip_1")], stop, NOW, 15.0) is not None
    done = fix("cleanup", "virtual_ip_1", ended=NOW - timedelta(seconds=16))
    assert explaining([done], stop, NOW, 15.0) is None
    other = draft(ev(K.VIP_STOPPED, "virtual_ip_2", nodes=("node2",), group="vip:virtual_ip_2"))
    assert explaining([fix("cleanup", "virtual_ip_1")], other, NOW, 15.0) is None


def test_a_fix_that_brings_a_node_up_does_not_explain_it_going_down() -> None:
    down = draft(ev(K.NODE_OFFLINE, "node3", nodes=("node3",), group="node:node3"))
    assert explaining([fix("start", "node3")], down, NOW, 15.0) is None
    assert explaining([fix("resync", "node3")], down, NOW, 15.0) is not None
    up = draft(ev(K.NODE_ONLINE, "node3", nodes=("node3",), group="node:node3"))
    assert explaining([fix("start", "node3")], up, NOW, 15.0) is not None


def test_diff_of_the_same_snapshot_is_nothing() -> None:
    report = at("power_cut_rejoin", 1.0)
    state, _ = step(None, report)
    assert state.last is not None and diff(state.last, state.last) == ()
