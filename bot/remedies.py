"""The remediation catalogue, pure: what each action runs, where, when it is unsafe, how to verify.

Arguments reach argv only through fixed templates after strict validation against the live
status; argv is later shell-quoted element by element (bot/ssh.build_command). No chat text is
ever interpreted by a shell.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from bot.pacemaker import whatif
from bot.pacemaker.health import Remedy, eligible_nodes
from bot.pacemaker.merge import ClusterReport, Kind
from bot.pacemaker.model import Node, NodeView, ResourceKind, Summary
from bot.watch.codes import FindingCode

Argv = tuple[str, ...]
Version = tuple[int, ...]
_VERSION = re.compile(r"^\s*(\d+(?:\.\d+)*)")
_PLACEHOLDER = re.compile(r"\{(resource|node)(\?)?\}")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._:-]{0,62}$")


class Refused(Exception):
    """The action may not run now; `message` says why in one line (shown to the requester)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class Target:
    resource: str | None = None
    node: str | None = None


@dataclass(frozen=True, slots=True)
class Step:
    name: str  # template key, overridable per cluster (ClusterConfig.templates)
    argv: Argv  # may contain {resource} {node}; {x?} drops the element when x is absent
    unit: str | None = None  # run only where this systemd unit is installed (asked on the node)
    # (pcs version, argv): from that pcs version on, this argv instead (newest that applies wins).
    # pcs changes what a command means between versions, so the node's pcs decides.
    since_pcs: tuple[tuple[Version, Argv], ...] = ()


@dataclass(frozen=True, slots=True)
class Plan:
    action: str
    target: Target
    node: str  # where the commands run
    commands: tuple[Argv, ...]
    reason: str
    undo: Remedy | None


Check = Callable[[NodeView, ClusterReport, Target], str | None]  # refusal text or None
WhatIf = Callable[[bytes, Target], bytes]  # the CIB (cibadmin --query) after the action


@dataclass(frozen=True, slots=True)
class Action:
    name: str
    steps: tuple[Step, ...]
    runs_on: str  # "target": the named node; "dc": the DC or another healthy node
    checks: tuple[Check, ...]
    verify: Check  # None once the action had its effect
    undo: str | None = None  # the action that reverses it
    kinds: tuple[Kind, ...] = ("pacemaker",)  # the cluster kinds it is a fix for
    # May be planned when no node has a Pacemaker view (Pacemaker stopped everywhere): only
    # an action that starts it; the others' safety checks need Pacemaker's view.
    without_pacemaker: bool = False
    # The change applied to a copy of the live CIB for crm_simulate to predict from; None: the
    # action changes nothing crm_simulate can model, and `no_prediction` says why.
    whatif: WhatIf | None = None
    no_prediction: str = "it changes nothing in the CIB that crm_simulate could simulate"

    @property
    def needs_pcs_version(self) -> bool:
        return any(step.since_pcs for step in self.steps)


# ---------------------------------------------------------------- arguments


def target_of(action: str, args: tuple[str, ...], view: NodeView) -> Target:
    """Sort the positional words into resource and node by what exists in the live status."""
    resource = node = None
    for word in args:
        if not _NAME.fullmatch(word):
            raise Refused(f"{word[:40]!r} is not a valid Pacemaker name")
        if view.node(word) is not None and node is None:
            node = word
        elif view.resource(word) is not None and resource is None:
            resource = word
        else:
            raise Refused(f"`{word}` is not a node or resource of this cluster right now")
    return Target(resource, node)


def _fill(element: str, values: Mapping[str, str | None]) -> str:
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), element)


def parse_pcs_version(text: str) -> Version | None:
    """`pcs --version` prints e.g. "0.11.5" (some builds add "+..." or a second line)."""
    match = _VERSION.match(text)
    return tuple(int(p) for p in match[1].split(".")) if match else None


def step_argv(step: Step, pcs: Version | None) -> Argv:
    """The step's argv for this pcs version (None: unknown, the base form)."""
    chosen = step.argv
    for since, argv in sorted(step.since_pcs):
        if pcs is not None and pcs >= since:
            chosen = argv
    return chosen


