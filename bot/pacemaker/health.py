"""Health rules: one node's view plus the cluster's expectations -> findings, like the runbook.

The runbook's checks: every VIP served, one VIP per node, the load-balancer clone on every live
node, no failed actions left behind, and at least two healthy nodes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import IntEnum

from bot.pacemaker.model import Instance, NodeView, ResourceKind
from bot.watch.codes import FindingCode

VIP_AGENTS = ("ocf:heartbeat:IPaddr2", "ocf:heartbeat:IPaddr", "ocf:heartbeat:IPsrcaddr")
MIN_HEALTHY_NODES = 2


class Severity(IntEnum):
    """Ordered so that max() gives the worst; values are stable for storage."""

    INFO = 1
    WARNING = 2
    CRITICAL = 3

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Remedy:
    """A catalogue action by name with its arguments, e.g. `cleanup virtual_ip_2 node1`."""

    action: str
    args: tuple[str, ...] = ()

    def __str__(self) -> str:
        return " ".join((self.action, *self.args))


@dataclass(frozen=True, slots=True)
class Finding:
    severity: Severity
    code: FindingCode  # stable machine name; alerts diff on (code, subject)
    subject: str  # the node, resource or "cluster" it is about
    message: str
    remedy: Remedy | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.code, self.subject)


@dataclass(frozen=True, slots=True)
class Expectations:
    """What this cluster should look like. Empty tuples mean: infer from the view."""

    vips: tuple[str, ...] = ()
    everywhere: tuple[str, ...] = ()


def vips_of(view: NodeView, expect: Expectations) -> tuple[str, ...]:
    """Configured VIPs, or every top-level IP-address primitive when none are configured."""
    if expect.vips:
        return expect.vips
    return tuple(
        r.id for r in view.resources if r.kind is ResourceKind.PRIMITIVE and r.agent in VIP_AGENTS
    )


def everywhere_of(view: NodeView, expect: Expectations) -> tuple[str, ...]:
    """Configured must-run-everywhere clones, or every anonymous, non-promotable clone."""
    if expect.everywhere:
        return expect.everywhere
    return tuple(
        r.id for r in view.resources
        if r.kind is ResourceKind.CLONE and not r.unique and not r.multi_state
    )


def eligible_nodes(view: NodeView) -> tuple[str, ...]:
    """Nodes that may run resources now: healthy, and in a partition that has quorum."""
    if view.summary.with_quorum is False:
        return ()
    return tuple(n.name for n in view.nodes if n.healthy)


def evaluate(view: NodeView, expect: Expectations = Expectations()) -> tuple[Finding, ...]:
    """All findings for one view, worst first; stable order within a severity."""
    if not view.connected:
        return (_disconnected(view),)
    findings = [f for rule in _RULES for f in rule(view, expect)]
    return tuple(sorted(findings, key=lambda f: -f.severity))


def worst(findings: Iterable[Finding]) -> Severity | None:
    return max((f.severity for f in findings), default=None)


def _disconnected(view: NodeView) -> Finding:
    reason = view.status.errors[-1] if view.status.errors else view.status.message
    return Finding(
        Severity.CRITICAL, FindingCode.PACEMAKER_DOWN, "node",
        f"crm_mon could not reach Pacemaker: {reason or 'not connected'}",
    )


# ---------------------------------------------------------------- cluster-level rules


def _quorum(view: NodeView, _: Expectations) -> Iterable[Finding]:
    s = view.summary
    if not s.dc_present:
        yield Finding(Severity.CRITICAL, FindingCode.NO_DC, "cluster",
                      "no Designated Controller: the cluster cannot make decisions")
    if s.with_quorum is False:
        policy = s.options.no_quorum_policy or "stop"
        yield Finding(Severity.CRITICAL, FindingCode.NO_QUORUM, "cluster",
                      f"partition WITHOUT quorum (no-quorum-policy={policy}): "
                      "bring a second node back to restore service")


def _healthy_count(view: NodeView, _: Expectations) -> Iterable[Finding]:
    members = [n for n in view.nodes if n.type.value == "member"]
    healthy = [n.name for n in members if n.healthy]
    if members and len(healthy) < min(MIN_HEALTHY_NODES, len(members)):
        names = ", ".join(healthy) or "none"
        yield Finding(Severity.CRITICAL, FindingCode.FEW_HEALTHY, "cluster",
                      f"only {len(healthy)} of {len(members)} nodes healthy ({names}): "
                      f"the runbook wants at least {MIN_HEALTHY_NODES}")


def _cluster_options(view: NodeView, _: Expectations) -> Iterable[Finding]:
    opts = view.summary.options
    if opts.maintenance_mode:
        yield Finding(Severity.WARNING, FindingCode.CLUSTER_MAINTENANCE, "cluster",
                      "cluster is in maintenance-mode: Pacemaker manages nothing, no failover")
    if opts.stop_all_resources:
        yield Finding(Severity.CRITICAL, FindingCode.STOP_ALL_RESOURCES, "cluster",
                      "stop-all-resources is set: every resource is being stopped")
    if opts.fencing_enabled is False:
        yield Finding(Severity.INFO, FindingCode.FENCING_DISABLED, "cluster",
                      "fencing (stonith) is disabled: a hung node cannot be fenced")


def _fencing(view: NodeView, _: Expectations) -> Iterable[Finding]:
    for ev in view.fence_history:
        if ev.status == "failed":
            why = f": {ev.exit_reason}" if ev.exit_reason else ""
            yield Finding(Severity.CRITICAL, FindingCode.FENCING_FAILED, ev.target,
                          f"fencing ({ev.action}) of {ev.target} failed{why}")
        elif ev.status == "pending":
            yield Finding(Severity.WARNING, FindingCode.FENCING_PENDING, ev.target,
                          f"fencing ({ev.action}) of {ev.target} is in progress")


# ---------------------------------------------------------------- node rules

_NODE_STATES: tuple[tuple[str, Severity, str, str | None], ...] = (
    # (attribute, severity, message, remedy action)
    ("unclean", Severity.CRITICAL, "is UNCLEAN: it must be fenced before resources move", None),
    ("pending", Severity.WARNING, "is pending: it has not finished joining", None),
    ("standby", Severity.WARNING, "is in standby: it serves no resources", "unstandby"),
    # The failed action that caused it carries the cleanup remedy.
    ("standby_onfail", Severity.WARNING, "went to standby after a failure", None),
    ("maintenance", Severity.WARNING, "is in maintenance: its resources are unmanaged",
     "unmaintenance"),
    ("shutdown", Severity.WARNING, "is shutting down", None),
)


def _nodes(view: NodeView, _: Expectations) -> Iterable[Finding]:
    for node in view.nodes:
        if not node.online:
            yield Finding(Severity.WARNING, FindingCode.NODE_OFFLINE, node.name,
                          f"{node.name} is OFFLINE", Remedy("start", (node.name,)))
            continue
        for attr, sev, text, action in _NODE_STATES:
            if getattr(node, attr):
                remedy = Remedy(action, (node.name,)) if action else None
                yield Finding(sev, FindingCode(f"node_{attr}"), node.name, f"{node.name} {text}", remedy)
        if node.health in ("yellow", "red"):
            sev = Severity.CRITICAL if node.health == "red" else Severity.WARNING
            yield Finding(sev, FindingCode.NODE_HEALTH, node.name, f"{node.name} health is {node.health}")


# ---------------------------------------------------------------- resource rules


def _vips(view: NodeView, expect: Expectations) -> Iterable[Finding]:
    vips = vips_of(view, expect)
    placement: dict[str, tuple[str, ...]] = {v: view.running_on(v) for v in vips}
    for vip, nodes in placement.items():
        if view.resource(vip) is None:
            yield Finding(Severity.WARNING, FindingCode.VIP_MISSING, vip,
                          f"{vip} is expected but not configured in the cluster")
        elif not nodes:
            yield Finding(Severity.CRITICAL, FindingCode.VIP_STOPPED, vip,
                          f"{vip} is STOPPED: its address is not served", _cleanup_if_failed(view, vip))
    yield from _vip_spread(view, placement)


def _vip_spread(view: NodeView, placement: dict[str, tuple[str, ...]]) -> Iterable[Finding]:
    """The runbook's rule: one VIP per node. Stacking is only a problem if a node is idle."""
    load = Counter(n for nodes in placement.values() for n in nodes)
    # Without quorum nothing may run: the quorum finding is the cause to fix.
    idle = [n for n in eligible_nodes(view) if load[n] == 0]
    stacked = sorted(n for n, c in load.items() if c > 1)
    if not (idle and stacked):
        return
    node = stacked[0]
    vip = sorted(v for v, nodes in placement.items() if node in nodes)[-1]
    yield Finding(Severity.WARNING, FindingCode.VIP_SPREAD, "cluster",
                  f"VIPs are not one per node: {node} serves "
                  f"{', '.join(v for v, ns in placement.items() if node in ns)} "
                  f"while {', '.join(idle)} serves none",
                  Remedy("move", (vip, idle[0])))


