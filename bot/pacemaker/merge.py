"""Every node's answer -> one cluster report: a reference view, the disagreements, the findings.

`pcs status` shows one node's opinion; a node that sees a different DC, quorum or membership
than the rest is the runbook's "node out of sync with the rest of the cluster".

The Corosync layer (quorum, membership, links) is judged alongside: for a Pacemaker cluster its
findings join the Pacemaker ones; a corosync-only cluster (Proxmox VE, ...) has no Pacemaker
view at all and is judged by Corosync alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Literal

from bot.corosync import health as corosync_health
from bot.corosync.model import NodeCorosync
from bot.corosync.summary import CorosyncSummary, summarize
from bot.pacemaker.daemons import Daemons
from bot.pacemaker.health import Expectations, Finding, Remedy, Severity, evaluate, worst
from bot.pacemaker.model import ControllerStatus, NodeView
from bot.watch.codes import FindingCode

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Kind = Literal["pacemaker", "corosync"]
# Corosync findings that restate what a Pacemaker finding about the same node already says
# (its partition, its membership): one finding per node and cause, like node_offline.
_MEMBERSHIP_CODES = frozenset({FindingCode.COROSYNC_NOT_QUORATE, FindingCode.COROSYNC_MEMBERSHIP_MISMATCH})
_PCMK_NODE_CODES = frozenset({FindingCode.OUT_OF_SYNC, FindingCode.SPLIT_BRAIN, FindingCode.NODE_OFFLINE,
                              FindingCode.PACEMAKER_DOWN, FindingCode.NODE_UNREACHABLE,
                              FindingCode.NODE_UNCLEAN})


@dataclass(frozen=True, slots=True)
class NodeResult:
    """What one node answered: a view (possibly disconnected) or why we have none."""

    node: str
    view: NodeView | None = None
    error: str | None = None  # one human line when view is None
    error_kind: str | None = None  # stable label: unreachable, timeout, host_key, parse, ...
    daemons: Daemons | None = None
    duration_s: float | None = None
    corosync: NodeCorosync | None = None  # None: not asked, or no SSH answer at all
    corosync_error: str | None = None  # one human line: why the quorum (or link) view is missing
    corosync_error_kind: str | None = None  # down (corosync not running), not_found, parse, timeout...
    details_at: datetime | None = None  # when `daemons` and `corosync` were answered
    # Its controller's state (crmadmin), asked with the details; None: not asked or no answer.
    controller: ControllerStatus | None = None

    @property
    def answered(self) -> bool:
        """The node answered over SSH (a crm_mon view, or its Corosync tools ran)."""
        return self.view is not None or self.corosync is not None

    @property
    def ok(self) -> bool:
        if self.view is not None:
            return self.view.connected
        # Corosync-only clusters: the node's own quorum view is its answer.
        return self.error is None and self.corosync is not None and self.corosync.quorum is not None

    @property
    def corosync_down(self) -> bool:
        return self.corosync_error_kind == "down"


@dataclass(frozen=True, slots=True)
class ClusterReport:
    cluster: str
    results: tuple[NodeResult, ...]
    reference: NodeView | None
    reference_node: str | None
    findings: tuple[Finding, ...]
    collected_at: datetime | None = None
    collected: bool = True  # False for a saved crm_mon file: no SSH, no configured node list
    kind: Kind = "pacemaker"  # "corosync": no Pacemaker; `reference` is always None
    corosync: CorosyncSummary | None = None  # None when no node was asked about Corosync

    @property
    def severity(self) -> Severity | None:
        return worst(self.findings)

    @property
    def has_view(self) -> bool:
        """Some node told us what the cluster looks like: Pacemaker's view, or for a
        corosync-only cluster a Corosync quorum view."""
        if self.kind == "corosync":
            return self.corosync is not None and self.corosync.quorum is not None
        return self.reference is not None

    @property
    def healthy(self) -> bool:
        """No warnings or worse: INFO findings (fencing disabled, ...) do not count."""
        sev = self.severity
        return self.has_view and (sev is None or sev is Severity.INFO)

    @property
    def unreachable(self) -> tuple[NodeResult, ...]:
        return tuple(r for r in self.results if not r.answered)

    def result(self, node: str) -> NodeResult | None:
        return next((r for r in self.results if r.node == node), None)


def merge(
    cluster: str,
    results: Iterable[NodeResult],
    expect: Expectations = Expectations(),
    collected_at: datetime | None = None,
    *,
    kind: Kind = "pacemaker",
) -> ClusterReport:
    res = tuple(results)
    if kind == "corosync":
        summary = _summary(res, None)
        found = _corosync_only(res, summary)
        return ClusterReport(cluster, res, None, None, found, collected_at, kind=kind, corosync=summary)
    ref_node, ref = _reference(res)
    summary = _summary(res, ref)
    base: list[Finding] = list(evaluate(ref, expect)) if ref else [_nobody(res, summary)]
    disagree = list(_disagreements(res, ref_node, ref))
    extra = [*disagree, *_reachability(res, ref), *_daemon_findings(res, ref)]
    unique: dict[tuple[str, str], Finding] = {}
    for f in base:
        unique.setdefault(f.key, f)  # rules run cause-first: the first one said wins
    for f in extra:
        unique[f.key] = f  # the multi-node evidence refines a single view's finding
    for f in disagree:
        # It answers and runs Pacemaker: the others see it OFFLINE because it is cut off, and
        # `start` cannot help. Its out-of-sync finding says so, with the runbook's fix.
        unique.pop((FindingCode.NODE_OFFLINE, f.subject), None)
    said = {f.subject for f in unique.values() if f.code in _PCMK_NODE_CODES}
    for f in _corosync_findings(res):
        if not (f.code in _MEMBERSHIP_CODES and f.subject in said):
            unique.setdefault(f.key, f)  # Pacemaker said it first: its finding stays
    ordered = sorted(unique.values(), key=lambda f: -f.severity)
    return ClusterReport(cluster, res, ref, ref_node, tuple(ordered), collected_at, corosync=summary)


# ---------------------------------------------------------------- the Corosync layer


def _summary(results: tuple[NodeResult, ...], ref: NodeView | None) -> CorosyncSummary | None:
    """None when no node was asked (a saved crm_mon file, callers without Corosync data)."""
    if all(r.corosync is None and r.corosync_error is None for r in results):
        return None
    # Pacemaker's node ids are Corosync's: they name a node whose Corosync cannot.
    known = {int(n.id): n.name for n in ref.nodes if n.id and n.id.isdigit()} if ref else {}
    return summarize({r.node: r.corosync for r in results}, known)


def _corosync_findings(results: tuple[NodeResult, ...]) -> tuple[Finding, ...]:
    return corosync_health.evaluate({r.node: r.corosync for r in results})


def _corosync_only(results: tuple[NodeResult, ...], summary: CorosyncSummary | None) -> tuple[Finding, ...]:
    """A cluster without Pacemaker: Corosync's rules, who answered, whose Corosync is down."""
    has_view = summary is not None and summary.quorum is not None
    members = set(summary.members) if summary else set()
    found: list[Finding] = [] if has_view else [_nobody_corosync(results)]
    found += _corosync_findings(results)
    for r in results:
        if not r.answered:
            member = r.node in members
            also = " although Corosync counts it as a member" if member else ""
            found.append(Finding(Severity.WARNING if member or not has_view else Severity.INFO,
                                 FindingCode.NODE_UNREACHABLE, r.node,
                                 f"{r.node} did not answer{also}: {r.error or 'no answer'}"))
        elif r.corosync_down:
            found.append(Finding(Severity.WARNING if has_view else Severity.CRITICAL,
                                 FindingCode.COROSYNC_DOWN, r.node,
                                 f"{r.node}: {r.corosync_error or 'corosync is not running'}",
                                 Remedy("start-corosync", (r.node,))))
    down = {r.node for r in results if r.corosync_down}
    found += _daemon_findings(results, None, skip=down)
    unique: dict[tuple[str, str], Finding] = {}
    for f in found:
        unique.setdefault(f.key, f)
    return tuple(sorted(unique.values(), key=lambda f: -f.severity))