def expand(step: Step, target: Target, templates: Mapping[str, Argv], pcs: Version | None = None) -> Argv:
    argv = templates[step.name] if step.name in templates else step_argv(step, pcs)
    out = []
    for element in argv:
        names = _PLACEHOLDER.findall(element)
        values = {n: getattr(target, n) for n, _ in names}
        if any(values[n] is None and not optional for n, optional in names):
            raise Refused(f"`{step.name}` needs a {' and '.join(n for n, _ in names)}")
        if any(v is None for v in values.values()):
            continue  # an optional element whose value is absent
        out.append(_fill(element, values))
    return tuple(out)


# ---------------------------------------------------------------- checks


def _majority(view: NodeView) -> int:
    members = [n for n in view.nodes if n.type.value == "member"]
    return len(members) // 2 + 1


def _online(view: NodeView) -> list[str]:
    return [n.name for n in view.nodes if n.online and n.type.value == "member"]


def no_fencing(view: NodeView, _: ClusterReport, __: Target) -> str | None:
    pending = [e.target for e in view.fence_history if e.status == "pending"]
    return f"fencing of {', '.join(pending)} is in progress: wait for it" if pending else None


def needs_node(view: NodeView, _: ClusterReport, t: Target) -> str | None:
    return None if t.node else "name the node"


def needs_resource(view: NodeView, _: ClusterReport, t: Target) -> str | None:
    return None if t.resource else "name the resource"


def keeps_quorum(view: NodeView, _: ClusterReport, t: Target) -> str | None:
    """Restarting corosync on a node takes it out of the membership for a while."""
    online = _online(view)
    if t.node in online and len(online) - 1 < _majority(view):
        return (f"restarting corosync on {t.node} would lose quorum ({len(online)} of "
                f"{len(view.nodes)} nodes online, {_majority(view)} needed)")
    return None


def keeps_two_healthy(view: NodeView, _: ClusterReport, t: Target) -> str | None:
    left = [n for n in eligible_nodes(view) if n != t.node]
    if len(left) < 2:
        return f"standby of {t.node} would leave {len(left)} healthy node(s); the runbook wants 2"
    return None


def not_standby(view: NodeView, _: ClusterReport, t: Target) -> str | None:
    node = view.node(t.node or "")
    return f"{t.node} is already in standby" if node and node.standby else None


def is_standby(view: NodeView, _: ClusterReport, t: Target) -> str | None:
    node = view.node(t.node or "")
    return None if node and node.standby else f"{t.node} is not in standby"


def is_offline(view: NodeView, _: ClusterReport, t: Target) -> str | None:
    node = view.node(t.node or "")
    return None if node and not node.online else f"{t.node} is already online"


def reachable(_: NodeView, report: ClusterReport, t: Target) -> str | None:
    result = report.result(t.node or "")
    if result is None:
        return f"{t.node} is not a configured node, clusterbot cannot reach it"
    return None if result.answered else f"{t.node} does not answer over SSH: {result.error}"


def has_something_to_clean(view: NodeView, _: ClusterReport, t: Target) -> str | None:
    ids = {t.resource, *(i.id for i in view.instances_of(t.resource))} if t.resource else None

    def mine(rid: str, node: str | None = None) -> bool:
        return (ids is None or rid in ids) and (t.node is None or node is None or node == t.node)

    dirty = (any(mine(f.resource, f.node) for f in view.failures)
             or any(mine(h.resource, h.node) and h.fail_count for h in view.history)
             or any(mine(i.id) and (i.failed or i.blocked) for i in view.instances))
    what = t.resource or "any resource"
    return None if dirty else f"nothing to clean up: no failures or fail-counts for {what}"


def movable(view: NodeView, _: ClusterReport, t: Target) -> str | None:
    res = view.resource(t.resource or "")
    if res is None or res.kind is not ResourceKind.PRIMITIVE:
        return f"{t.resource} is not a primitive resource: only primitives (like VIPs) move"
    if t.node not in eligible_nodes(view):
        return f"{t.node} cannot run resources now (offline, standby or without quorum)"
    if t.node in view.running_on(t.resource or ""):
        return f"{t.resource} already runs on {t.node}"
    return None


def always(_: NodeView, __: ClusterReport, ___: Target) -> str | None:
    return None


# ---------------------------------------------------------------- what-if (crm_simulate)