def _everywhere(view: NodeView, expect: Expectations) -> Iterable[Finding]:
    # Without quorum no node may run anything: gaps are the quorum finding's consequence.
    healthy = eligible_nodes(view)
    for rid in everywhere_of(view, expect):
        if view.resource(rid) is None:
            yield Finding(Severity.WARNING, FindingCode.CLONE_MISSING, rid,
                          f"{rid} is expected but not configured in the cluster")
            continue
        running = set(view.running_on(rid))
        for node in healthy:
            if node not in running:
                yield Finding(Severity.WARNING, FindingCode.CLONE_GAP, f"{rid}@{node}",
                              f"{rid} is not running on {node}",
                              Remedy("cleanup", (rid, node)))


def _resources(view: NodeView, expect: Expectations) -> Iterable[Finding]:
    vips = set(vips_of(view, expect))
    maintenance = view.summary.options.maintenance_mode
    for inst in view.instances:
        yield from _instance_findings(inst, inst.top in vips or inst.id in vips, maintenance)
    yield from _multi_active(view)


def _stopped(view: NodeView, expect: Expectations) -> Iterable[Finding]:
    """Primitives (alone or in a group) that should run but do not. Clone instances are
    counted per node by the clone rule, VIPs by the VIP rule; no quorum is its own finding."""
    if view.summary.with_quorum is False:
        return
    vips = set(vips_of(view, expect))
    seen: set[str] = set()
    for inst in view.instances:
        collective = inst.parents and view.resource(inst.parents[0])
        if inst.active or inst.disabled or inst.top in vips or inst.top in seen or (
                collective and collective.kind is not ResourceKind.GROUP):
            continue
        seen.add(inst.top)
        yield Finding(Severity.WARNING, FindingCode.RESOURCE_STOPPED, inst.top,
                      f"{inst.top} is stopped", Remedy("cleanup", (inst.top,)))


