"""Settling: derived findings wait while Pacemaker is still acting.

After a node leaves or joins, Pacemaker stops and starts resources one by one: for a few seconds
the VIPs are not one per node, a clone instance is missing, a VIP is stopped between its two
homes. Those are symptoms of the change already alerted, not news. A derived finding raised while
the cluster is acting is held; if its recovery comes within `settle_s` both are dropped, and if it
still holds after `settle_s` it is released as news (into the incident it belongs to).

Pacemaker is acting when it says so (`busy`, read from the poll: a resource action pending, a
controller computing or running a transition, integrating a node or electing a DC), and for
`settle_s` after what makes it act (a node leaving, joining or changing state, a membership
change, an approved fix): those windows stay, since a rebalance after a rejoin spans several
transitions with idle gaps between them. A held derived finding is released as soon as Pacemaker
reads idle and none of those windows is open, and at the latest `settle_s` after it was first
seen, acting or not: a stuck transition never hides a problem for longer than that.

A link going down is held even when nothing else moves: on a power cut Corosync reports the links
to the node down a poll or two before the membership loses it, and the node loss is the news.

Critical conditions (node loss, quorum loss, a VIP stopped with no node joining, fencing) are
never held: their latency is the poll's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from bot.pacemaker.snapshot import Snapshot
from bot.watch.events import Event, EventKind

_K = EventKind
# Symptoms of Pacemaker acting: held while it acts. A node that does not answer while it leaves
# or joins is one too: its crm_mon hangs, then answers "Could not connect to the CIB" (no
# status) for seconds while `pcs cluster stop` stops its stack (recorded 2026-12-02).
DERIVED = frozenset({_K.VIPS_UNBALANCED, _K.CLONE_STOPPED, _K.RESOURCE_STOPPED, _K.NODE_PENDING,
                     _K.NODES_DISAGREE, _K.NODE_UNREACHABLE})
# Held whenever they show: the membership says soon whether a node is gone. A power cut's first
# sign can be its daemons seen dead while its crm_mon still answered (recorded 2026-12-02: 3.5 s
# before the membership lost it), and their "active again" a poll later, when crm_mon there failed.
ALWAYS_HELD = frozenset({_K.LINK_DOWN, _K.DAEMON_INACTIVE})
# A node changing its place in the cluster: Pacemaker acts on it for a while.
NODE_CHANGES = frozenset({
    _K.NODE_OFFLINE, _K.NODE_ONLINE, _K.MEMBER_LOST, _K.MEMBER_BACK, _K.NODE_STANDBY, _K.NODE_UNSTANDBY,
    _K.NODE_MAINTENANCE, _K.NODE_UNMAINTENANCE, _K.NODE_PENDING, _K.NODE_JOINED, _K.QUORUM_LOST,
    _K.QUORUM_REGAINED, _K.COROSYNC_QUORUM_LOST, _K.COROSYNC_QUORUM_REGAINED, _K.FENCE_SUCCEEDED,
    _K.CLUSTER_REACHABLE, _K.MAINTENANCE_ON, _K.MAINTENANCE_OFF, _K.DC_ELECTED, _K.NODE_BOUNCED})
LEAVES = frozenset({_K.NODE_OFFLINE, _K.MEMBER_LOST})
# Neutral changes that wait when nothing else acts: often the first sign of a node leaving.
MOVES = frozenset({_K.VIP_MOVED, _K.DC_CHANGED})
# A node coming (back) in: its VIPs are stopped where they were and started on it.
JOINS = frozenset({_K.NODE_ONLINE, _K.MEMBER_BACK, _K.NODE_JOINED, _K.NODE_UNSTANDBY,
                   _K.NODE_UNMAINTENANCE, _K.QUORUM_REGAINED, _K.NODE_BOUNCED})


@dataclass(frozen=True, slots=True)
class Held:
    event: Event
    since: float  # when it was first seen (seconds, the watcher's wall clock)


@dataclass(frozen=True, slots=True)
class Settling:
    """What a cluster's watcher holds back, and when Pacemaker last had a reason to act."""

    held: tuple[Held, ...] = ()
    changed_at: float | None = None  # the last node-level change
    joined_at: float | None = None  # the last node joining

    def acting(self, now: float, settle_s: float) -> bool:
        return self.changed_at is not None and now - self.changed_at < settle_s

    def joining(self, now: float, settle_s: float) -> bool:
        return self.joined_at is not None and now - self.joined_at < settle_s

    def holds(self, key: str) -> bool:
        return any(h.event.key == key for h in self.held)