def prefer_target(cib: bytes, t: Target) -> bytes:
    return whatif.prefer(cib, t.resource or "", t.node or "")


def clear_target(cib: bytes, t: Target) -> bytes:
    return whatif.clear(cib, t.resource or "")


def standby_target(cib: bytes, t: Target) -> bytes:
    return whatif.standby(cib, t.node or "", on=True)


def unstandby_target(cib: bytes, t: Target) -> bytes:
    return whatif.standby(cib, t.node or "", on=False)


# ---------------------------------------------------------------- verification


def cleaned(view: NodeView, report: ClusterReport, t: Target) -> str | None:
    return None if has_something_to_clean(view, report, t) else "failures are still there"


def node_in_sync(view: NodeView, report: ClusterReport, t: Target) -> str | None:
    node = view.node(t.node or "")
    if node is None or not node.online:
        return f"{t.node} is not back online yet"
    odd = [f for f in report.findings if f.subject == t.node and f.code in
           (FindingCode.OUT_OF_SYNC, FindingCode.SPLIT_BRAIN, FindingCode.DAEMON_INACTIVE,
            FindingCode.NODE_UNREACHABLE, FindingCode.PACEMAKER_DOWN)]
    return odd[0].message if odd else None


def verify_standby(view: NodeView, r: ClusterReport, t: Target) -> str | None:
    return is_standby(view, r, t)


def verify_unstandby(view: NodeView, r: ClusterReport, t: Target) -> str | None:
    return not_standby(view, r, t)


def verify_moved(view: NodeView, _: ClusterReport, t: Target) -> str | None:
    where = view.running_on(t.resource or "")
    return None if t.node in where else f"{t.resource} runs on {', '.join(where) or 'no node'}"


def verify_online(view: NodeView, _: ClusterReport, t: Target) -> str | None:
    node = view.node(t.node or "")
    return None if node and node.online else f"{t.node} is not online yet"


# ---------------------------------------------------------------- the view an action is judged by


def judged_view(report: ClusterReport) -> NodeView | None:
    """Pacemaker's reference view. Without one (Pacemaker stopped everywhere, or a corosync-only
    cluster) a stand-in from what the nodes did answer: every configured node, online where
    Pacemaker runs (nowhere) or, on a corosync-only cluster, where it is a Corosync member.
    None when no node answered at all: nothing can be judged."""
    if report.reference is not None:
        return report.reference
    if not any(r.answered for r in report.results):
        return None
    summary = report.corosync
    members = set(summary.members) if summary is not None and report.kind == "corosync" else set()
    names = [*(r.node for r in report.results), *sorted(members - {r.node for r in report.results})]
    quorate = summary.quorate if summary is not None and report.kind == "corosync" else None
    return NodeView(format="stand-in", connected=report.kind == "corosync",
                    summary=Summary(with_quorum=quorate, nodes_configured=len(names)),
                    nodes=tuple(Node(n, online=n in members) for n in names))


# ---------------------------------------------------------------- planning


def refusal(action: Action, view: NodeView, report: ClusterReport, target: Target) -> str | None:
    return next((msg for check in action.checks if (msg := check(view, report, target))), None)


def plan(action: Action, args: tuple[str, ...], report: ClusterReport,
         templates: Mapping[str, Argv] = {}, pcs: Version | None = None) -> Plan:
    """Validate against the live status and build the exact commands, or raise Refused.
    `pcs`: the version of pcs on the node the commands run on (for steps that differ by it)."""
    if report.kind not in action.kinds:
        raise Refused(f"`{action.name}` is not a fix for a {report.kind} cluster"
                      + ("; for a node whose Corosync is down: `start-corosync`"
                         if report.kind == "corosync" else ""))
    view = judged_view(report)
    if view is None:
        raise Refused("no node answered: clusterbot cannot judge whether this is safe")
    if report.kind == "pacemaker" and report.reference is None and not action.without_pacemaker:
        raise Refused("Pacemaker runs on no node that answered: clusterbot cannot judge whether "
                      "this is safe; start Pacemaker first (`start`)")
    target = target_of(action.name, args, view)
    why = refusal(action, view, report, target)
    if why:
        raise Refused(why)
    runs_on = target.node if action.runs_on == "target" else _runner(view, report, target)
    commands = tuple(expand(s, target, templates, pcs) for s in action.steps)
    undo_args = tuple(a for a in (target.resource, target.node) if a)
    undo = Remedy(action.undo, undo_args if action.undo != "clear" else (target.resource or "",)) \
        if action.undo else None
    return Plan(action.name, target, runs_on or "", commands, _reason(action, report, target), undo)


