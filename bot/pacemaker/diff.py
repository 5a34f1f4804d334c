"""Poll after poll of one cluster -> typed change events, grouped into incidents; flapping keys.

Pure: no I/O, no clock. The watcher calls `step` once per poll and keeps the WatchState it returns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from bot.corosync.summary import LinkDown
from bot.pacemaker.health import Expectations, Remedy, Severity
from bot.pacemaker.merge import ClusterReport
from bot.pacemaker.snapshot import (
    CorosyncState,
    FailedOp,
    Fence,
    Note,
    Snapshot,
    decode,
    decode_versioned,
    encode,
    snapshot,
)
from bot.watch.codes import DISAGREEMENTS, FindingCode
from bot.watch.events import CLEARS, NEUTRAL, ONE_SHOT, Event, EventKind
from bot.watch.settle import Settling, ring_moved

__all__ = ["CLEARS", "NEUTRAL", "ONE_SHOT", "Event", "EventKind", "IncidentDraft", "WatchState", "diff",
           "incidents", "step"]

STATE_VERSION = 1
UNREACHABLE_AFTER = 3


_K = EventKind
# Whole-cluster causes: everything else in the same poll is a consequence.
_CLUSTER_CAUSES = ("view", "quorum")


def _event(kind: EventKind, severity: Severity, subject: str, message: str, group: str, *,
           before: str | None = None, after: str | None = None, nodes: Iterable[str] = (),
           remedy: Remedy | None = None, ident: str | None = None) -> Event:
    family = CLEARS.get(kind, kind)
    key = f"{family}:{subject}" + (f":{ident}" if ident else "")
    return Event(kind, severity, subject, message, before, after, _unique(nodes), remedy, key, group)


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _words(nodes: Iterable[str]) -> str:
    return " ".join(nodes)


def _resource_group(snap: Snapshot, rid: str) -> str:
    return f"vip:{rid}" if rid in snap.vip_ids else f"resource:{rid}"


# ---------------------------------------------------------------- snapshot diff


def diff(before: Snapshot, after: Snapshot) -> tuple[Event, ...]:
    """Every change between two snapshots that both have a view, cause-first."""
    return tuple(e for rule in _RULES for e in rule(before, after))


def _quorum(b: Snapshot, a: Snapshot) -> Iterable[Event]:
    if b.quorate is True and a.quorate is False:
        yield _quorum_lost(b, a)
    # Without a DC Pacemaker's quorum is unknown (None): lost, unknown, back is a regain too.
    elif b.quorate is not True and a.quorate is True:
        yield _event(_K.QUORUM_REGAINED, Severity.INFO, "cluster",
                     f"quorum regained: partition [{_words(a.members)}]", "quorum",
                     before="without quorum", after="with quorum", nodes=a.members)


def _quorum_lost(b: Snapshot, a: Snapshot) -> Event:
    outside = [n.name for n in a.nodes if not n.online]
    # The node that just left is the likeliest to come back: start it first.
    lost = [n for n in b.members if n not in a.members] or outside
    missing = f"; {', '.join(outside)} {'is' if len(outside) == 1 else 'are'} not in it" if outside else ""
    return _event(_K.QUORUM_LOST, Severity.CRITICAL, "cluster",
                  f"quorum LOST: partition [{_words(a.members)}] has no quorum{missing}", "quorum",
                  before="with quorum", after="without quorum", nodes=a.members,
                  remedy=Remedy("start", (lost[0],)) if lost else None)


def _dc(b: Snapshot, a: Snapshot) -> Iterable[Event]:
    if b.dc == a.dc:
        return
    if a.dc is None:
        yield _event(_K.NO_DC, Severity.CRITICAL, "cluster",
                     "no Designated Controller: the cluster cannot make decisions", "dc", before=b.dc)
    elif b.dc is None:
        yield _event(_K.DC_ELECTED, Severity.INFO, "cluster", f"{a.dc} was elected Designated Controller",
                     "dc", after=a.dc, nodes=(a.dc,))
    else:
        yield _event(_K.DC_CHANGED, Severity.INFO, "cluster", f"DC changed {b.dc} → {a.dc}", "dc",
                     before=b.dc, after=a.dc, nodes=(b.dc, a.dc))


def _maintenance(b: Snapshot, a: Snapshot) -> Iterable[Event]:
    if a.maintenance and not b.maintenance:
        yield _event(_K.MAINTENANCE_ON, Severity.WARNING, "cluster",
                     "cluster maintenance-mode ON: Pacemaker manages nothing, no failover",
                     "maintenance", before="off", after="on")
    elif b.maintenance and not a.maintenance:
        yield _event(_K.MAINTENANCE_OFF, Severity.INFO, "cluster",
                     "cluster maintenance-mode OFF: Pacemaker manages resources again",
                     "maintenance", before="on", after="off")


@dataclass(frozen=True, slots=True)
class _NodeRule:
    attr: str
    bad: bool  # the attribute's value that is the problem
    problem: EventKind
    severity: Severity
    went_bad: str
    went_good: str
    words: tuple[str, str]  # (good, bad) for before/after
    remedy: str | None = None


_NODE_RULES = (
    _NodeRule("online", False, _K.NODE_OFFLINE, Severity.WARNING, "went OFFLINE", "is back ONLINE",
              ("online", "offline"), "start"),
    _NodeRule("unclean", True, _K.NODE_UNCLEAN, Severity.CRITICAL,
              "is UNCLEAN: it must be fenced before its resources can move", "is clean again",
              ("clean", "unclean")),
    _NodeRule("pending", True, _K.NODE_PENDING, Severity.WARNING, "is pending: it has not finished joining",
              "finished joining", ("member", "pending")),
    _NodeRule("standby", True, _K.NODE_STANDBY, Severity.WARNING, "was put in standby", "left standby",
              ("active", "standby"), "unstandby"),
    _NodeRule("maintenance", True, _K.NODE_MAINTENANCE, Severity.WARNING,
              "entered maintenance: its resources are unmanaged", "left maintenance",
              ("managed", "maintenance"), "unmaintenance"),
)
_RECOVERY_OF = {problem: recovery for recovery, problem in CLEARS.items()}


def _nodes(b: Snapshot, a: Snapshot) -> Iterable[Event]:
    # Nodes added to or removed from the configuration have no "before": nothing changed.
    for now in a.nodes:
        was = b.node(now.name)
        if was is None:
            continue
        for rule in _NODE_RULES:
            old, new = getattr(was, rule.attr), getattr(now, rule.attr)
            if old != new:
                yield _node_event(rule, now.name, went_bad=new == rule.bad)


def _node_event(rule: _NodeRule, node: str, *, went_bad: bool) -> Event:
    good, bad = rule.words
    if went_bad:
        remedy = Remedy(rule.remedy, (node,)) if rule.remedy else None
        return _event(rule.problem, rule.severity, node, f"{node} {rule.went_bad}", f"node:{node}",
                      before=good, after=bad, nodes=(node,), remedy=remedy)
    return _event(_RECOVERY_OF[rule.problem], Severity.INFO, node, f"{node} {rule.went_good}",
                  f"node:{node}", before=bad, after=good, nodes=(node,))


def _vips(b: Snapshot, a: Snapshot) -> Iterable[Event]:
    was = dict(b.vips)
    failed = {rid for rid, _ in a.failed} | {op.resource for op in a.failed_ops}
    for vip, now in a.vips:
        old = was.get(vip)
        if old is None or old == now:
            continue  # a VIP new to the expectations has no "before"
        group = f"vip:{vip}"
        if not now:
            remedy = Remedy("cleanup", (vip,)) if vip in failed else None
            yield _event(_K.VIP_STOPPED, Severity.CRITICAL, vip, f"{vip} STOPPED (was on {_words(old)})",
                         group, before=_words(old), nodes=old, remedy=remedy)
        elif not old:
            yield _event(_K.VIP_STARTED, Severity.INFO, vip, f"{vip} started on {_words(now)}", group,
                         after=_words(now), nodes=now)
        else:
            yield _event(_K.VIP_MOVED, Severity.INFO, vip, _placement(vip, old, now), group,
                         before=_words(old), after=_words(now), nodes=(*old, *now))


def _placement(vip: str, old: tuple[str, ...], now: tuple[str, ...]) -> str:
    """A VIP's new place. On a rejoin Pacemaker's probe can find it up on two nodes for a moment
    (the returning node still had the address): "moved node1 → node1 node3" would misread that."""
    if len(now) > 1:
        return f"{vip} is active on {_both(now)} at once (was on {_both(old)})"
    if len(old) > 1:
        return f"{vip} is active only on {now[0]} again (was on {_both(old)} at once)"
    return f"{vip} moved {old[0]} → {now[0]}"


def _both(nodes: tuple[str, ...]) -> str:
    return " and ".join(nodes) if len(nodes) <= 2 else ", ".join(nodes[:-1]) + f" and {nodes[-1]}"


def _clones(b: Snapshot, a: Snapshot) -> Iterable[Event]:
    old, new = set(b.clone_gaps), set(a.clone_gaps)
    running = dict(a.clones)
    for rid, node in a.clone_gaps:
        if (rid, node) not in old:
            yield _event(_K.CLONE_STOPPED, Severity.WARNING, f"{rid}@{node}", f"{rid} stopped on {node}",
                         _resource_group(a, rid), before="running", after="stopped", nodes=(node,),
                         remedy=Remedy("cleanup", (rid, node)))
    for rid, node in b.clone_gaps:
        if (rid, node) not in new:
            back = node in running.get(rid, ())
            text = f"{rid} is running on {node} again" if back else \
                f"{rid} is no longer expected on {node}: {node} cannot run resources now"
            yield _event(_K.CLONE_STARTED, Severity.INFO, f"{rid}@{node}", text, _resource_group(a, rid),
                         before="stopped", after="running" if back else "not expected", nodes=(node,))


_FLAGS: tuple[tuple[str, EventKind, Severity, str, str, bool], ...] = (
    # (snapshot field, problem, severity, problem text, recovery text, cleanup helps)
    ("failed", _K.RESOURCE_FAILED, Severity.WARNING, "FAILED", "is no longer failed", True),
    ("blocked", _K.RESOURCE_BLOCKED, Severity.CRITICAL,
     "is BLOCKED: Pacemaker will not touch it until cleanup", "is no longer blocked", True),
    ("unmanaged", _K.RESOURCE_UNMANAGED, Severity.WARNING,
     "is unmanaged: Pacemaker will not recover it", "is managed again", False),
)


def _flags(b: Snapshot, a: Snapshot) -> Iterable[Event]:
    for attr, problem, sev, bad, good, cleanup in _FLAGS:
        old: dict[str, tuple[str, ...]] = dict(getattr(b, attr))
        new: dict[str, tuple[str, ...]] = dict(getattr(a, attr))
        for rid, nodes in new.items():
            if rid not in old:
                # A failed VIP is an address not served: as bad as a stopped one.
                worse = Severity.CRITICAL if problem is _K.RESOURCE_FAILED and rid in a.vip_ids else sev
                where = f" on {_words(nodes)}" if nodes else ""
                yield _event(problem, worse, rid, f"{rid} {bad}{where}", _resource_group(a, rid),
                             after=_words(nodes), nodes=nodes,
                             remedy=Remedy("cleanup", (rid,)) if cleanup else None)
        for rid, nodes in old.items():
            if rid not in new:
                yield _event(_RECOVERY_OF[problem], Severity.INFO, rid, f"{rid} {good}",
                             _resource_group(a, rid), before=_words(nodes), nodes=nodes)


def _failed_ops(b: Snapshot, a: Snapshot) -> Iterable[Event]:
    old = {(op.node, op.op_key): op for op in b.failed_ops}
    new = {(op.node, op.op_key): op for op in a.failed_ops}
    for key, op in new.items():
        was = old.get(key)
        if was is None or was.at != op.at:
            yield _failed_op(a, op, was)
    for key, op in old.items():
        if key not in new:
            yield _event(_K.FAILED_ACTION_CLEARED, Severity.INFO, f"{op.resource}@{op.node}",
                         f"failed action {_op_name(op)} cleaned up", _resource_group(a, op.resource),
                         before=op.reason, nodes=(op.node,), ident=op.op_key)


def _failed_op(a: Snapshot, op: FailedOp, was: FailedOp | None) -> Event:
    what = "failed again" if was else "new failed action"
    return _event(_K.FAILED_ACTION, Severity.WARNING, f"{op.resource}@{op.node}",
                  f"{what}: {_op_name(op)} ({op.reason})", _resource_group(a, op.resource),
                  before=was.at if was else None, after=op.at, nodes=(op.node,),
                  remedy=Remedy("cleanup", (op.resource, op.node)), ident=op.op_key)


def _op_name(op: FailedOp) -> str:
    return f"{op.task or 'operation'} of {op.primitive} on {op.node}"


def _thresholds(b: Snapshot, a: Snapshot) -> Iterable[Event]:
    old = {(t.resource, t.node) for t in b.thresholds}
    new = {(t.resource, t.node) for t in a.thresholds}
    for t in a.thresholds:
        if (t.resource, t.node) not in old:
            yield _event(_K.THRESHOLD_REACHED, Severity.CRITICAL, f"{t.resource}@{t.node}",
                         f"{t.resource} failed {t.fail_count} times on {t.node}, reaching "
                         f"migration-threshold {t.limit}: banned there until cleanup",
                         _resource_group(a, t.resource), after=f"{t.fail_count}/{t.limit}",
                         nodes=(t.node,), remedy=Remedy("cleanup", (t.resource, t.node)))
    for t in b.thresholds:
        if (t.resource, t.node) not in new:
            yield _event(_K.THRESHOLD_CLEARED, Severity.INFO, f"{t.resource}@{t.node}",
                         f"fail-count of {t.resource} on {t.node} is below migration-threshold again",
                         _resource_group(a, t.resource), before=f"{t.fail_count}/{t.limit}",
                         nodes=(t.node,))


def _fences(b: Snapshot, a: Snapshot) -> Iterable[Event]:
    seen = {(f.target, f.action, f.completed) for f in b.fences}
    for f in a.fences:
        if (f.target, f.action, f.completed) not in seen and f.status in ("success", "failed"):
            yield _fence_event(f)


def _fence_event(f: Fence) -> Event:
    ident = f"{f.action}@{f.completed}"
    if f.status == "success":
        return _event(_K.FENCE_SUCCEEDED, Severity.WARNING, f.target, f"{f.target} was fenced ({f.action})",
                      f"node:{f.target}", after=f.status, nodes=(f.target,), ident=ident)
    why = f": {f.reason}" if f.reason else ""
    return _event(_K.FENCE_FAILED, Severity.CRITICAL, f.target,
                  f"fencing ({f.action}) of {f.target} FAILED{why}", f"node:{f.target}",
                  after=f.status, nodes=(f.target,), ident=ident)


# Findings diffed as they are: (problem, recovery text, group prefix or None for "cluster").
_F = FindingCode
_NOTES: Mapping[str, tuple[EventKind, str, str | None]] = {
    _F.VIP_SPREAD: (_K.VIPS_UNBALANCED, "VIPs are one per node again", None),
    _F.RESOURCE_STOPPED: (_K.RESOURCE_STOPPED, "{} is no longer stopped", "resource"),
    _F.SPLIT_BRAIN: (_K.NODES_DISAGREE, "{} agrees with the cluster again", "node"),
    _F.OUT_OF_SYNC: (_K.NODES_DISAGREE, "{} agrees with the cluster again", "node"),
    _F.DAEMON_INACTIVE: (_K.DAEMON_INACTIVE, "cluster daemons are active again on {}", "node"),
    _F.COROSYNC_MEMBERSHIP_MISMATCH: (_K.NODES_DISAGREE, "{} agrees with the cluster again", "node"),
}


def _notes(b: Snapshot, a: Snapshot) -> Iterable[Event]:
    old = {(_NOTES[n.code][0], n.subject): n for n in b.notes if n.code in _NOTES}
    new = {(_NOTES[n.code][0], n.subject): n for n in a.notes if n.code in _NOTES}
    for key, note in new.items():
        # A node going from out-of-sync to split brain is news; a reworded finding is not.
        if key not in old or old[key].code != note.code:
            yield _note_event(a, note)
    for key, note in old.items():
        if key not in new:
            problem, text, _ = _NOTES[note.code]
            yield _event(_RECOVERY_OF[problem], Severity.INFO, _note_subject(note), text.format(note.subject),
                         _note_group(a, note), before=note.code, nodes=_note_nodes(b, note))


def _note_event(a: Snapshot, note: Note) -> Event:
    remedy = Remedy(note.remedy[0], note.remedy[1:]) if note.remedy else None
    return _event(_NOTES[note.code][0], Severity(note.severity), _note_subject(note), note.message,
                  _note_group(a, note), after=note.code, nodes=_note_nodes(a, note), remedy=remedy)


def _note_subject(note: Note) -> str:
    return "vips" if note.code == _F.VIP_SPREAD else note.subject


def _note_group(snap: Snapshot, note: Note) -> str:
    prefix = _NOTES[note.code][2]
    if prefix == "node":
        return f"node:{note.subject}"
    return _resource_group(snap, note.subject) if prefix else "vips"


def _note_nodes(snap: Snapshot, note: Note) -> tuple[str, ...]:
    if _NOTES[note.code][2] == "node":
        return (note.subject,)
    if note.code == _F.VIP_SPREAD:
        # The stacked nodes (where the fix moves a VIP away from) and the online ones serving
        # none: a node that just rejoined is one, and the spread is its incident's business.
        load = [n for _, nodes in snap.vips for n in nodes]
        idle = [n.name for n in snap.nodes if n.online and not n.standby and n.name not in load]
        return tuple(sorted({n for n in load if load.count(n) > 1} | set(idle)))
    return ()


# ---------------------------------------------------------------- Corosync
# Grouped like their Pacemaker counterparts ("quorum", "node:NODE"), so in a Pacemaker cluster
# a node's crash is one incident carrying both "went OFFLINE" and "left the membership".


def _corosync(b: Snapshot, a: Snapshot) -> tuple[CorosyncState, CorosyncState] | None:
    # None on either side: nothing known to compare (first poll after an upgrade, tools failing).
    return (b.corosync, a.corosync) if b.corosync is not None and a.corosync is not None else None


def _corosync_quorum(b: Snapshot, a: Snapshot) -> Iterable[Event]:
    pair = _corosync(b, a)
    if pair is None or pair[0].quorate == pair[1].quorate:
        return
    before, after = pair
    if (b.quorate, a.quorate) == (before.quorate, after.quorate):
        return  # Pacemaker's quorum is Corosync's: _quorum already said it
    members = _words(after.names)
    if after.quorate:
        yield _event(_K.COROSYNC_QUORUM_REGAINED, Severity.INFO, "cluster",
                     f"Corosync quorum regained: [{members}] has {after.votes}", "quorum",
                     before="without quorum", after="with quorum", nodes=after.names)
        return
    lost = [name for i, name in before.members if i not in dict(after.members)]
    yield _event(_K.COROSYNC_QUORUM_LOST, Severity.CRITICAL, "cluster",
                 f"Corosync quorum LOST: partition [{members}] has {after.votes}", "quorum",
                 before="with quorum", after="without quorum", nodes=after.names,
                 remedy=_start(a, lost[0]) if lost else None)


def _start(snap: Snapshot, node: str) -> Remedy:
    """Bring a node's stack back: never `pcs cluster start` where there is no Pacemaker."""
    return Remedy("start-corosync" if snap.kind == "corosync" else "start", (node,))


