"""Incidents -> Docs: the root alert, thread follow-ups, the recovery and the resolved edit.

Titles, evidence and incident keys are the core's raw text, quoting the cluster (an agent's
exitreason, a node's SSH error): each is escaped here, where it becomes mrkdwn. The configured
`mention` is markup on purpose and goes in as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from bot.pacemaker.diff import IncidentDraft
from bot.pacemaker.health import Severity
from bot.pacemaker.merge import ClusterReport
from bot.render.doc import Button, Doc, Section, mrkdwn
from bot.render.status import OK_EMOJI, SEVERITY_EMOJI, finding_line, fix_code

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
    verdict = f"{who}{emoji} *{mrkdwn(cluster)}*: {mrkdwn(draft.title)}"
    sections = _evidence(draft)
    remedy = draft.remedy
    if remedy is not None:
        sections.append(Section("Suggested fix", (fix_code(cluster, remedy),)))
    buttons: tuple[Button, ...] = ()
    if remedy is not None and fix_button and incident_id is not None:
        buttons = (Button("Request fix", FIX_ACTION, str(incident_id), "primary"),)
    return Doc(verdict=verdict, fallback=_fallback(cluster, draft.title), sections=tuple(sections),
               buttons=buttons, context=(f"{draft.severity.label} · incident {mrkdwn(draft.key)}",))


def _evidence(draft: IncidentDraft) -> list[Section]:
    """Every event of a draft, when there is more than its title to say."""
    lines = tuple(mrkdwn(e) for e in draft.evidence)
    return [Section("Evidence", lines)] if len(lines) > 1 else []


def _fallback(cluster: str, text: str) -> str:
    return mrkdwn(f"{cluster}: {text}")


def followup_doc(cluster: str, draft: IncidentDraft, *, times: int = 1) -> Doc:
    """A reply in the incident's thread. `times`: how often its one-shot news (a failed fencing)
    has happened in the incident, this time included; a retry says so instead of paging again."""
    emoji = OK_EMOJI if draft.is_recovery else SEVERITY_EMOJI[draft.severity]
    again = f" · {times} times in this incident" if times > 1 else ""
    lines = tuple(mrkdwn(e) for e in draft.evidence)
    return Doc(verdict=f"{emoji} {mrkdwn(draft.title)}{again}",
               fallback=_fallback(cluster, draft.title + again),
               sections=(Section(None, lines),) if len(lines) > 1 else ())


def resolved_doc(cluster: str, title: str, severity: Severity, lasted: timedelta) -> Doc:
    """The root message, edited once every condition it opened has cleared."""
    text = f"{OK_EMOJI} *{mrkdwn(cluster)}*: ~{mrkdwn(title)}~ · resolved after {duration(lasted)}"
    return Doc(verdict=text, fallback=_fallback(cluster, f"resolved after {duration(lasted)}: {title}"),
               context=(f"was {severity.label}",))


def escalation_doc(cluster: str, draft: IncidentDraft, *, incident_key: str, incident_title: str,
                   was: Severity, mention: str | None = None) -> Doc:
    """A channel message for news that must not hide in a thread: an incident got worse (`was`
    its severity before), or a CRITICAL one-shot (a failed fencing) happened during it. It names
    the incident to follow, whose root message is edited to the new severity."""
    emoji = SEVERITY_EMOJI[draft.severity]
    who = f"{mention} " if mention and draft.severity is Severity.CRITICAL else ""
    which = f"incident `{mrkdwn(incident_key)}` ({mrkdwn(incident_title)})"
    worse = draft.severity > was
    where = f"{which} escalated to {draft.severity.label.upper()}" if worse else f"during {which}"
    verdict = f"{who}{emoji} *{mrkdwn(cluster)}*: {mrkdwn(draft.title)} · {where}; updates in its thread"
    sections = _evidence(draft)
    if draft.remedy is not None:
        sections.append(Section("Suggested fix", (fix_code(cluster, draft.remedy),)))
    return Doc(verdict=verdict, fallback=_fallback(cluster, draft.title), sections=tuple(sections),
               context=(f"{draft.severity.label} · incident {mrkdwn(incident_key)}",))


def recovery_doc(cluster: str, report: ClusterReport, lasted: timedelta) -> Doc:
    """An incident is over; the cluster is healthy only if the report says so. The notification
    (fallback) makes the same claim: a partial recovery must not pop up as "recovered"."""
    when = f"after {duration(lasted)}"
    return Doc(verdict=f"{OK_EMOJI} {_recovered(report, when)}",
               fallback=_fallback(cluster, _recovered(report, when, text=str)))


def _recovered(report: ClusterReport, when: str, text: Callable[[str], str] = mrkdwn) -> str:
    if report.healthy:
        return f"the cluster is healthy again {when}"
    return f"this part recovered {when}; still wrong: {still_wrong(report, text=text)}"


def still_wrong(report: ClusterReport, most: int = 2, text: Callable[[str], str] = mrkdwn) -> str:
    """The worst problems of an unhealthy report, briefly (mrkdwn, or `text` for plain words):
    the rest has its own alerts."""
    problems = sorted((f for f in report.findings if f.severity > Severity.INFO), key=lambda f: -f.severity)
    if not problems:
        return "no status from the cluster" if not report.has_view else "nothing serious"
    more = f" (and {len(problems) - most} more)" if len(problems) > most else ""
    return "; ".join(text(f.message) for f in problems[:most]) + more


def flap_subject(key: str) -> str:
    """What a flapping incident key is about, as the on-call says it: `node:node2` is node2."""
    kind, _, name = key.partition(":")
    return name or {"vips": "the VIP placement"}.get(kind, kind)


def flapping_doc(cluster: str, key: str, toggles: int, window_s: float) -> Doc:
    subject = flap_subject(key)
    text = (f"{SEVERITY_EMOJI[Severity.WARNING]} *{mrkdwn(cluster)}*: {mrkdwn(subject)} is flapping: "
            f"{toggles} changes in {int(window_s // 60)} min. Staying quiet about it until it is stable.")
    return Doc(verdict=text, fallback=_fallback(cluster, f"{subject} is flapping"))


def flap_over_doc(cluster: str, key: str, calm: timedelta, report: ClusterReport,
                  still: tuple[tuple[str, str, Severity], ...]) -> Doc:
    """The flapping incident's last word. `still`: the incidents (key, title, severity) of what
    the flap left broken, alerted on their own: the reply points at them."""
    stable = f"{mrkdwn(flap_subject(key))} has not changed for {duration(calm)}"
    if not still:
        return Doc(verdict=f"{OK_EMOJI} {stable}: {_recovered(report, 'now')}",
                   fallback=_fallback(cluster, f"{flap_subject(key)} is stable again"))
    worst = max(sev for _, _, sev in still)
    where = "; ".join(f"{mrkdwn(title)} (incident `{mrkdwn(inc)}`)" for inc, title, _ in still)
    return Doc(verdict=f"{SEVERITY_EMOJI[worst]} {stable}, but it is not fine: {where}. Alerted on its own.",
               fallback=_fallback(cluster, f"{flap_subject(key)} is stable again, not fine"))


def initial_doc(report: ClusterReport, *, mention: str | None = None, first_view: bool = False) -> Doc:
    """When clusterbot starts watching a cluster that is already unhealthy. `first_view`: the
    nodes answer now, after a start when none did: what "unhealthy" turned out to be."""
    sev = report.severity or Severity.WARNING
    who = f"{mention} " if mention and sev is Severity.CRITICAL else ""
    lines = tuple(finding_line(report.cluster, f) for f in report.findings if f.severity > Severity.INFO)
    what = ("answers now, and is unhealthy: no node answered when clusterbot started watching" if first_view
            else "was already unhealthy when clusterbot started watching")
    text = f"{who}{SEVERITY_EMOJI[sev]} *{mrkdwn(report.cluster)}* {what}"
    return Doc(verdict=text, fallback=_fallback(report.cluster, "unhealthy at start of watch"),
               sections=(Section("Problems and fixes", lines),))


def fix_doc(cluster: str, label: str, channel: str, message_ts: str | None) -> Doc:
    """The alert channel's one root for an approved fix at work (its request lives in another
    channel): what acts, where its request is; the fix's effects follow in this thread."""
    where = f"<#{mrkdwn(channel)}>" if message_ts is None else \
        f"its request in <#{mrkdwn(channel)}> (message {mrkdwn(message_ts)})"
    text = (f"{SEVERITY_EMOJI[Severity.INFO]} *{mrkdwn(cluster)}*: approved fix `{mrkdwn(label)}` is acting; "
            f"see {where}. "
            "What it changes follows in this thread; none of it is paged.")
    return Doc(verdict=text, fallback=_fallback(cluster, f"approved fix {label} is acting"))
