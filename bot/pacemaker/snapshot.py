"""A compact, JSON-able summary of one ClusterReport: exactly what the diff engine compares.

Pure: `snapshot(report, expect)` reads the reference view, the Corosync summary and the report's
findings, nothing else.

Format history: version 1 grew `kind` and `corosync` (Corosync quorum, members, links down) with
defaults, so states stored before read as "no Corosync data yet" and the first diff against
them reports no Corosync change. Only a change that old data cannot be read as bumps the version.
"""

from __future__ import annotations

import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, is_dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Union, get_args, get_origin, get_type_hints

from bot.corosync.summary import LinkDown
from bot.pacemaker.health import Expectations, Finding, eligible_nodes, everywhere_of, vips_of
from bot.pacemaker.merge import ClusterReport
from bot.pacemaker.model import CONTROLLER_AT_REST, Instance, Node, NodeView, ResourceKind, Role
from bot.watch.codes import FindingCode

SNAPSHOT_VERSION = 1
# Findings diffed as they are: the rule that raised them already knows the subtle cases.
NOTE_CODES = (FindingCode.VIP_SPREAD, FindingCode.RESOURCE_STOPPED, FindingCode.SPLIT_BRAIN,
              FindingCode.OUT_OF_SYNC, FindingCode.DAEMON_INACTIVE,
              FindingCode.COROSYNC_MEMBERSHIP_MISMATCH)

Placement = tuple[str, tuple[str, ...]]  # resource id -> the nodes it is on, sorted


@dataclass(frozen=True, slots=True)
class NodeState:
    name: str
    online: bool = False
    standby: bool = False
    maintenance: bool = False
    unclean: bool = False
    pending: bool = False


@dataclass(frozen=True, slots=True)
class FailedOp:
    """One 'Failed Resource Actions' line; (node, op_key) is its identity."""

    node: str
    op_key: str
    resource: str  # the id users name: the clone or group around the primitive
    primitive: str
    task: str | None
    reason: str
    at: str | None  # last-rc-change, ISO 8601: a new time under the same key is a new failure


@dataclass(frozen=True, slots=True)
class Threshold:
    """A resource whose fail-count reached migration-threshold on a node."""

    resource: str
    node: str
    fail_count: int
    limit: int


@dataclass(frozen=True, slots=True)
class Fence:
    target: str
    action: str
    status: str
    completed: str | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class Note:
    """A finding carried over as is; `remedy` is the action then its arguments, () for none."""

    code: str
    subject: str
    severity: int
    message: str
    remedy: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CorosyncState:
    """Corosync as the reference quorum view sees it. Members are keyed by node id: a name can
    change between polls (a node's own answer names it, else Corosync's label does)."""

    quorate: bool
    members: tuple[tuple[int, str], ...] = ()  # (node id, name), by id
    reference_node: str | None = None
    total_votes: int | None = None
    expected_votes: int | None = None
    quorum: int | None = None  # votes needed
    down: tuple[str, ...] = ()  # answered over SSH, but corosync is not running there
    # Links down between two members (redundancy lost) and faulty rings; a link to a node that
    # left is the member-lost event's business, not its own.
    links_down: tuple[LinkDown, ...] = ()
    # Corosync's membership generation: it moves with every membership change, so a node that left
    # and came back between two polls still shows (issue 14: Pacemaker is then still acting).
    ring_id: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted(name for _, name in self.members))

    @property
    def votes(self) -> str:
        if self.total_votes is None or self.expected_votes is None:
            return f"{len(self.members)} members"
        need = f", {self.quorum} needed" if self.quorum is not None else ""
        return f"{self.total_votes} of {self.expected_votes} votes{need}"