def _nobody_corosync(results: tuple[NodeResult, ...]) -> Finding:
    if not results:
        return Finding(Severity.CRITICAL, FindingCode.NO_NODES, "cluster", "no nodes configured")
    return Finding(Severity.CRITICAL, FindingCode.NO_VIEW, "cluster",
                   f"no node could report the Corosync status ({len(results)} tried)")


def _reference(results: tuple[NodeResult, ...]) -> tuple[str | None, NodeView | None]:
    """The freshest quorate view; failing that the freshest connected one."""
    connected = [(r.node, r.view) for r in results if r.view is not None and r.view.connected]
    if not connected:
        return None, None
    def rank(item: tuple[str, NodeView]) -> tuple[bool, datetime]:
        view = item[1]
        return (view.quorate is True, view.summary.last_update or _EPOCH)
    # max() keeps the first of equals, so ties go to the first configured node.
    return max(connected, key=rank)


def _nobody(results: tuple[NodeResult, ...], summary: CorosyncSummary | None) -> Finding:
    """No Pacemaker view. Say why: nodes that answer with Pacemaker stopped are not nodes that
    could not be asked, and Corosync may well be up (Pacemaker stopped everywhere)."""
    if not results:
        return Finding(Severity.CRITICAL, FindingCode.NO_NODES, "cluster", "no nodes configured")
    stopped = [r.node for r in results if r.view is not None and not r.view.connected]
    answered = sum(1 for r in results if r.answered)
    if not stopped:
        return Finding(Severity.CRITICAL, FindingCode.NO_VIEW, "cluster",
                       f"no node could report the cluster status ({len(results)} tried)")
    where = ("any node" if len(stopped) == len(results)
             else f"{', '.join(stopped)}, and no other node could report the cluster status")
    return Finding(Severity.CRITICAL, FindingCode.NO_VIEW, "cluster",
                   f"Pacemaker is not running on {where} ({answered}/{len(results)} nodes "
                   f"answered){_corosync_state(results, summary)}")


