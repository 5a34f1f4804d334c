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


def followup_doc(cluster: str, draft: IncidentDraft) -> Doc:
    emoji = OK_EMOJI if draft.is_recovery else SEVERITY_EMOJI[draft.severity]
    lines = draft.evidence if len(draft.evidence) > 1 else ()
    return Doc(verdict=f"{emoji} {draft.title}", fallback=f"{cluster}: {draft.title}",
               sections=(Section(None, lines),) if lines else ())


def resolved_doc(cluster: str, title: str, severity: Severity, lasted: timedelta) -> Doc:
    """The root message, edited once every condition it opened has cleared."""
    text = f"{OK_EMOJI} *{cluster}*: ~{title}~ · resolved after {duration(lasted)}"
    return Doc(verdict=text, fallback=f"{cluster}: resolved after {duration(lasted)}: {title}",
               context=(f"was {severity.label}",))


def recovery_doc(cluster: str, report: ClusterReport | None, lasted: timedelta) -> Doc:
    facts = "the cluster is healthy again" if report is None or report.healthy else "this part recovered"
    return Doc(verdict=f"{OK_EMOJI} {facts} after {duration(lasted)}",
               fallback=f"{cluster}: recovered after {duration(lasted)}")


def flapping_doc(cluster: str, key: str, toggles: int, window_s: float) -> Doc:
    text = (f"{SEVERITY_EMOJI[Severity.WARNING]} *{cluster}*: `{key}` is flapping: {toggles} changes "
            f"in {int(window_s // 60)} min. Staying quiet about it until it is stable.")
    return Doc(verdict=text, fallback=f"{cluster}: {key} is flapping")


def initial_doc(report: ClusterReport) -> Doc:
    """When clusterbot starts watching a cluster that is already unhealthy."""
    sev = report.severity or Severity.WARNING
    lines = tuple(finding_line(report.cluster, f) for f in report.findings if f.severity > Severity.INFO)
    text = f"{SEVERITY_EMOJI[sev]} *{report.cluster}* was already unhealthy when clusterbot started watching"
    return Doc(verdict=text, fallback=f"{report.cluster}: unhealthy at start of watch",
               sections=(Section("Problems and fixes", lines),))