def _runner(view: NodeView, report: ClusterReport, target: Target) -> str:
    """The DC if it answers over SSH, else another healthy node that does (not the target)."""
    answering = {r.node for r in report.results if r.ok}
    order = [view.dc, *eligible_nodes(view), *(n.name for n in view.nodes if n.online)]
    for name in order:
        if name and name in answering and name != target.node:
            return name
    for name in order:
        if name and name in answering:
            return name
    raise Refused("no healthy node answers over SSH to run the command on")


def _reason(action: Action, report: ClusterReport, target: Target) -> str:
    subjects = {target.node, target.resource}
    for f in report.findings:
        if f.remedy is not None and f.remedy.action == action.name and (
                f.subject in subjects or f.subject.split("@")[0] in subjects):
            return f.message
    return "requested by hand (no current finding asks for it)"


def fingerprint_parts(report: ClusterReport, target: Target) -> dict[str, str | tuple[str, ...]]:
    """What an approval is bound to: DC, quorum, membership, last change, the target's state."""
    view = judged_view(report)
    if view is None:
        return {"view": "none"}
    change = view.summary.last_change
    node = view.node(target.node or "")
    return {
        "dc": view.dc or "", "quorum": str(view.quorate),
        "online": tuple(sorted(_online(view))),
        "last_change": change.time.isoformat() if change and change.time else "",
        "node": f"online={node.online},standby={node.standby},maintenance={node.maintenance}"
        if node else "",
        "resource": ",".join(view.running_on(target.resource)) if target.resource else "",
    }


# ---------------------------------------------------------------- corosync-only clusters (Proxmox VE)
# Their remedy starts Corosync itself, and on Proxmox the cluster filesystem (pve-cluster); never
# `pcs cluster start`, which would start Pacemaker (and pcs is absent on Proxmox).

# `systemctl is-enabled UNIT` prints one of these for an installed unit that may be started;
# nothing (stderr "No such file or directory") when there is no such unit. Masked: an admin
# said never start it.
_STARTABLE = frozenset({"enabled", "enabled-runtime", "linked", "linked-runtime", "alias", "static",
                        "indirect", "disabled", "generated", "transient"})


def unit_installed(is_enabled_stdout: str) -> bool:
    """From `systemctl is-enabled UNIT`: the unit exists and may be started."""
    words = is_enabled_stdout.split()
    return bool(words) and words[0] in _STARTABLE


def probed_units(action: Action) -> tuple[str, ...]:
    """The units whose presence on the target decides which steps run."""
    return tuple(sorted({s.unit for s in action.steps if s.unit}))


def with_units(action: Action, p: Plan, installed: frozenset[str]) -> Plan:
    """The plan without the steps whose unit is not installed on the node."""
    keep = tuple(cmd for step, cmd in zip(action.steps, p.commands, strict=True)
                 if step.unit is None or step.unit in installed)
    return replace(p, commands=keep)


def corosync_stopped(_: NodeView, report: ClusterReport, t: Target) -> str | None:
    """Refuse unless the node's own Corosync tools said Corosync is not running there."""
    result = report.result(t.node or "")
    if result is None or result.corosync_down:
        return None  # not configured: `reachable` says so
    if result.corosync is not None and result.corosync.quorum is not None:
        return f"corosync is running on {t.node}: nothing to start"
    why = result.corosync_error or "no answer from its Corosync tools"
    return f"clusterbot cannot tell whether corosync runs on {t.node} ({why})"


def corosync_member(_: NodeView, report: ClusterReport, t: Target) -> str | None:
    """Verified once the node answers with its own quorum view and the cluster counts it in."""
    result = report.result(t.node or "")
    own = result.corosync.quorum if result is not None and result.corosync is not None else None
    members = report.corosync.members if report.corosync is not None else ()
    if own is None or t.node not in members:
        return f"{t.node} is not a Corosync member yet"
    return None
