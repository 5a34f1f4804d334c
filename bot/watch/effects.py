"""What one poll does to the incidents and the outbox, as values.

`bot/watch/step.py` decides them; the watcher applies them in order, in one store transaction,
and needs no judgement of its own to do so. An incident opened by the same poll has no id yet:
it is named by a `New` ref (bot/watch/records.py), which the watcher maps to the store's id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.pacemaker.diff import IncidentDraft, WatchState
from bot.pacemaker.health import Severity
from bot.render.doc import Doc
from bot.watch.records import IncidentRecord, MessageKind, New, Ref


@dataclass(frozen=True, slots=True)
class IncidentView:
    """An incident as the lifecycle needs it: read from the store, or as the poll left it."""

    ref: Ref
    key: str
    open: bool
    severity: Severity
    title: str
    opened_at: datetime
    resolved_at: datetime | None
    record: IncidentRecord

    @property
    def host(self) -> Ref:
        """The incident whose thread this one is told in: a flap is told in the flapping incident's."""
        host = self.record.host
        return self.ref if host is None else host


@dataclass(frozen=True, slots=True)
class OpenIncident:
    ref: New  # the id the store gives it names it from then on
    key: str
    severity: Severity
    title: str
    channel: str
    at: datetime
    record: IncidentRecord


@dataclass(frozen=True, slots=True)
class UpdateIncident:
    """Set the given fields; None leaves a field as it is."""

    ref: Ref
    severity: Severity | None = None
    title: str | None = None
    record: IncidentRecord | None = None


@dataclass(frozen=True, slots=True)
class ReopenIncident:
    ref: Ref


@dataclass(frozen=True, slots=True)
class ResolveIncident:
    ref: Ref
    at: datetime


@dataclass(frozen=True, slots=True)
class RootStory:
    """An incident's root message, rendered once the incident has its id (its fix button names it)."""

    draft: IncidentDraft
    incident: Ref


@dataclass(frozen=True, slots=True)
class Post:
    """One message for the outbox. `incident`: whose thread (or root) it is; `thread`/`channel`:
    another thread (an approved fix's request); `broadcast`: a thread reply shown in the channel too."""

    kind: MessageKind
    doc: Doc | RootStory
    channel: str
    incident: Ref | None = None
    thread: str | None = None
    broadcast: bool = False


@dataclass(frozen=True, slots=True)
class SaveState:
    state: WatchState


@dataclass(frozen=True, slots=True)
class Counted:
    """An incident opened (with its severity) or resolved: a metric, counted once committed."""

    opened: Severity | None  # None: resolved


@dataclass(frozen=True, slots=True)
class Note:
    """A line for the log, not for the channel."""

    message: str
    warning: bool = False


Effect = (OpenIncident | UpdateIncident | ReopenIncident | ResolveIncident | Post | SaveState | Counted
          | Note)