@dataclass(frozen=True, slots=True)
class Snapshot:
    cluster: str
    has_view: bool = False
    reference_node: str | None = None
    quorate: bool | None = None
    dc: str | None = None
    maintenance: bool = False
    nodes: tuple[NodeState, ...] = ()
    vips: tuple[Placement, ...] = ()
    clones: tuple[Placement, ...] = ()  # must-run-everywhere clones and where they run
    clone_gaps: tuple[tuple[str, str], ...] = ()  # (clone, eligible node that lacks it)
    failed: tuple[Placement, ...] = ()
    blocked: tuple[Placement, ...] = ()
    unmanaged: tuple[Placement, ...] = ()
    failed_ops: tuple[FailedOp, ...] = ()
    thresholds: tuple[Threshold, ...] = ()
    fences: tuple[Fence, ...] = ()
    notes: tuple[Note, ...] = ()
    polled: tuple[str, ...] = ()  # every node asked, in configured order
    unanswered: tuple[tuple[str, str], ...] = ()  # (node, why): no answer over SSH at all
    disconnected: tuple[str, ...] = ()  # answered, but crm_mon could not reach Pacemaker (kind
    # "corosync": answered, but corosync is not running)
    kind: str = "pacemaker"  # "corosync": no Pacemaker fields; `corosync` is the view
    corosync: CorosyncState | None = None  # None: no quorum view this poll (or not collected)
    # Pacemaker acting, as read (issue 14): resource actions in flight in the reference view
    # (record-pending: (primitive, Starting / Stopping / Migrating / Monitoring ...)), and each
    # answering node's controller state (crmadmin: (node, S_IDLE / S_NOT_DC / S_TRANSITION_ENGINE ...)).
    pending: tuple[tuple[str, str], ...] = ()
    controllers: tuple[tuple[str, str], ...] = ()

    @property
    def members(self) -> tuple[str, ...]:
        """The reference partition: the nodes it sees online (corosync-only: its members)."""
        if self.kind == "corosync":
            return self.corosync.names if self.corosync else ()
        return tuple(n.name for n in self.nodes if n.online)

    @property
    def vip_ids(self) -> frozenset[str]:
        return frozenset(v for v, _ in self.vips)

    def node(self, name: str) -> NodeState | None:
        return next((n for n in self.nodes if n.name == name), None)

    @property
    def pacemaker_acting(self) -> bool | None:
        """Pacemaker read as acting: True while an action is pending or a controller is not at
        rest (a transition computed or run, a node integrated, a DC elected); False when the DC's
        controller answered S_IDLE, every other answer is at rest and nothing is pending; None
        when that cannot be read (no DC, its crmadmin unanswered or missing: older Pacemaker)."""
        if self.pending or any(s not in CONTROLLER_AT_REST for _, s in self.controllers):
            return True
        return False if self.dc is not None and (self.dc, "S_IDLE") in self.controllers else None

    def to_json(self) -> dict[str, Any]:
        return {"version": SNAPSHOT_VERSION, **encode(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Snapshot:
        snap: Snapshot = decode_versioned(cls, data, SNAPSHOT_VERSION)
        return snap


def snapshot(report: ClusterReport, expect: Expectations = Expectations()) -> Snapshot:
    """What the diff engine needs from one poll; without a reference view only who answered."""
    polled, unanswered, disconnected = _reachability(report)
    corosync = _corosync(report)
    view = report.reference
    if report.kind == "corosync":
        ref = report.corosync.reference_node if report.corosync else None
        return Snapshot(report.cluster, corosync is not None, ref, polled=polled, unanswered=unanswered,
                        disconnected=_down(report), kind="corosync",
                        corosync=corosync, notes=_notes(report))
    if view is None:
        return Snapshot(report.cluster, polled=polled, unanswered=unanswered, disconnected=disconnected)
    clones, gaps = _clones(view, expect)
    failed, blocked, unmanaged = _flags(view)
    return Snapshot(
        report.cluster, True, report.reference_node, view.quorate, view.dc,
        view.summary.options.maintenance_mode,
        nodes=tuple(sorted((_node_state(n) for n in view.nodes), key=lambda s: s.name)),
        vips=tuple((v, view.running_on(v)) for v in vips_of(view, expect)),
        clones=clones, clone_gaps=gaps, failed=failed, blocked=blocked, unmanaged=unmanaged,
        failed_ops=_failed_ops(view), thresholds=_thresholds(view), fences=_fences(view),
        notes=_notes(report), polled=polled, unanswered=unanswered, disconnected=disconnected,
        corosync=corosync, pending=_pending(view), controllers=_controllers(report),
    )


_IN_FLIGHT = (Role.STARTING, Role.STOPPING, Role.MIGRATING)


def _pending(view: NodeView) -> tuple[tuple[str, str], ...]:
    """Actions Pacemaker has started and not finished: with record-pending (the default since
    2.1) crm_mon shows a start or stop in progress as the role Starting / Stopping, and any
    other operation (a probe, a monitor) as pending="Monitoring"."""
    found = {(r.id, r.pending or str(r.role)) for top in view.resources for r in top.walk()
             if r.kind is ResourceKind.PRIMITIVE and (r.pending or r.role in _IN_FLIGHT)}
    return tuple(sorted(found))


def _controllers(report: ClusterReport) -> tuple[tuple[str, str], ...]:
    return tuple((r.node, r.controller.state) for r in report.results if r.controller is not None)


def _notes(report: ClusterReport) -> tuple[Note, ...]:
    return tuple(_note(f) for f in report.findings if f.code in NOTE_CODES)


def _reachability(
    report: ClusterReport,
) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...], tuple[str, ...]]:
    results = report.results
    return (
        tuple(r.node for r in results),
        tuple((r.node, r.error or r.error_kind or "no answer") for r in results if not r.answered),
        tuple(r.node for r in results if r.view is not None and not r.view.connected),
    )