def _corosync_state(results: tuple[NodeResult, ...], summary: CorosyncSummary | None) -> str:
    """`; Corosync is up and quorate (3/3 members)`, or what else is true of it; empty when
    nobody was asked."""
    if summary is None:
        return ""
    q = summary.quorum
    if q is None:
        down = all(r.corosync_down for r in results if r.answered)
        return "; Corosync is not running either" if down else "; no node gave a Corosync quorum view"
    known = len({*summary.members, *(r.node for r in results)})
    state = "up and quorate" if q.quorate else "up but NOT quorate"
    return f"; Corosync is {state} ({len(q.members)}/{known} members)"


def _membership(view: NodeView) -> frozenset[str]:
    return frozenset(n.name for n in view.nodes if n.online)


def _disagreements(
    results: tuple[NodeResult, ...], ref_node: str | None, ref: NodeView | None
) -> Iterable[Finding]:
    if ref is None:
        return
    for r in results:
        if r.node == ref_node or r.view is None or not r.view.connected:
            continue
        diff = _how_differs(r.view, ref)
        if not diff:
            continue
        split = r.view.quorate and ref.quorate and r.view.dc != ref.dc
        if split:
            yield Finding(Severity.CRITICAL, FindingCode.SPLIT_BRAIN, r.node,
                          f"SPLIT BRAIN: {r.node} and {ref_node} both have quorum with "
                          f"different DCs ({r.view.dc} vs {ref.dc})", Remedy("resync", (r.node,)))
        else:
            yield Finding(Severity.CRITICAL if ref.quorate is not True else Severity.WARNING,
                          FindingCode.OUT_OF_SYNC, r.node,
                          f"{r.node} is out of sync with the cluster: {_seen_offline(r.node, ref)}{diff}",
                          Remedy("resync", (r.node,)))