def ring_moved(before: Snapshot | None, after: Snapshot | None) -> bool:
    """Corosync's membership changed since the last poll, whatever the two views show: a node
    that left and rejoined between two polls leaves only this trace (and its tail)."""
    if before is None or after is None or before.corosync is None or after.corosync is None:
        return False
    old, new = before.corosync.ring_id, after.corosync.ring_id
    return old is not None and new is not None and old != new


def pacemaker_busy(snap: Snapshot | None) -> bool | None:
    """Whether this poll read Pacemaker acting (see `Snapshot.pacemaker_acting`); None without a view."""
    return snap.pacemaker_acting if snap is not None and snap.has_view else None


def settle(state: Settling, events: Iterable[Event], now: float, settle_s: float, *,
           fixing: bool = False, moved: bool = False, busy: bool | None = None,
           ) -> tuple[Settling, tuple[Event, ...]]:
    """One poll's events -> the state to keep and the events that are news now (in poll order,
    then whatever outlived its hold). `fixing`: an approved remediation is acting; `moved`: the
    membership changed since the last poll (see `ring_moved`); `busy`: Pacemaker read as acting
    (True), read idle (False) or not readable (None: only the windows above count; see
    `Snapshot.pacemaker_acting`)."""
    events = tuple(events)
    if moved or any(e.kind in NODE_CHANGES for e in events):
        state = replace(state, changed_at=now)
    leaving = any(e.kind in LEAVES for e in events)
    if any(e.kind in JOINS for e in events) or (moved and not leaving):
        state = replace(state, joined_at=now)
    windows = fixing or state.acting(now, settle_s)
    acting = windows or busy is True
    idle = busy is False and not windows
    held = {h.event.key: h for h in state.held}
    gone = {n for e in events if e.kind in LEAVES for n in e.nodes}
    for key in [k for k, h in held.items() if h.event.kind in ALWAYS_HELD and gone & set(h.event.nodes)]:
        del held[key]  # a link to a node that left: the node's loss is the news, not its links
    news: list[Event] = []
    for event in events:
        if event.kind in MOVES and (event.key in held or not windows):
            # While a node change (or a fix) acts, a move is its consequence and goes with it.
            # Pacemaker busy explains nothing here: moving a VIP is a transition of its own.
            _hold_move(held, event, now)
        elif event.recovery and event.key in held:
            del held[event.key]  # it passed before anyone had to hear of it
        elif event.problem and _holdable(event, acting, state.joining(now, settle_s)):
            held.setdefault(event.key, Held(event, now))
        else:
            news.append(event)
    due = [h for h in held.values() if now - h.since >= settle_s or (idle and h.event.kind in DERIVED)]
    for h in due:
        del held[h.event.key]
    news += [h.event for h in due]
    return replace(state, held=tuple(held.values())), tuple(news)


def _hold_move(held: dict[str, Held], event: Event, now: float) -> None:
    """A VIP move (or a new DC) with nothing acting waits too: before `pcs cluster stop` takes a
    node out of the membership, Pacemaker moves its VIPs and its DC role away, and the node's loss
    is the news. Moves while held add up; a round trip within settle_s was nobody's business."""
    first = held.get(event.key)
    if first is None:
        held[event.key] = Held(event, now)
    elif first.event.before == event.after:
        del held[event.key]
    else:
        what = "DC changed" if event.kind is _K.DC_CHANGED else f"{event.subject} moved"
        both = replace(event, before=first.event.before,
                       message=f"{what} {first.event.before} → {event.after}")
        held[event.key] = Held(both, first.since)


def _holdable(event: Event, acting: bool, joining: bool) -> bool:
    if event.kind in ALWAYS_HELD:
        return True
    if event.kind is _K.VIP_STOPPED:
        return joining  # between its old home and the node that joined: a move in progress
    return acting and event.kind in DERIVED