def _corosync(report: ClusterReport) -> CorosyncState | None:
    summary = report.corosync
    if summary is None or summary.quorum is None:
        return None
    q = summary.quorum
    vq = q.votequorum
    return CorosyncState(
        quorate=q.quorate,
        members=tuple(sorted((m.nodeid, summary.name(m.nodeid)) for m in q.members)),
        reference_node=summary.reference_node,
        ring_id=q.ring_id,
        total_votes=vq.total_votes if vq else None,
        expected_votes=vq.expected_votes if vq else None,
        quorum=vq.quorum if vq else None,
        down=_down(report),
        links_down=summary.redundancy_lost,
    )


def _down(report: ClusterReport) -> tuple[str, ...]:
    return tuple(r.node for r in report.results if r.corosync_down)


def _node_state(n: Node) -> NodeState:
    # standby-on-fail serves nothing either: for the diff it is standby.
    return NodeState(n.name, n.online, n.standby or n.standby_onfail, n.maintenance, n.unclean, n.pending)


def _clones(
    view: NodeView, expect: Expectations,
) -> tuple[tuple[Placement, ...], tuple[tuple[str, str], ...]]:
    # Like the health rule: only eligible nodes (healthy, quorate) are expected to run them.
    eligible = eligible_nodes(view)
    clones = tuple((c, view.running_on(c)) for c in everywhere_of(view, expect)
                   if view.resource(c) is not None)
    gaps = tuple((c, n) for c, running in clones for n in eligible if n not in running)
    return clones, gaps


def _flags(view: NodeView) -> tuple[tuple[Placement, ...], tuple[Placement, ...], tuple[Placement, ...]]:
    """Failed, blocked and unmanaged resources, by the id users name."""
    # In cluster maintenance-mode everything is unmanaged by design: the mode is the event.
    maintenance = view.summary.options.maintenance_mode
    return (
        _placements(i for i in view.instances if i.failed),
        _placements(i for i in view.instances if i.blocked),
        _placements(i for i in view.instances if not i.managed and not maintenance),
    )


def _placements(instances: Iterable[Instance]) -> tuple[Placement, ...]:
    where: dict[str, set[str]] = {}
    for inst in instances:
        where.setdefault(inst.top, set()).update(inst.nodes)
    return tuple((rid, tuple(sorted(nodes))) for rid, nodes in sorted(where.items()))


