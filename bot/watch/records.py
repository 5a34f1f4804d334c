"""Typed records of what the watcher stores: an incident's payload, and how an incident is named.

The store keeps an incident's payload as JSON; this is its one schema, read tolerantly (a
damaged or older field reads as empty, never raises) and written whole, so no module spells the
keys out by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from bot.pacemaker.diff import IncidentDraft
from bot.watch.events import Event


class MessageKind(StrEnum):
    ROOT = "root"  # a top-level message (an incident's root when it has an incident)
    REPLY = "reply"  # in the incident's (or the given) thread
    EDIT = "edit"  # the incident's root, rewritten


@dataclass(frozen=True, slots=True)
class New:
    """An incident opened by the poll being decided: it has no id until the watcher writes it.
    `n` counts the poll's new incidents from 1; the watcher maps each to the id the store gives."""

    n: int


# An incident as the lifecycle names it: a stored incident's id, or one the same poll opens.
Ref = int | New


@dataclass(frozen=True, slots=True)
class IncidentRecord:
    """An incident's payload. `open`: the conditions it holds (it ends when none is left);
    `draft`: its root's story, to re-render on escalation; `shots`: one-shot series counts (a
    fence failing); a flap's `silenced` conditions and the `latest` change of each; `host`: the
    incident a flap is told in; `request`: the approved fix an alert-channel root stands for."""

    raw: Mapping[str, object]

    @classmethod
    def new(cls, *, holds: tuple[str, ...] | list[str] = (), draft: IncidentDraft | None = None,
            silenced: tuple[str, ...] | list[str] | None = None, host: Ref | None = None,
            request: str | None = None) -> IncidentRecord:
        raw: dict[str, object] = {"open": list(holds)}
        if draft is not None:
            raw.update(remedy=_remedy(draft), draft=draft.to_json(), shots=_counted({}, draft))
        if silenced is not None:
            raw.update(silenced=sorted(silenced), latest={})
        if host is not None:
            raw["host"] = host
        if request is not None:
            raw["request"] = request
        return cls(raw)

    @property
    def payload(self) -> dict[str, object]:
        return dict(self.raw)

    @property
    def open(self) -> list[str]:
        return self._strings("open")

    @property
    def silenced(self) -> list[str]:
        return self._strings("silenced")

    @property
    def shots(self) -> dict[str, int]:
        return {k: v for k, v in self._mapping("shots").items() if isinstance(v, int)}

    @property
    def host(self) -> Ref | None:
        """A stored incident's id; a `New` one only until the watcher wrote the poll."""
        host = self.raw.get("host")
        return host if isinstance(host, int | New) and not isinstance(host, bool) else None

    @property
    def before(self) -> Mapping[str, Any] | None:
        """The cluster before a flap, as an older clusterbot kept it (instead of `latest`)."""
        raw = self.raw.get("before")
        return raw if isinstance(raw, dict) else None

    def draft(self) -> IncidentDraft | None:
        """The root's draft; None when there is none (an older clusterbot) or it is unreadable."""
        raw = self.raw.get("draft")
        if not isinstance(raw, dict):
            return None
        try:
            return IncidentDraft.from_json(raw)
        except ValueError:
            return None

    def latest(self) -> dict[str, Event]:
        """A flap's latest change of each condition it silenced; unreadable ones are left out."""
        latest: dict[str, Event] = {}
        for key, raw in self._mapping("latest").items():
            try:
                latest[key] = Event.from_json(raw)
            except (ValueError, TypeError):
                continue
        return latest

    @property
    def reopened_at(self) -> datetime | None:
        """When it was last reopened (None: never, or unreadable): its latest outage began then.
        A time without its zone is unreadable too: it could not be compared with the clock's."""
        raw = self.raw.get("reopened_at")
        try:
            at = datetime.fromisoformat(raw) if isinstance(raw, str) else None
        except ValueError:
            return None
        return at if at is not None and at.tzinfo is not None else None

    def with_reopened_at(self, at: datetime) -> IncidentRecord:
        return IncidentRecord({**self.raw, "reopened_at": at.isoformat()})

    @property
    def settling(self) -> bool:
        """It ended while the cluster was still not fine (a VIP not yet home, a clone instance
        not yet started): its thread hears when the whole cluster is healthy again."""
        return self.raw.get("settling") is True

    def with_settling(self, settling: bool) -> IncidentRecord:
        return IncidentRecord({**self.raw, "settling": settling})

    def with_open(self, conditions: list[str]) -> IncidentRecord:
        return IncidentRecord({**self.raw, "open": list(conditions)})

    def with_silenced(self, conditions: set[str]) -> IncidentRecord:
        return IncidentRecord({**self.raw, "silenced": sorted(conditions)})

    def with_latest(self, changes: Mapping[str, Event]) -> IncidentRecord:
        return IncidentRecord({**self.raw, "latest": {**self._mapping("latest"),
                                                      **{k: e.to_json() for k, e in changes.items()}}})

    def with_news(self, draft: IncidentDraft) -> IncidentRecord:
        """More news about the incident: the conditions it raises and its one-shots counted in."""
        opened = sorted(set(self.open) | set(draft.opens))
        return IncidentRecord({**self.raw, "open": opened, "shots": _counted(self.shots, draft)})

    def with_draft(self, draft: IncidentDraft) -> IncidentRecord:
        return IncidentRecord({**self.raw, "draft": draft.to_json(), "remedy": _remedy(draft)})

    def _strings(self, name: str) -> list[str]:
        value = self.raw.get(name, [])
        return [str(v) for v in value] if isinstance(value, list) else []

    def _mapping(self, name: str) -> dict[str, Any]:
        value = self.raw.get(name, {})
        return {str(k): v for k, v in value.items()} if isinstance(value, dict) else {}


def _counted(shots: Mapping[str, int], draft: IncidentDraft) -> dict[str, int]:
    """`shots` with the draft's one-shot events counted in."""
    out = dict(shots)
    for e in draft.events:
        if e.one_shot:
            out[e.series] = out.get(e.series, 0) + 1
    return out


def _remedy(draft: IncidentDraft) -> str | None:
    return str(draft.remedy) if draft.remedy else None
