"""ClusterReport -> Doc: verdict, VIP placement, nodes, Corosync, clones, other resources, problems.

Lists are capped so a 32-node, 1000-resource cluster still fits one Slack message; what is
cut is summarised ("and 960 more resources, all started").

A corosync-only cluster (Proxmox VE, ...) has no Pacemaker view: its status is the Corosync
verdict, members, links, problems and daemons.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

from bot.corosync.model import Member, QuorumStatus
from bot.corosync.summary import CorosyncSummary, LinkDown
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
from bot.render.doc import Doc, Section, mrkdwn

MAX_NODE_LINES = 24
MAX_VIP_LINES = 16
MAX_RESOURCE_LINES = 40
MAX_FINDING_LINES = 20
MAX_NAMES = 8  # node names listed in one line before "and N more"
_DIGITS = re.compile(r"(\d+)")

SEVERITY_EMOJI = {
    Severity.CRITICAL: ":red_circle:",
    Severity.WARNING: ":large_yellow_circle:",
    Severity.INFO: ":information_source:",
}
OK_EMOJI = ":large_green_circle:"
UNKNOWN_EMOJI = ":black_circle:"


def remedy_command(cluster: str, remedy: Remedy) -> str:
    """How a user asks for a remedy in chat: `/cluster cleanup prod-haproxy virtual_ip_2`.
    Raw text: `fix_code()` is its mrkdwn form."""
    return " ".join(("/cluster", remedy.action, cluster, *remedy.args))


def fix_code(cluster: str, remedy: Remedy) -> str:
    """The remedy command as a code span; its arguments are cluster names, escaped like any."""
    return f"`{mrkdwn(remedy_command(cluster, remedy))}`"


def _names(items: Iterable[str]) -> str:
    """`a, b, c` of names from the cluster, escaped."""
    return ", ".join(mrkdwn(n) for n in items)


def status_doc(report: ClusterReport, expect: Expectations = Expectations()) -> Doc:
    view = report.reference
    sections: list[Section] = []
    if report.kind == "corosync":
        sections += _corosync_main_sections(report)
    elif view is not None:
        sections += [_vip_section(view, expect), _node_section(report, view)]
        sections += [s for s in (corosync_section(report), _clone_section(view, expect),
                                 _other_section(view, expect)) if s]
    else:  # no Pacemaker view: the findings name every node and why; Corosync may still be up
        sections += [s for s in (corosync_section(report),) if s]
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
    name = f"*{mrkdwn(report.cluster)}*"
    view = report.reference
    if report.kind == "corosync":
        if report.corosync is None or report.corosync.quorum is None:
            return f"{SEVERITY_EMOJI[Severity.CRITICAL]} {name}: no node could report Corosync status"
        facts = _corosync_facts(report, report.corosync, report.corosync.quorum)
    elif view is None:
        if not any(r.answered for r in report.results) or not report.findings:
            return f"{SEVERITY_EMOJI[Severity.CRITICAL]} {name}: no node could report status"
        facts = _no_view_facts(report)  # Pacemaker stopped where nodes answered: say so
    else:
        facts = _facts(report, view)
    if report.healthy:
        return f"{OK_EMOJI} {name} is healthy · {facts}"
    sev = report.severity or Severity.INFO
    counts = Counter(f.severity for f in report.findings if f.severity > Severity.INFO)
    tally = ", ".join(f"{counts[s]} {s.label}{'s' if counts[s] > 1 else ''}"
                      for s in (Severity.CRITICAL, Severity.WARNING) if counts[s])
    return f"{SEVERITY_EMOJI[sev]} {name}: {tally} · {mrkdwn(report.findings[0].message)} · {facts}"


def _facts(report: ClusterReport, view: NodeView) -> str:
    quorum = {True: "quorum", False: "NO QUORUM", None: "quorum unknown"}[view.quorate]
    members = [n for n in view.nodes if n.type.value == "member"]
    online = sum(1 for n in members if n.online)
    return f"{quorum} · DC {mrkdwn(view.dc or 'none')} · {online}/{len(members)} nodes online"


def _no_view_facts(report: ClusterReport) -> str:
    summary = report.corosync
    if summary is None or summary.quorum is None:
        return "no Pacemaker view"
    return _corosync_facts(report, summary, summary.quorum)


def _fallback(report: ClusterReport) -> str:
    plain = verdict(report).replace("*", "")
    return plain.split(" ", 1)[1] if plain.startswith(":") else plain


def _corosync_facts(report: ClusterReport, summary: CorosyncSummary, q: QuorumStatus) -> str:
    quorum = "quorate" if q.quorate else "NO QUORUM"
    known = len({*summary.members, *(r.node for r in report.results)})
    vq = q.votequorum
    votes = f" · {vq.total_votes}/{vq.expected_votes} votes" if vq else ""
    return f"Corosync {quorum} · {len(q.members)}/{known} members{votes}"


def _context(report: ClusterReport) -> tuple[str, ...]:
    answered = sum(1 for r in report.results if r.answered)
    parts = [f"{answered}/{len(report.results)} nodes answered" if report.collected
             else "from saved crm_mon output"]
    if report.kind == "corosync" and report.corosync is not None and report.corosync.reference_node:
        parts.insert(0, f"reference: {mrkdwn(report.corosync.reference_node)}'s view")
        if report.corosync.transport:
            parts.append(f"Corosync {mrkdwn(report.corosync.transport)}")
    view = report.reference
    if view is not None and report.collected:
        parts.insert(0, f"reference: {mrkdwn(report.reference_node or '')}'s view")
    if view is not None:
        version = (view.summary.dc_version or "").split("-")[0]
        if version:
            parts.append(f"Pacemaker {mrkdwn(version)}")
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
    code = f"`{mrkdwn(vip)}`"
    if view.resource(vip) is None:
        return f":grey_question: {code} not configured"
    if not nodes:
        return f":red_circle: {code} → *STOPPED*"
    mark = ":warning:" if len(nodes) > 1 else ":white_check_mark:"
    return f"{mark} {code} → {_names(nodes)}"


def _node_section(report: ClusterReport, view: NodeView) -> Section:
    known = {n.name for n in view.nodes}
    lines = [_node_line(n, report.result(n.name)) for n in view.nodes]
    if report.collected:
        lines += [f":grey_question: {mrkdwn(r.node)}: configured for clusterbot but not in the cluster"
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
        ssh = f" · ssh: {mrkdwn(result.error or 'no answer')}"
    elif result is not None and result.view is not None and not result.view.connected:
        ssh = " · Pacemaker not running"
    elif result is not None and result.view is not None and not node.online:
        ssh = " · yet it answers and runs Pacemaker: cut off from the others"
    if not node.online:
        return f":x: {mrkdwn(node.name)} *OFFLINE*{_tags(tags)}{ssh}"
    mark = ":white_check_mark:" if node.healthy and not ssh else ":warning:"
    return f"{mark} {mrkdwn(node.name)} online{_tags(tags)}{ssh}"


def _tags(tags: list[str]) -> str:
    return f" ({_names(tags)})" if tags else ""  # the node's health attribute is the cluster's text


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
        gap = f" · missing on {_names(missing)}" if missing else ""
        lines.append(f"{mark} `{mrkdwn(clone.id)}` on {len(running)}/{len(healthy)} eligible nodes: "
                     f"{' '.join(map(mrkdwn, running)) or 'none'}{gap}")
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
    where = _names(inst.nodes) or "nowhere"
    mark = ":white_check_mark:" if _fine(inst) else ":red_circle:"
    failed = " *FAILED*" if inst.failed else ""
    return f"{mark} `{mrkdwn(name)}` {inst.role.value}{failed} on {where}"


def _problem_section(report: ClusterReport) -> Section | None:
    if not report.findings:
        return None
    lines = [finding_line(report.cluster, f) for f in report.findings]
    rest = Counter(f.severity.label for f in report.findings[MAX_FINDING_LINES:])
    detail = ", ".join(f"{n} {label}" for label, n in rest.items())
    shown, more = _capped(lines, MAX_FINDING_LINES, "…and {n} more findings (" + detail + ")")
    return Section("Problems and fixes", shown, more)


def finding_line(cluster: str, finding: Finding) -> str:
    """A finding's message quotes the cluster (an agent's exitreason, SSH stderr): escaped."""
    fix = f" → {fix_code(cluster, finding.remedy)}" if finding.remedy else ""
    return f"{SEVERITY_EMOJI[finding.severity]} {mrkdwn(finding.message)}{fix}"


def _daemon_section(report: ClusterReport) -> Section | None:
    per_unit: dict[str, list[tuple[str, str]]] = {}
    for r in report.results:
        if r.daemons is not None:
            for unit, state in r.daemons.states:
                per_unit.setdefault(unit, []).append((r.node, state))
    if not per_unit:
        return None
    return Section("Daemons" + _details_age(report), tuple(_daemon_line(u, s) for u, s in per_unit.items()))


def _details_age(report: ClusterReport) -> str:
    """A status reuses unchanged nodes' daemon and Corosync answers for a few seconds
    (`status_detail_max_age_s`): say how old the oldest one is, so nobody mistakes it for now."""
    if report.collected_at is None:
        return ""
    at = report.collected_at
    oldest = max(((at - r.details_at).total_seconds() for r in report.results if r.details_at), default=0.0)
    return f" (as of {oldest:.0f}s ago)" if oldest >= 1 else ""


def _daemon_line(unit: str, states: Iterable[tuple[str, str]]) -> str:
    states = list(states)
    bad = [f"{mrkdwn(state)} on {mrkdwn(node)}" for node, state in states if state != "active"]
    if not bad:
        return f":white_check_mark: {mrkdwn(unit)}: active on {len(states)}/{len(states)}"
    return f":warning: {mrkdwn(unit)}: {'; '.join(bad)}"


# ---------------------------------------------------------------- Corosync


def corosync_section(report: ClusterReport) -> Section | None:
    """Compact, for a Pacemaker cluster: one line when all is fine, else what is not."""
    summary = report.corosync
    if summary is None:
        return None
    q = summary.quorum
    if q is None:
        lines = [":grey_question: no node gave a Corosync quorum view", *_tool_errors(report)]
        return Section("Corosync", _cap(lines))
    lines = [_quorum_line(summary, q)]
    trouble = [*_tool_errors(report), *_view_differences(report, summary, q), *_link_lines(summary)]
    title = "Corosync" + _details_age(report)
    if not trouble and _votes_ok(q):
        return Section(title, (lines[0] + _links_ok(summary),))
    return Section(title, _cap(lines + trouble))


def _corosync_main_sections(report: ClusterReport) -> list[Section]:
    """A corosync-only cluster: members (each with its own view), then links."""
    summary = report.corosync
    if summary is None or summary.quorum is None:
        return []  # the problems section names every node and why it gave no view
    q = summary.quorum
    members = Section("Members", _cap([_quorum_line(summary, q), *_member_lines(report, summary, q)]))
    links = _link_lines(summary) or ([f":white_check_mark:{_links_ok(summary).removeprefix(' ·')}"]
                                     if summary.link_ids else [])
    return [members, *([Section("Links", _cap(links))] if links else [])]


def _cap(lines: Sequence[str]) -> tuple[str, ...]:
    shown, more = _capped(lines, MAX_NODE_LINES, "")
    return (*shown, f"…and {len(lines) - len(shown)} more") if more is not None else shown


def _votes_ok(q: QuorumStatus) -> bool:
    vq = q.votequorum
    return q.quorate and (vq is None or vq.total_votes >= vq.expected_votes)


def _quorum_line(summary: CorosyncSummary, q: QuorumStatus) -> str:
    mark = OK_EMOJI if _votes_ok(q) else (SEVERITY_EMOJI[Severity.WARNING] if q.quorate
                                          else SEVERITY_EMOJI[Severity.CRITICAL])
    state = "quorate" if q.quorate else "*NOT quorate*"
    vq = q.votequorum
    votes = f" · {vq.total_votes}/{vq.expected_votes} votes ({vq.quorum} needed)" if vq else ""
    if vq is not None and vq.flags:
        extra = [mrkdwn(f) for f in vq.flags if f != "Quorate"]
        votes += f" · {' '.join(extra)}" if extra else ""
    return f"{mark} {state}{votes} · members: {_some(summary.members)}"


def _some(items: Iterable[str], cap: int = MAX_NAMES) -> str:
    """`a, b, c` in natural order (nodeid 2 before nodeid 10), at most `cap` of them, escaped."""
    ordered = sorted(items, key=lambda n: [int(t) if t.isdigit() else t for t in _DIGITS.split(n)])
    more = f" and {len(ordered) - cap} more" if len(ordered) > cap else ""
    return _names(ordered[:cap]) + more


def _links_ok(summary: CorosyncSummary) -> str:
    if not summary.link_ids:
        return ""
    n = len(summary.link_ids)
    return f" · {'all ' if n > 1 else ''}{n} link{'s' if n > 1 else ''} connected"


def _tool_errors(report: ClusterReport) -> list[str]:
    lines = []
    for r in report.results:
        if not r.answered or r.corosync_error is None:
            continue  # no SSH answer at all: the node's own line or finding says so
        mark = ":x:" if r.corosync_down else ":grey_question:"
        lines.append(f"{mark} {mrkdwn(r.node)}: {mrkdwn(r.corosync_error)}")
    return lines


def _own_view(r: NodeResult | None) -> QuorumStatus | None:
    return r.corosync.quorum if r is not None and r.corosync is not None else None


def _view_differences(report: ClusterReport, summary: CorosyncSummary, ref: QuorumStatus) -> list[str]:
    """Nodes whose own Corosync view is not the reference's: the runbook's out-of-sync node."""
    lines = []
    for r in report.results:
        q = _own_view(r)
        if q is not None and (q.member_ids != ref.member_ids or q.quorate != ref.quorate):
            lines.append(f"{SEVERITY_EMOJI[Severity.WARNING]} {mrkdwn(r.node)} sees {_view_text(summary, q)}")
    return lines


def _view_text(summary: CorosyncSummary, q: QuorumStatus) -> str:
    members = _some(summary.name(m.nodeid) for m in q.members)
    return f"[{members}], {'quorate' if q.quorate else 'NOT quorate'}"


def _member_lines(report: ClusterReport, summary: CorosyncSummary, ref: QuorumStatus) -> list[str]:
    members = {summary.name(m.nodeid): m for m in ref.members}
    names = [*(r.node for r in report.results), *(n for n in members if report.result(n) is None)]
    lines = [_member_line(n, members.get(n), report.result(n), summary, ref) for n in names]
    if ref.qdevice is not None:
        mark = ":white_check_mark:" if ref.qdevice.votes else ":warning:"
        lines.append(f"{mark} quorum device {mrkdwn(ref.qdevice.name)} · {ref.qdevice.votes} vote(s)")
    # Members needing attention first, so the cap never hides a problem.
    return sorted(lines, key=lambda line: line.startswith(":white_check_mark:"))


def _member_line(name: str, m: Member | None, result: NodeResult | None, summary: CorosyncSummary,
                 ref: QuorumStatus) -> str:
    """One configured node (or unconfigured member): in the membership or not, and its own view."""
    head = f"{mrkdwn(name)} · {_member_text(m)}"
    bad = ":warning:" if m else ":x:"
    if result is None:
        return f":grey_question: {head} · not configured for clusterbot"
    if not result.answered:
        return f"{bad} {head} · ssh: {mrkdwn(result.error or 'no answer')}"
    own = _own_view(result)
    if own is None:
        return f"{bad} {head} · {mrkdwn(result.corosync_error or 'no quorum view')}"
    if own.member_ids != ref.member_ids or own.quorate != ref.quorate:
        return f"{bad} {head} · own view: {_view_text(summary, own)}"
    if m is None:  # agrees with the reference yet is not in it: its own id is not listed
        return f"{bad} {head}"
    # The `(local)` row of its own answer: this is really that node, under that id.
    local = " (local)" if own.local is not None and own.local.nodeid == m.nodeid else ""
    return f":white_check_mark: {head}{local}"


def _member_text(m: Member | None) -> str:
    if m is None:
        return "*not a member*"
    votes = "" if m.votes is None else f" · {m.votes} vote{'' if m.votes == 1 else 's'}"
    return f"nodeid {m.nodeid}{votes}"


def _link_lines(summary: CorosyncSummary) -> list[str]:
    """Links with a disconnected pair: lost redundancy (both ends members) warns; a link to a
    node that left the membership is only its consequence, named by that node."""
    members = set(summary.members)
    lines = []
    for link in summary.link_ids:
        downs = [lk for lk in summary.links_down if lk.link == link]
        lost = [lk for lk in downs if lk.members]
        gone = sorted({end for lk in downs if not lk.members for end in (lk.a, lk.b)
                       if end is not None and end not in members})
        if lost:
            lines.append(f"{SEVERITY_EMOJI[Severity.WARNING]} {_lost_text(link, lost)}: redundancy lost")
        if gone:
            lines.append(f":black_circle: link {link} to {_some(gone)}: disconnected (not a member)")
    return lines


def _lost_text(link: int, lost: list[LinkDown]) -> str:
    rings = [lk.a for lk in lost if lk.b is None]
    pairs = [f"{lk.a}↔{lk.b}" for lk in lost if lk.b is not None]
    return "; ".join([*([f"ring {link} on {_some(rings)} FAULTY"] if rings else []),
                      *([f"link {link} {_some(pairs)} down"] if pairs else [])])


def overview_doc(reports: Sequence[ClusterReport]) -> Doc:
    """Every cluster on one line; the unhealthy ones' problems below."""
    lines = tuple(verdict(r) for r in reports)
    problems = [f"*{mrkdwn(r.cluster)}* · {finding_line(r.cluster, f)}"
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
