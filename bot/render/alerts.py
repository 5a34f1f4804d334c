"""Incidents -> Docs: the root alert, thread follow-ups, the recovery and the resolved edit."""

from __future__ import annotations

from datetime import timedelta

from bot.pacemaker.diff import IncidentDraft
from bot.pacemaker.health import Severity
from bot.pacemaker.merge import ClusterReport
from bot.render.doc import Button, Doc, Section
from bot.render.status import OK_EMOJI, SEVERITY_EMOJI, finding_line, remedy_command

FIX_ACTION = "clusterbot:request_fix"


def duration(delta: timedelta) -> str:
    """4m12s, 2h05m, 45s: short enough for a Slack line."""
    secs = max(int(delta.total_seconds()), 0)
    hours, rest = divmod(secs, 3600)
    mins, s = divmod(rest, 60)
    if hours:
        return f"{hours}h{mins:02d}m"
    return f"{mins}m{s:02d}s" if mins else f"{s}s"


def incident_doc(cluster: str, draft: IncidentDraft, *, incident_id: int | None = None,
                 mention: str | None = None, fix_button: bool = False) -> Doc:
    """The root message: emoji and one line, the evidence, the fix to request."""
    emoji = SEVERITY_EMOJI[draft.severity]
    who = f"{mention} " if mention and draft.severity is Severity.CRITICAL else ""
    verdict = f"{who}{emoji} *{cluster}*: {draft.title}"
    sections = [Section("Evidence", draft.evidence)] if len(draft.evidence) > 1 else []
    remedy = draft.remedy
    if remedy is not None:
        sections.append(Section("Suggested fix", (f"`{remedy_command(cluster, remedy)}`",)))
    buttons: tuple[Button, ...] = ()
    if remedy is not None and fix_button and incident_id is not None:
        buttons = (Button("Request fix", FIX_ACTION, str(incident_id), "primary"),)
    return Doc(verdict=verdict, fallback=f"{cluster}: {draft.title}", sections=tuple(sections),
               buttons=buttons, context=(f"{draft.severity.label} · incident {draft.key}",))


def followup_doc(cluster: str, draft: IncidentDraft, *, times: int = 1) -> Doc:
    """A reply in the incident's thread. `times`: how often its one-shot news (a failed fencing)
    has happened in the incident, this time included; a retry says so instead of paging again."""
    emoji = OK_EMOJI if draft.is_recovery else SEVERITY_EMOJI[draft.severity]
    again = f" · {times} times in this incident" if times > 1 else ""
    lines = draft.evidence if len(draft.evidence) > 1 else ()
    return Doc(verdict=f"{emoji} {draft.title}{again}", fallback=f"{cluster}: {draft.title}{again}",
               sections=(Section(None, lines),) if lines else ())


def resolved_doc(cluster: str, title: str, severity: Severity, lasted: timedelta) -> Doc:
    """The root message, edited once every condition it opened has cleared."""
    text = f"{OK_EMOJI} *{cluster}*: ~{title}~ · resolved after {duration(lasted)}"
    return Doc(verdict=text, fallback=f"{cluster}: resolved after {duration(lasted)}: {title}",
               context=(f"was {severity.label}",))


def escalation_doc(cluster: str, draft: IncidentDraft, *, incident_key: str, incident_title: str,
                   was: Severity, mention: str | None = None) -> Doc:
    """A channel message for news that must not hide in a thread: an incident got worse (`was`
    its severity before), or a CRITICAL one-shot (a failed fencing) happened during it. It names
    the incident to follow, whose root message is edited to the new severity."""
    emoji = SEVERITY_EMOJI[draft.severity]
    who = f"{mention} " if mention and draft.severity is Severity.CRITICAL else ""
    which = f"incident `{incident_key}` ({incident_title})"
    worse = draft.severity > was
    where = f"{which} escalated to {draft.severity.label.upper()}" if worse else f"during {which}"
    verdict = f"{who}{emoji} *{cluster}*: {draft.title} · {where}; updates in its thread"
    sections = [Section("Evidence", draft.evidence)] if len(draft.evidence) > 1 else []
    if draft.remedy is not None:
        sections.append(Section("Suggested fix", (f"`{remedy_command(cluster, draft.remedy)}`",)))
    return Doc(verdict=verdict, fallback=f"{cluster}: {draft.title}", sections=tuple(sections),
               context=(f"{draft.severity.label} · incident {incident_key}",))


def recovery_doc(cluster: str, report: ClusterReport, lasted: timedelta) -> Doc:
    """An incident is over; the cluster is healthy only if the report says so."""
    return Doc(verdict=f"{OK_EMOJI} {_recovered(report, f'after {duration(lasted)}')}",
               fallback=f"{cluster}: recovered after {duration(lasted)}")


def _recovered(report: ClusterReport, when: str) -> str:
    if report.healthy:
        return f"the cluster is healthy again {when}"
    return f"this part recovered {when}; still wrong: {still_wrong(report)}"


def still_wrong(report: ClusterReport, most: int = 2) -> str:
    """The worst problems of an unhealthy report, briefly: the rest has its own alerts."""
    problems = sorted((f for f in report.findings if f.severity > Severity.INFO), key=lambda f: -f.severity)
    if not problems:
        return "no status from the cluster" if not report.has_view else "nothing serious"
    more = f" (and {len(problems) - most} more)" if len(problems) > most else ""
    return "; ".join(f.message for f in problems[:most]) + more


def flapping_doc(cluster: str, key: str, toggles: int, window_s: float) -> Doc:
    text = (f"{SEVERITY_EMOJI[Severity.WARNING]} *{cluster}*: `{key}` is flapping: {toggles} changes "
            f"in {int(window_s // 60)} min. Staying quiet about it until it is stable.")
    return Doc(verdict=text, fallback=f"{cluster}: {key} is flapping")


def flap_over_doc(cluster: str, key: str, calm: timedelta, report: ClusterReport,
                  still: tuple[tuple[str, str, Severity], ...]) -> Doc:
    """The flapping incident's last word. `still`: the incidents (key, title, severity) of what
    the flap left broken, alerted on their own: the reply points at them."""
    stable = f"`{key}` has not changed for {duration(calm)}"
    if not still:
        return Doc(verdict=f"{OK_EMOJI} {stable}: {_recovered(report, 'now')}",
                   fallback=f"{cluster}: {key} is stable again")
    worst = max(sev for _, _, sev in still)
    where = "; ".join(f"{title} (incident `{inc}`)" for inc, title, _ in still)
    return Doc(verdict=f"{SEVERITY_EMOJI[worst]} {stable}, but it is not fine: {where}. Alerted on its own.",
               fallback=f"{cluster}: {key} is stable again, not fine")


def initial_doc(report: ClusterReport, *, mention: str | None = None) -> Doc:
    """When clusterbot starts watching a cluster that is already unhealthy."""
    sev = report.severity or Severity.WARNING
    who = f"{mention} " if mention and sev is Severity.CRITICAL else ""
    lines = tuple(finding_line(report.cluster, f) for f in report.findings if f.severity > Severity.INFO)
    text = (f"{who}{SEVERITY_EMOJI[sev]} *{report.cluster}* was already unhealthy when clusterbot "
            "started watching")
    return Doc(verdict=text, fallback=f"{report.cluster}: unhealthy at start of watch",
               sections=(Section("Problems and fixes", lines),))
