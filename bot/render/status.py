"""ClusterReport -> Doc: verdict, VIP placement, nodes, clones, other resources, problems.

Lists are capped so a 32-node, 1000-resource cluster still fits one Slack message; what is
cut is summarised ("and 960 more resources, all started").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from bot.pacemaker.health import (
    Expectations,
    Finding,
    Remedy,
    Severity,
    eligible_nodes,
    everywhere_of,
    vips_of,
)
from bot.pacemaker.merge import ClusterReport, NodeResult
from bot.pacemaker.model import Instance, Node, NodeView, ResourceKind, Role
from bot.render.doc import Doc, Section

MAX_NODE_LINES = 24
MAX_VIP_LINES = 16
MAX_RESOURCE_LINES = 40
MAX_FINDING_LINES = 20

SEVERITY_EMOJI = {
    Severity.CRITICAL: ":red_circle:",
    Severity.WARNING: ":large_yellow_circle:",
    Severity.INFO: ":information_source:",
}
OK_EMOJI = ":large_green_circle:"
UNKNOWN_EMOJI = ":black_circle:"


def remedy_command(cluster: str, remedy: Remedy) -> str:
    """How a user asks for a remedy in chat: `/cluster cleanup prod-haproxy virtual_ip_2`."""
    return " ".join(("/cluster", remedy.action, cluster, *remedy.args))


def status_doc(report: ClusterReport, expect: Expectations = Expectations()) -> Doc:
    view = report.reference
    sections: list[Section] = []
    if view is not None:  # without any view, the findings name every node and why it failed
        sections += [_vip_section(view, expect), _node_section(report, view)]
        sections += [s for s in (_clone_section(view, expect),
                                 _other_section(view, expect)) if s]
    sections += [s for s in (_problem_section(report), _daemon_section(report)) if s]
    return Doc(
        verdict=verdict(report),
        fallback=_fallback(report),
        header=None,
        sections=tuple(sections),
        context=_context(report),
    )


def verdict(report: ClusterReport) -> str:
    """One line, emoji first: the answer to "is it OK?"."""
    name = f"*{report.cluster}*"
    view = report.reference
    if view is None:
        return f"{SEVERITY_EMOJI[Severity.CRITICAL]} {name}: no node could report status"
    facts = _facts(report, view)
    if report.healthy:
        return f"{OK_EMOJI} {name} is healthy · {facts}"
    sev = report.severity or Severity.INFO
    counts = Counter(f.severity for f in report.findings if f.severity > Severity.INFO)
    tally = ", ".join(f"{counts[s]} {s.label}{'s' if counts[s] > 1 else ''}"
                      for s in (Severity.CRITICAL, Severity.WARNING) if counts[s])
    return f"{SEVERITY_EMOJI[sev]} {name}: {tally} · {report.findings[0].message} · {facts}"


def _facts(report: ClusterReport, view: NodeView) -> str:
    quorum = {True: "quorum", False: "NO QUORUM", None: "quorum unknown"}[view.quorate]
    members = [n for n in view.nodes if n.type.value == "member"]
    online = sum(1 for n in members if n.online)
    return f"{quorum} · DC {view.dc or 'none'} · {online}/{len(members)} nodes online"


def _fallback(report: ClusterReport) -> str:
    plain = verdict(report).replace("*", "")
    return plain.split(" ", 1)[1] if plain.startswith(":") else plain


def _context(report: ClusterReport) -> tuple[str, ...]:
    answered = sum(1 for r in report.results if r.view is not None)
    parts = [f"{answered}/{len(report.results)} nodes answered" if report.collected
             else "from saved crm_mon output"]
    view = report.reference
    if view is not None and report.collected:
        parts.insert(0, f"reference: {report.reference_node}'s view")
    if view is not None:
        version = (view.summary.dc_version or "").split("-")[0]
        if version:
            parts.append(f"Pacemaker {version}")
        if view.summary.last_update:
            parts.append(f"updated {view.summary.last_update:%Y-%m-%d %H:%M:%S} UTC")
    return (" · ".join(parts),)


# ---------------------------------------------------------------- sections


def _capped(lines: Sequence[str], cap: int, more: str) -> tuple[tuple[str, ...], str | None]:
    if len(lines) <= cap:
        return tuple(lines), None
    return tuple(lines[:cap]), more.format(n=len(lines) - cap)


def _vip_section(view: NodeView, expect: Expectations) -> Section:
    vips = vips_of(view, expect)
    lines = [_vip_line(view, v) for v in vips] or ["no virtual IPs configured or found"]
    shown, more = _capped(lines, MAX_VIP_LINES, "…and {n} more virtual IPs")
    return Section("Virtual IPs", shown, more)


def _vip_line(view: NodeView, vip: str) -> str:
    nodes = view.running_on(vip)
    if view.resource(vip) is None:
        return f":grey_question: `{vip}` not configured"
    if not nodes:
        return f":red_circle: `{vip}` → *STOPPED*"
    mark = ":warning:" if len(nodes) > 1 else ":white_check_mark:"
    return f"{mark} `{vip}` → {', '.join(nodes)}"


def _node_section(report: ClusterReport, view: NodeView) -> Section:
    known = {n.name for n in view.nodes}
    lines = [_node_line(n, report.result(n.name)) for n in view.nodes]
    if report.collected:
        lines += [f":grey_question: {r.node}: configured for clusterbot but not in the cluster"
                  for r in report.results if r.node not in known]
    # Nodes needing attention first, so the cap never hides a problem.
    lines.sort(key=lambda line: line.startswith(":white_check_mark:"))
    shown, more = _capped(lines, MAX_NODE_LINES, "…and {n} more nodes, all online")
    return Section("Nodes", shown, more)


def _node_line(node: Node, result: NodeResult | None) -> str:
    tags = [t for t, on in (("DC", node.is_dc), ("standby", node.standby),
                            ("maintenance", node.maintenance), ("UNCLEAN", node.unclean),
                            ("pending", node.pending), (f"health {node.health}",
                            node.health in ("yellow", "red"))) if on]
    if node.type.value != "member":
        tags.append(node.type.value)
    ssh = ""
    if result is not None and result.view is None:
        ssh = f" · ssh: {result.error or 'no answer'}"
    elif result is not None and result.view is not None and not result.view.connected:
        ssh = " · Pacemaker not running"
    if not node.online:
        return f":x: {node.name} *OFFLINE*{_tags(tags)}{ssh}"
    mark = ":white_check_mark:" if node.healthy and not ssh else ":warning:"
    return f"{mark} {node.name} online{_tags(tags)}{ssh}"


def _tags(tags: list[str]) -> str:
    return f" ({', '.join(tags)})" if tags else ""


def _clone_section(view: NodeView, expect: Expectations) -> Section | None:
    clones = [r for r in view.resources if r.kind is ResourceKind.CLONE]
    if not clones:
        return None
    must = set(everywhere_of(view, expect))
    healthy = eligible_nodes(view)
    lines = []
    for clone in clones:
        running = view.running_on(clone.id)
        missing = [n for n in healthy if n not in running] if clone.id in must else []
        mark = ":warning:" if missing or clone.failed else ":white_check_mark:"
        if not running:
            mark = ":red_circle:"
        gap = f" · missing on {', '.join(missing)}" if missing else ""
        lines.append(f"{mark} `{clone.id}` on {len(running)}/{len(healthy)} eligible nodes: "
                     f"{' '.join(running) or 'none'}{gap}")
    shown, more = _capped(lines, MAX_RESOURCE_LINES, "…and {n} more clones")
    return Section("Clones", shown, more)


def _other_section(view: NodeView, expect: Expectations) -> Section | None:
    shown_ids = set(vips_of(view, expect)) | {
        r.id for r in view.resources if r.kind is ResourceKind.CLONE}
    rest = [i for i in view.instances if i.top not in shown_ids]
    if not rest:
        return None
    bad = [i for i in rest if not _fine(i)]
    good = [i for i in rest if _fine(i)]
    lines = [_instance_line(i) for i in bad + good]
    if len(lines) <= MAX_RESOURCE_LINES:
        return Section("Other resources", tuple(lines))
    cut = len(lines) - MAX_RESOURCE_LINES
    cut_bad = max(len(bad) - MAX_RESOURCE_LINES, 0)
    tail = "all started" if cut_bad == 0 else f"{cut_bad} not started"
    return Section("Other resources", tuple(lines[:MAX_RESOURCE_LINES]),
                   f"…and {cut} more resources, {tail}")


def _fine(inst: Instance) -> bool:
    return inst.active and not inst.failed and inst.role in (Role.STARTED, Role.PROMOTED,
                                                             Role.UNPROMOTED)


def _instance_line(inst: Instance) -> str:
    name = inst.id if not inst.parents else f"{inst.top}/{inst.id}"
    where = ", ".join(inst.nodes) or "nowhere"
    mark = ":white_check_mark:" if _fine(inst) else ":red_circle:"
    failed = " *FAILED*" if inst.failed else ""
    return f"{mark} `{name}` {inst.role.value}{failed} on {where}"


def _problem_section(report: ClusterReport) -> Section | None:
    if not report.findings:
        return None
    lines = [finding_line(report.cluster, f) for f in report.findings]
    rest = Counter(f.severity.label for f in report.findings[MAX_FINDING_LINES:])
    detail = ", ".join(f"{n} {label}" for label, n in rest.items())
    shown, more = _capped(lines, MAX_FINDING_LINES, "…and {n} more findings (" + detail + ")")
    return Section("Problems and fixes", shown, more)


def finding_line(cluster: str, finding: Finding) -> str:
    fix = f" → `{remedy_command(cluster, finding.remedy)}`" if finding.remedy else ""
    return f"{SEVERITY_EMOJI[finding.severity]} {finding.message}{fix}"


def _daemon_section(report: ClusterReport) -> Section | None:
    per_unit: dict[str, list[tuple[str, str]]] = {}
    for r in report.results:
        if r.daemons is not None:
            for unit, state in r.daemons.states:
                per_unit.setdefault(unit, []).append((r.node, state))
    if not per_unit:
        return None
    return Section("Daemons", tuple(_daemon_line(u, s) for u, s in per_unit.items()))


def _daemon_line(unit: str, states: Iterable[tuple[str, str]]) -> str:
    states = list(states)
    bad = [f"{state} on {node}" for node, state in states if state != "active"]
    if not bad:
        return f":white_check_mark: {unit}: active on {len(states)}/{len(states)}"
    return f":warning: {unit}: {'; '.join(bad)}"



def overview_doc(reports: Sequence[ClusterReport]) -> Doc:
    """Every cluster on one line; the unhealthy ones' problems below."""
    lines = tuple(verdict(r) for r in reports)
    problems = [f"*{r.cluster}* · {finding_line(r.cluster, f)}"
                for r in reports if not r.healthy for f in r.findings if f.severity > Severity.INFO]
    shown, more = _capped(problems, MAX_FINDING_LINES, "…and {n} more problems")
    sick = sum(1 for r in reports if not r.healthy)
    head = (f"{OK_EMOJI} all {len(reports)} clusters healthy" if not sick
            else f"{SEVERITY_EMOJI[max(r.severity or Severity.INFO for r in reports)]} "
                 f"{sick} of {len(reports)} clusters need attention")
    sections = [Section("Clusters", lines)]
    if shown:
        sections.append(Section("Problems and fixes", shown, more))
    return Doc(verdict=head, fallback=head.split(" ", 1)[1], sections=tuple(sections))