def _instance_findings(inst: Instance, is_vip: bool, maintenance: bool) -> Iterable[Finding]:
    where = f" on {', '.join(inst.nodes)}" if inst.nodes else ""
    if inst.failed:
        sev = Severity.CRITICAL if is_vip else Severity.WARNING
        yield Finding(sev, FindingCode.RESOURCE_FAILED, inst.top, f"{inst.top} FAILED{where}",
                      Remedy("cleanup", (inst.top,)))
    if inst.blocked:
        yield Finding(Severity.CRITICAL, FindingCode.RESOURCE_BLOCKED, inst.top,
                      f"{inst.top} is BLOCKED{where}: Pacemaker will not touch it until cleanup",
                      Remedy("cleanup", (inst.top,)))
    if not inst.managed and not maintenance:
        yield Finding(Severity.WARNING, FindingCode.RESOURCE_UNMANAGED, inst.top,
                      f"{inst.top} is unmanaged{where}: Pacemaker will not recover it")


def _multi_active(view: NodeView) -> Iterable[Finding]:
    for res in view.resources:
        if res.kind is ResourceKind.PRIMITIVE and len(res.nodes) > 1:
            yield Finding(Severity.CRITICAL, FindingCode.MULTI_ACTIVE, res.id,
                          f"{res.id} is active on {len(res.nodes)} nodes at once "
                          f"({', '.join(res.nodes)})", Remedy("cleanup", (res.id,)))


def _failed_actions(view: NodeView, _: Expectations) -> Iterable[Finding]:
    top = _top_ids(view)
    for fa in view.failures:
        rid = top.get(fa.resource, fa.resource)
        why = fa.exitreason or fa.exitstatus or f"rc={fa.exitcode}"
        yield Finding(Severity.WARNING, FindingCode.FAILED_ACTION, f"{rid}@{fa.node}",
                      f"failed action {fa.task or 'operation'} of {fa.resource} on {fa.node} "
                      f"({why}) not cleaned up", Remedy("cleanup", (rid, fa.node)))


def _fail_counts(view: NodeView, _: Expectations) -> Iterable[Finding]:
    top = _top_ids(view)
    for h in view.history:
        if h.migration_threshold and h.fail_count >= h.migration_threshold:
            rid = top.get(h.resource, h.resource)
            yield Finding(Severity.CRITICAL, FindingCode.MIGRATION_THRESHOLD, f"{rid}@{h.node}",
                          f"{h.resource} failed {h.fail_count} times on {h.node}, reaching "
                          f"migration-threshold {h.migration_threshold}: banned there until cleanup",
                          Remedy("cleanup", (rid, h.node)))


def _top_ids(view: NodeView) -> dict[str, str]:
    """Primitive id -> the id users name (the clone or group around it)."""
    return {i.id: i.top for i in view.instances}


def _cleanup_if_failed(view: NodeView, rid: str) -> Remedy | None:
    failed = any(f.resource == rid for f in view.failures) or any(
        h.resource == rid and h.fail_count for h in view.history)
    res = view.resource(rid)
    return Remedy("cleanup", (rid,)) if failed or (res is not None and res.failed) else None


def _disabled(view: NodeView, _: Expectations) -> Iterable[Finding]:
    for res in view.resources:
        if res.disabled:
            yield Finding(Severity.INFO, FindingCode.RESOURCE_DISABLED, res.id,
                          f"{res.id} is disabled (target-role Stopped)")
        if res.orphaned:
            yield Finding(Severity.INFO, FindingCode.RESOURCE_ORPHANED, res.id,
                          f"{res.id} is orphaned: still active but no longer configured")


_RULES: tuple[Callable[[NodeView, Expectations], Iterable[Finding]], ...] = (
    _quorum, _healthy_count, _cluster_options, _fencing, _nodes, _vips, _everywhere,
    _resources, _stopped, _failed_actions, _fail_counts, _disabled,
)