def _members(b: Snapshot, a: Snapshot) -> Iterable[Event]:
    pair = _corosync(b, a)
    if pair is None:
        return
    before, after = pair
    was, now = dict(before.members), dict(after.members)
    unanswered = dict(a.unanswered)
    for nodeid, name in before.members:
        if nodeid not in now:
            why = (": corosync is not running there" if name in after.down
                   else f": it does not answer ({unanswered[name]})" if name in unanswered else "")
            yield _event(_K.MEMBER_LOST, Severity.WARNING, name,
                         f"{name} left the Corosync membership{why} · {after.votes}",
                         f"node:{name}", before="member", after="not a member", nodes=(name,),
                         remedy=_start(a, name))
    for nodeid, name in after.members:
        if nodeid not in was:
            yield _event(_K.MEMBER_BACK, Severity.INFO, name,
                         f"{name} is back in the Corosync membership · {after.votes}", f"node:{name}",
                         before="not a member", after="member", nodes=(name,))


def _links(b: Snapshot, a: Snapshot) -> Iterable[Event]:
    pair = _corosync(b, a)
    if pair is None:
        return
    old, new = set(pair[0].links_down), set(pair[1].links_down)
    for link in pair[1].links_down:
        if link not in old:
            yield _event(_K.LINK_DOWN, Severity.WARNING, link.label,
                         f"Corosync {link.label} is down: redundancy lost", f"link:{link.label}",
                         before="up", after="down", nodes=_link_nodes(link))
    members = set(pair[1].names)
    for link in pair[0].links_down:
        # A link dropped from the list because its far end left the membership is not up: the
        # node is gone, and its membership loss is the news (and, later, its return).
        if link not in new and set(_link_nodes(link)) <= members:
            yield _event(_K.LINK_UP, Severity.INFO, link.label, f"Corosync {link.label} is up again",
                         f"link:{link.label}", before="down", after="up", nodes=_link_nodes(link))


