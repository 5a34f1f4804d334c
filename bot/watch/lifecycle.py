"""Decisions of the incident lifecycle, pure: records, toggles and time in, typed effects out.

Following up an open incident: how loud the news is, and whether its root is edited. Flapping: a
key toggling more than `limit` times in a window is told once as a flapping incident and then stays
quiet until it has not toggled for a whole window; these functions say when to be quiet, what to
open or widen, and which flaps calmed. The poll's step (bot/watch/step.py) looks up the incidents
they name and turns the answers into the poll's effects.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import timedelta

from bot.pacemaker.diff import Flapping, IncidentDraft
from bot.pacemaker.health import Severity
from bot.watch.records import IncidentRecord, Ref

FLAPPING = "flapping:"  # key prefix of the incident standing for a flapping key


@dataclass(frozen=True, slots=True)
class FlapClock:
    """The toggles counted so far, and the monotonic time by which the first open flapping
    incident may have calmed (None: none open, so no poll needs to look)."""

    flaps: Flapping
    due: float | None = None

    def watch(self, at: float) -> FlapClock:
        """Look again at `at` at the latest."""
        return FlapClock(self.flaps, at if self.due is None else min(self.due, at))

    def calm_at(self, incident_key: str, now: float) -> float:
        """When the flapping incident `incident_key` will have been calm for a whole window."""
        last = self.flaps.stable_since(incident_key.removeprefix(FLAPPING))
        return now if last is None else last + self.flaps.window


@dataclass(frozen=True, slots=True)
class OpenFlap:
    """Open the flapping incident of `key`, silencing `silenced`; `count` toggles in `window` s."""

    key: str
    silenced: tuple[str, ...]
    count: int
    window: float


@dataclass(frozen=True, slots=True)
class Silence:
    """Widen the open flapping incident's silenced conditions to `silenced`."""

    silenced: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class EndFlap:
    """End flapping incident `incident`: calm for `calm`."""

    incident: Ref
    calm: timedelta


@dataclass(frozen=True, slots=True)
class Toggle:
    """What one toggling draft does: the new clock, whether it stays quiet, and what to write."""

    clock: FlapClock
    quiet: bool
    effect: OpenFlap | Silence | None = None


def toggle(clock: FlapClock, draft: IncidentDraft, now: float,
           silenced_so_far: Iterable[str] | None) -> Toggle:
    """Count the draft's toggle. `silenced_so_far`: the silenced conditions of the key's open
    flapping incident, None when none is open. A draft of what another key causes counts no toggle
    of its own, but is quiet all the same while that key flaps."""
    flaps = clock.flaps
    if draft.cause[0].group == draft.key:
        flaps = flaps.record(draft.key, now)
    clock = FlapClock(flaps, clock.due)
    if silenced_so_far is None and not flaps.is_flapping(draft.key, now):
        return Toggle(clock, quiet=False)
    clock = clock.watch(now + flaps.window)
    silenced = {e.key for e in draft.events}  # the conditions to look at again once it is calm
    if silenced_so_far is None:
        return Toggle(clock, True, OpenFlap(draft.key, tuple(sorted(silenced)),
                                            flaps.count(draft.key, now), flaps.window))
    known = set(silenced_so_far)
    if silenced <= known:
        return Toggle(clock, True)
    return Toggle(clock, True, Silence(tuple(sorted(silenced | known))))


def calmed(clock: FlapClock, open_flaps: Iterable[tuple[Ref, str]],
           now: float) -> tuple[FlapClock, tuple[EndFlap, ...]]:
    """The flapping incidents (ref, key) that calmed by `now` (no toggle for a whole window), and
    the clock due at the next one that may calm. Until one is due: nothing to look at."""
    if clock.due is None or now < clock.due:
        return clock, ()
    clock, ended = FlapClock(clock.flaps), []
    for incident, key in open_flaps:
        calm_at = clock.calm_at(key, now)
        if now < calm_at:
            clock = clock.watch(calm_at)
        else:
            ended.append(EndFlap(incident, timedelta(seconds=now - calm_at + clock.flaps.window)))
    return clock, tuple(ended)


def resumed(clock: FlapClock, open_flap_keys: Iterable[str], now: float) -> FlapClock:
    """After a restart the toggles of a flapping incident left open are gone: count the restart
    as its last toggle, so it ends after one calm window like any other."""
    for key in open_flap_keys:
        clock = FlapClock(clock.flaps.record(key.removeprefix(FLAPPING), now), clock.due)
        clock = clock.watch(now + clock.flaps.window)
    return clock


@dataclass(frozen=True, slots=True)
class FollowUp:
    """More news about an open incident: its record with the news counted in, how often the
    draft's one-shot has now happened, whether the root is edited to the whole story (worse, or
    reopened), whether the channel hears it (an escalation reply) and whether the thread reply is
    shown in the channel too (reopened, when no escalation reply says it already)."""

    record: IncidentRecord
    times: int
    escalate: bool
    loud: bool
    broadcast: bool


def follow_up(record: IncidentRecord, severity: Severity, draft: IncidentDraft, *,
              reopened: bool = False, loud: bool = False, held_elsewhere: Collection[str] = ()) -> FollowUp:
    """A thread reply notifies nobody: news that must not hide there (worse than the incident, a
    CRITICAL one-shot new to it, what a flap left) is said in the channel too. A one-shot that
    repeats (a fence device failing retry after retry) is loud only once: the retries count.

    `held_elsewhere`: the conditions other open incidents hold. The news is told here all the same,
    but a condition is held once: the incident that took it first (a bounce guessed to be another
    node's, every node bounced at once) keeps it, and hears its recovery."""
    news = record.with_news(draft)
    if held_elsewhere:
        news = news.with_open([k for k in news.open if k in record.open or k not in held_elsewhere])
    times = max((news.shots[e.series] for e in draft.events if e.one_shot), default=1)
    worse, seen = draft.severity > severity, record.shots
    loud = loud or worse or any(e.one_shot and e.severity is Severity.CRITICAL and e.series not in seen
                                for e in draft.events)
    return FollowUp(news, times, worse or reopened, loud, reopened and not loud)