def _seen_offline(node: str, ref: NodeView) -> str:
    """A node the others count OFFLINE although it answers and runs Pacemaker: cut off."""
    pcmk = ref.node(node)
    if pcmk is None or pcmk.online:
        return ""
    return "it runs Pacemaker and answers over SSH, but the others see it OFFLINE; "


def _how_differs(view: NodeView, ref: NodeView) -> str:
    parts = []
    if view.dc != ref.dc:
        parts.append(f"it sees DC {view.dc or 'none'}, the others {ref.dc or 'none'}")
    if view.quorate != ref.quorate:
        parts.append(f"it {'has' if view.quorate else 'lacks'} quorum")
    mine, theirs = _membership(view), _membership(ref)
    if mine != theirs:
        parts.append(f"it sees online [{' '.join(sorted(mine))}], "
                     f"the others [{' '.join(sorted(theirs))}]")
    return "; ".join(parts)


def _reachability(results: tuple[NodeResult, ...], ref: NodeView | None) -> Iterable[Finding]:
    for r in results:
        pcmk = ref.node(r.node) if ref else None
        if r.view is None:
            online = pcmk is not None and pcmk.online
            sev = Severity.WARNING if online or ref is None else Severity.INFO
            also = " although Pacemaker reports it online" if online else ""
            yield Finding(sev, FindingCode.NODE_UNREACHABLE, r.node,
                          f"{r.node} did not answer{also}: {r.error or 'no answer'}")
        elif not r.view.connected and pcmk is not None and not pcmk.online:
            # Same node, same fix as the reference's "node offline": one finding, more evidence.
            yield Finding(Severity.WARNING, FindingCode.NODE_OFFLINE, r.node,
                          f"{r.node} is OFFLINE: it answers over SSH but Pacemaker is not running "
                          f"there ({_reason(r.view)})", Remedy("start", (r.node,)))
        elif not r.view.connected:
            yield Finding(Severity.CRITICAL if ref is None else Severity.WARNING,
                          FindingCode.PACEMAKER_DOWN, r.node,
                          f"{r.node}: Pacemaker is not running there ({_reason(r.view)})",
                          Remedy("start", (r.node,)))


def _reason(view: NodeView) -> str:
    return view.status.errors[-1] if view.status.errors else (view.status.message or "not connected")


def _daemon_findings(results: tuple[NodeResult, ...], ref: NodeView | None,
                     skip: frozenset[str] | set[str] = frozenset()) -> Iterable[Finding]:
    for r in results:
        if r.daemons is None or not r.daemons.systemd or r.node in skip:
            continue
        down = r.daemons.inactive
        if not down or (r.view is not None and not r.view.connected):
            continue  # a node whose Pacemaker is down already has a finding
        yield Finding(Severity.WARNING, FindingCode.DAEMON_INACTIVE, r.node,
                      f"{', '.join(down)} {'is' if len(down) == 1 else 'are'} not active "
                      f"on {r.node}", Remedy("resync", (r.node,)))


def single(view: NodeView, expect: Expectations = Expectations(),
           cluster: str = "cluster") -> ClusterReport:
    """A report from one saved crm_mon answer (`clusterbot render`)."""
    result = NodeResult(node="saved output", view=view)
    if not view.connected:  # one node's word, not "any node", and no node to start
        found = Finding(Severity.CRITICAL, FindingCode.PACEMAKER_DOWN, "node",
                        f"Pacemaker was not running where this output was taken ({_reason(view)})")
        return ClusterReport(cluster, (result,), None, None, (found,), collected=False)
    return replace(merge(cluster, (result,), expect), collected=False)