def _top_ids(view: NodeView) -> dict[str, str]:
    return {i.id: i.top for i in view.instances}


def _failed_ops(view: NodeView) -> tuple[FailedOp, ...]:
    top = _top_ids(view)
    ops = {
        (fa.node, fa.op_key): FailedOp(
            fa.node, fa.op_key, top.get(fa.resource, fa.resource), fa.resource, fa.task,
            fa.exitreason or fa.exitstatus or f"rc={fa.exitcode}", _iso(fa.last_rc_change))
        for fa in view.failures
    }
    return tuple(ops[k] for k in sorted(ops))


def _thresholds(view: NodeView) -> tuple[Threshold, ...]:
    top = _top_ids(view)
    found = {
        (top.get(h.resource, h.resource), h.node): Threshold(
            top.get(h.resource, h.resource), h.node, h.fail_count, h.migration_threshold)
        for h in view.history
        if h.migration_threshold and h.fail_count >= h.migration_threshold
    }
    return tuple(found[k] for k in sorted(found))


def _fences(view: NodeView) -> tuple[Fence, ...]:
    # Pending operations have no outcome yet: they are reported once they complete.
    done = {
        Fence(ev.target, ev.action, ev.status, _iso(ev.completed), ev.exit_reason)
        for ev in view.fence_history if ev.status != "pending"
    }
    return tuple(sorted(done, key=lambda f: (f.target, f.action, f.completed or "", f.status)))


def _note(f: Finding) -> Note:
    remedy = (f.remedy.action, *f.remedy.args) if f.remedy else ()
    return Note(f.code, f.subject, int(f.severity), f.message, remedy)


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when else None


# ---------------------------------------------------------------- JSON codec for frozen values


def encode(value: object) -> Any:
    """A frozen dataclass of tuples, enums and scalars -> JSON-able dicts and lists."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple):
        return [encode(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    return value


def decode_versioned(tp: type[Any], data: Mapping[str, Any], version: int) -> Any:
    """Decode a top-level value written by `to_json`; ValueError when it is from another version."""
    if not isinstance(data, Mapping) or data.get("version") != version:
        raise ValueError(f"cannot read {tp.__name__}: expected version {version}")
    return decode(tp, {k: v for k, v in data.items() if k != "version"})


def decode(tp: Any, value: Any) -> Any:
    """JSON-able data -> a value of type `tp`; ValueError when the data does not fit the type."""
    if isinstance(tp, type) and is_dataclass(tp):
        return _decode_dataclass(tp, value)
    if isinstance(tp, type) and issubclass(tp, Enum):
        return tp(value)
    origin, args = get_origin(tp), get_args(tp)
    if origin is tuple:
        return _decode_tuple(args, value)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return decode(next(a for a in args if a is not type(None)), value)
    return _scalar(tp, value)


def _decode_dataclass(tp: type[Any], value: Any) -> Any:
    if not isinstance(value, Mapping):
        raise ValueError(f"{tp.__name__}: expected an object, got {type(value).__name__}")
    hints = get_type_hints(tp)
    # Missing keys take their defaults, so a field added later still reads old state.
    try:
        return tp(**{k: decode(hints[k], v) for k, v in value.items() if k in hints})
    except TypeError as exc:
        raise ValueError(f"{tp.__name__}: {exc}") from exc


def _decode_tuple(args: tuple[Any, ...], value: Any) -> tuple[Any, ...]:
    if not isinstance(value, list | tuple):
        raise ValueError(f"expected a list, got {type(value).__name__}")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(decode(args[0], v) for v in value)
    if len(args) != len(value):
        raise ValueError(f"expected {len(args)} items, got {len(value)}")
    return tuple(decode(a, v) for a, v in zip(args, value, strict=True))


def _scalar(tp: Any, value: Any) -> Any:
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    # bool is an int: an int field must not accept true/false, nor a bool field 0/1.
    if tp in (str, int, bool) and type(value) is tp:
        return value
    raise ValueError(f"expected {getattr(tp, '__name__', tp)}, got {value!r}")