def _link_nodes(link: LinkDown) -> tuple[str, ...]:
    return (link.a,) if link.b is None else (link.a, link.b)


_RULES: tuple[Callable[[Snapshot, Snapshot], Iterable[Event]], ...] = (
    _quorum, _corosync_quorum, _dc, _maintenance, _nodes, _members, _notes, _links, _fences, _vips,
    _clones, _flags, _failed_ops, _thresholds,
)


# ---------------------------------------------------------------- poll to poll, with memory


@dataclass(frozen=True, slots=True)
class WatchState:
    """What one cluster's watcher carries from poll to poll (and stores as JSON across restarts)."""

    last: Snapshot | None = None  # the last snapshot with a view: what the cluster last looked like
    no_view_polls: int = 0  # consecutive polls without a reference view
    no_view_said: bool = False  # CLUSTER_UNREACHABLE was emitted and not yet cleared
    misses: tuple[tuple[str, int], ...] = ()  # consecutive polls each node gave no SSH answer
    unreachable: tuple[str, ...] = ()  # nodes declared unreachable: the last verdict
    # consecutive polls each disagreement ("code|node") was seen: during a failover the nodes'
    # views differ for a few seconds, which is no out-of-sync node.
    disagree: tuple[tuple[str, int], ...] = ()
    # where each VIP last ran: a VIP stopped in one poll and started elsewhere in the next moved
    homes: tuple[tuple[str, str], ...] = ()
    settling: Settling = field(default_factory=Settling)  # held while Pacemaker acts (bot/watch/settle.py)

    def to_json(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, **encode(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WatchState:
        """ValueError when the data is from another version: start over with `step(None, ...)`."""
        state: WatchState = decode_versioned(cls, data, STATE_VERSION)
        return state


def step(state: WatchState | None, report: ClusterReport, expect: Expectations = Expectations(), *,
         unreachable_after: int = UNREACHABLE_AFTER) -> tuple[WatchState, tuple[Event, ...]]:
    """One poll: the new state and what changed. First sight (state None) reports no change."""
    prev = state or WatchState()
    raw = snapshot(report, expect)
    snap, disagree = _settled(raw, prev, unreachable_after)
    misses = _misses(prev, snap)
    if not snap.has_view:
        return _blind(prev, snap, misses, first=state is None, after=unreachable_after)
    events = [_cluster_back(snap)] if prev.no_view_said else []
    if prev.last is not None:
        events += diff(prev.last, snap)
        events += _bounced(prev.last, snap, raw.notes)
    verdict, reach = _verdicts(prev.unreachable, misses, snap, unreachable_after)
    homes = dict(prev.homes)
    homes.update((vip, _words(nodes)) for vip, nodes in snap.vips if nodes)
    events = [_as_move(e, dict(prev.homes)) for e in events]
    new = WatchState(snap, 0, False, misses, verdict, disagree, tuple(sorted(homes.items())), prev.settling)
    # First sight: the watcher alerts on the report itself, a verdict is just remembered.
    return new, (() if state is None else tuple(events + reach))


def _bounced(b: Snapshot, a: Snapshot, notes: tuple[Note, ...]) -> Iterable[Event]:
    """Nodes that left the membership and came back between two polls: the same members, yet
    Corosync's membership moved on, and the node did not answer with a view the poll before."""
    if not ring_moved(b, a) or set(b.members) != set(a.members):
        return
    was, now = (s.corosync.ring_id if s.corosync else "?" for s in (b, a))
    ring = f" (Corosync ring {was} → {now})"
    for node in _suspects(b, a, notes):
        yield _event(_K.NODE_BOUNCED, Severity.WARNING, node,
                     f"{node} left the cluster and rejoined between two polls{ring}", f"node:{node}",
                     before="member", after="rejoined", nodes=(node,))


def _suspects(b: Snapshot, a: Snapshot, notes: tuple[Note, ...]) -> list[str]:
    """Which node bounced: one silent in the poll before, else one whose view still differs from
    the others' (`notes`: before the disagreements wait their polls), else one whose resources
    are still coming back (a clone instance missing, serving no VIP while another serves two)."""
    silent = (set(b.disconnected) | {n for n, _ in b.unanswered}) & set(a.members)
    if silent:
        return sorted(silent)
    odd = {n.subject for n in notes if n.code in DISAGREEMENTS} & set(a.members)
    if odd:
        return sorted(odd)
    load = [n for _, nodes in a.vips for n in nodes]
    uneven = len(load) > len(set(load)) or any(not nodes for _, nodes in a.vips)
    idle = {n for n in a.members if n not in load} if uneven else set()
    return sorted({n for _, n in a.clone_gaps} | idle)


def _as_move(event: Event, homes: Mapping[str, str]) -> Event:
    """Pacemaker stops a VIP, then starts it elsewhere; when a poll fell in between, the start
    is the second half of a move, and says so."""
    home = homes.get(event.subject)
    if event.kind is not _K.VIP_STARTED or not home or home == event.after:
        return event
    return replace(event, message=f"{event.subject} moved {home} → {event.after} (stopped in between)",
                   before=home)


_DISAGREE = DISAGREEMENTS


def _settled(snap: Snapshot, prev: WatchState, after: int) -> tuple[Snapshot, tuple[tuple[str, int], ...]]:
    """Disagreements count only once seen `after` polls in a row (or already reported)."""
    seen = dict(prev.disagree)
    reported = {f"{n.code}|{n.subject}" for n in (prev.last.notes if prev.last else ())}
    counts = {f"{n.code}|{n.subject}": seen.get(f"{n.code}|{n.subject}", 0) + 1
              for n in snap.notes if n.code in _DISAGREE}
    keep = tuple(n for n in snap.notes if n.code not in _DISAGREE
                 or counts[f"{n.code}|{n.subject}"] >= after or f"{n.code}|{n.subject}" in reported)
    return replace(snap, notes=keep), tuple(sorted(counts.items()))


def _misses(prev: WatchState, snap: Snapshot) -> tuple[tuple[str, int], ...]:
    count = dict(prev.misses)
    failing = {n for n, _ in snap.unanswered}
    return tuple((n, count.get(n, 0) + 1 if n in failing else 0) for n in snap.polled)


def _blind(prev: WatchState, snap: Snapshot, misses: tuple[tuple[str, int], ...], *, first: bool,
           after: int) -> tuple[WatchState, tuple[Event, ...]]:
    """No view: say so once, without a storm of VIP events. Node verdicts wait for the view."""
    polls = prev.no_view_polls + 1
    # A node that answered "Pacemaker is down" is certain; SSH silence could be our own network.
    sure = bool(snap.disconnected) or polls >= after
    say = sure and not prev.no_view_said and not first
    # At first sight the watcher alerts on the report itself: its "no view" is already said.
    state = replace(prev, no_view_polls=polls, no_view_said=prev.no_view_said or say or first,
                    misses=misses)
    return state, ((_cluster_gone(snap),) if say else ())


def _cluster_gone(snap: Snapshot) -> Event:
    why = [f"{n}: {e}" for n, e in snap.unanswered]
    stack = "corosync" if snap.kind == "corosync" else "Pacemaker"
    why += [f"{n}: {stack} not running" for n in snap.disconnected]
    # Nodes that answered "not running" did report: say what they said, not "no node could".
    said = (f"{stack} is not running on any node of" if len(snap.disconnected) == len(snap.polled) > 0
            else "no node could report the status of")
    text = f"{said} {snap.cluster} ({'; '.join(why) or 'no nodes'})"
    return _event(_K.CLUSTER_UNREACHABLE, Severity.CRITICAL, "cluster", text,
                  "view", before="seen", after="no view", nodes=snap.polled)


def _cluster_back(snap: Snapshot) -> Event:
    return _event(_K.CLUSTER_REACHABLE, Severity.INFO, "cluster",
                  f"{snap.cluster} is reachable again (status from {snap.reference_node})", "view",
                  before="no view", after="seen", nodes=snap.members)


def _verdicts(declared: tuple[str, ...], misses: tuple[tuple[str, int], ...], snap: Snapshot,
              after: int) -> tuple[tuple[str, ...], list[Event]]:
    """A node is unreachable after `after` silent polls in a row, reachable at its first answer."""
    events: list[Event] = []
    verdict: list[str] = []
    for node, count in misses:
        was = node in declared
        now = count >= after or (was and count > 0)
        if now != was:
            events.append(_unreachable(snap, node, count) if now else _reachable(node))
        if now:
            verdict.append(node)
    return tuple(verdict), events


def _unreachable(snap: Snapshot, node: str, count: int) -> Event:
    state = snap.node(node)
    stack = "Corosync counts it as a member" if snap.kind == "corosync" else "Pacemaker reports it online"
    online = (state is not None and state.online) or (snap.kind == "corosync" and node in snap.members)
    # Pacemaker (or Corosync) says it is down too: the offline event is the alert, this a detail.
    also = f" although {stack}" if online else ""
    return _event(_K.NODE_UNREACHABLE, Severity.WARNING if online else Severity.INFO, node,
                  f"{node} did not answer {count} polls in a row{also}: {dict(snap.unanswered)[node]}",
                  f"node:{node}", before="reachable", after="unreachable", nodes=(node,))


def _reachable(node: str) -> Event:
    return _event(_K.NODE_REACHABLE, Severity.INFO, node, f"{node} answers again", f"node:{node}",
                  before="unreachable", after="reachable", nodes=(node,))


# ---------------------------------------------------------------- incidents


@dataclass(frozen=True, slots=True)
class IncidentDraft:
    """Events of one poll that share a cause: `cause` first, then the consequences it absorbed."""

    key: str  # the incident to thread into: "node:node3", "quorum", "vip:virtual_ip_2", ...
    cause: tuple[Event, ...]
    effects: tuple[Event, ...] = ()

    @property
    def events(self) -> tuple[Event, ...]:
        return self.cause + self.effects

    @property
    def severity(self) -> Severity:
        return max(e.severity for e in self.events)

    @property
    def is_recovery(self) -> bool:
        """Every event is a recovery (VIP moves and DC changes are neutral), and one at least is."""
        return all(not e.problem for e in self.events) and any(e.recovery for e in self.events)

    @property
    def is_problem(self) -> bool:
        """Some event is a problem: news to alert, not only a recovery or a neutral change."""
        return any(e.problem for e in self.events)

    @property
    def opens(self) -> tuple[str, ...]:
        """Conditions its problems raise; an incident is over when all it opened are closed."""
        return _unique(e.key for e in self.events if e.problem and not e.one_shot)

    @property
    def closes(self) -> tuple[str, ...]:
        return _unique(e.key for e in self.events if e.recovery)

    @property
    def title(self) -> str:
        return "; ".join((*(e.message for e in self.cause), *_vip_summary(self.effects)))

    @property
    def evidence(self) -> tuple[str, ...]:
        return tuple(e.message for e in self.events)

    @property
    def remedy(self) -> Remedy | None:
        """The cause's remedy, else the worst consequence's."""
        ranked = (*self.cause, *sorted(self.effects, key=lambda e: -e.severity))
        return next((e.remedy for e in ranked if e.remedy is not None), None)


    def only(self, keep: Callable[[Event], bool]) -> IncidentDraft | None:
        """The part of this draft whose events `keep` says yes to (None if none): a poll's recovery
        goes to the thread of the incident it ends, whatever else its draft is about."""
        cause = tuple(e for e in self.cause if keep(e))
        effects = tuple(e for e in self.effects if keep(e))
        if not cause:  # the title is the cause's: what is left takes its place
            cause, effects = effects, ()
        return IncidentDraft(self.key, cause, effects) if cause else None

    def merged(self, later: IncidentDraft) -> IncidentDraft:
        """This incident's draft grown by a later poll's news about it (an escalation): the root
        message, edited, tells the whole story at the worst severity."""
        def same(e: Event) -> tuple[object, ...]:
            # The same change again (a flapping node leaving a second time) says nothing new, even
            # when its wording differs ("corosync is not running there" known or not yet).
            return (e.kind, e.subject, e.key, e.before, e.after)

        def grown(mine: tuple[Event, ...], news: tuple[Event, ...]) -> tuple[Event, ...]:
            known = {same(e) for e in mine}
            return mine + tuple(e for e in news if same(e) not in known)

        return IncidentDraft(self.key, grown(self.cause, later.cause), grown(self.effects, later.effects))

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "cause": [e.to_json() for e in self.cause],
                "effects": [e.to_json() for e in self.effects]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> IncidentDraft:
        """ValueError when the data is not a draft (another version's, or damaged)."""
        try:
            cause = tuple(Event.from_json(e) for e in data["cause"])
            effects = tuple(Event.from_json(e) for e in data["effects"])
            key = str(data["key"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"cannot read an incident draft: {exc!r}") from exc
        if not cause:
            raise ValueError("cannot read an incident draft: it has no cause")
        return cls(key, cause, effects)


def _vip_summary(effects: tuple[Event, ...]) -> tuple[str, ...]:
    """VIP consequences belong in the title: moves one by one, stops and starts as one clause."""
    moved = tuple(e.message for e in effects if e.kind is _K.VIP_MOVED)
    stopped = [e.subject for e in effects if e.kind is _K.VIP_STOPPED]
    started = [e.subject for e in effects if e.kind is _K.VIP_STARTED]
    return (*moved, *((f"{', '.join(stopped)} STOPPED",) if stopped else ()),
            *((f"{', '.join(started)} started",) if started else ()))


def incidents(events: Iterable[Event]) -> tuple[IncidentDraft, ...]:
    """Group one poll's events by cause, worst first.

    A lost view or lost quorum absorbs everything; a node problem absorbs the events that
    involve that node; a recovery cause absorbs only recoveries and neutral changes (a
    problem in the same poll deserves its own incident); the rest is grouped per subject.
    """
    rest = list(events)
    drafts: list[IncidentDraft] = []
    for recovering in (False, True):
        # Each cause is checked again when its turn comes: an earlier one may have absorbed its
        # events (a view regained takes the quorum regained with it), leaving nothing to tell.
        for group in _cluster_causes(rest, recovering):
            if _is_cause(rest, group, recovering):
                drafts.append(_absorb(rest, group, lambda e: True, recovering))
        for group in _node_causes(rest, recovering):
            if _is_cause(rest, group, recovering):
                drafts.append(_absorb(rest, group, _involving(group.removeprefix("node:")), recovering))
    for group in _unique(e.group for e in rest):
        drafts.append(_absorb(rest, group, lambda e: False, True))
    return tuple(sorted(drafts, key=lambda d: -d.severity))


def _cluster_causes(events: list[Event], recovering: bool) -> list[str]:
    return [g for g in _CLUSTER_CAUSES if _is_cause(events, g, recovering)]


def _node_causes(events: list[Event], recovering: bool) -> list[str]:
    groups = _unique(e.group for e in events if e.group.startswith("node:"))
    causes = [g for g in groups if _is_cause(events, g, recovering)]
    worst = {g: max(e.severity for e in events if e.group == g) for g in causes}
    return sorted(causes, key=lambda g: (-worst[g], g))


def _is_cause(events: list[Event], group: str, recovering: bool) -> bool:
    """A group is a problem cause if any event in it is a problem, else a recovery cause."""
    mine = [e for e in events if e.group == group]
    return bool(mine) and any(e.problem for e in mine) != recovering


def _involving(node: str) -> Callable[[Event], bool]:
    """Events about something else that involve `node`: a VIP moving away from it, ..."""
    return lambda e: node in e.nodes and not e.group.startswith("node:")


def _absorb(rest: list[Event], group: str, involved: Callable[[Event], bool],
            recovering: bool) -> IncidentDraft:
    """Take the group's events and, from the others, those involved (only non-problems if
    the cause is a recovery) out of `rest`, keeping the poll's order."""
    cause = tuple(e for e in rest if e.group == group)
    effects = tuple(e for e in rest if e.group != group and involved(e)
                    and not (recovering and e.problem))
    taken = {id(e) for e in cause + effects}
    rest[:] = [e for e in rest if id(e) not in taken]
    return IncidentDraft(group, cause, effects)


# ---------------------------------------------------------------- flapping


@dataclass(frozen=True, slots=True)
class Flapping:
    """Toggle times per key within the window; a key toggling more than `limit` times flaps."""

    limit: int = 4
    window: float = 600.0
    toggles: tuple[tuple[str, tuple[float, ...]], ...] = ()

    def record(self, key: str, now: float) -> Flapping:
        """One more toggle of `key` at `now`; toggles older than the window are forgotten."""
        kept = {k: self._recent(times, now) for k, times in self.toggles}
        kept[key] = (*kept.get(key, ()), now)
        return replace(self, toggles=tuple(sorted((k, t) for k, t in kept.items() if t)))

    def count(self, key: str, now: float) -> int:
        return len(self._recent(dict(self.toggles).get(key, ()), now))

    def is_flapping(self, key: str, now: float) -> bool:
        return self.count(key, now) > self.limit

    def stable_since(self, key: str) -> float | None:
        """The last toggle remembered, None if none in the window (stable for at least that)."""
        times = dict(self.toggles).get(key, ())
        return times[-1] if times else None

    def flapping(self, now: float) -> tuple[str, ...]:
        return tuple(k for k, _ in self.toggles if self.is_flapping(k, now))

    def _recent(self, times: tuple[float, ...], now: float) -> tuple[float, ...]:
        return tuple(t for t in times if now - t < self.window)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = encode(self)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Flapping:
        flapping: Flapping = decode(cls, data)
        return flapping
