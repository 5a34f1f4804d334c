"""Watch every cluster: poll, diff against the stored state, open, thread and resolve incidents.

The diff, grouping, settling and flap decisions are pure (bot/pacemaker/diff.py, bot/watch/); this
module owns the loop, the store and the outbox. State lives in SQLite, so a restart repeats no open
alert and reports what changed while the bot was down. What one poll writes (its state,
incidents and outbox rows) is one transaction: a store error loses no alert, the next poll sees
the same change again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from bot.collect import Ask
from bot.delivery import doc_json
from bot.metrics import Metrics
from bot.pacemaker.diff import Event, EventKind, Flapping, IncidentDraft, WatchState, diff, incidents, step
from bot.pacemaker.health import Severity
from bot.pacemaker.merge import ClusterReport
from bot.pacemaker.snapshot import Snapshot
from bot.render.alerts import (
    escalation_doc,
    fix_doc,
    flap_over_doc,
    flapping_doc,
    followup_doc,
    incident_doc,
    initial_doc,
    recovery_doc,
    resolved_doc,
)
from bot.render.doc import Doc
from bot.settings import ClusterConfig, Settings
from bot.store import Incident, IncidentState, Store
from bot.watch.fixes import Fix, explaining
from bot.watch.grouping import coalesce, owner
from bot.watch.lifecycle import FLAPPING, FlapClock, OpenFlap, Silence, calmed, follow_up, resumed, toggle
from bot.watch.records import IncidentRecord, MessageKind, Outgoing
from bot.watch.settle import pacemaker_busy, ring_moved, settle

log = logging.getLogger(__name__)
JITTER = 0.1  # the first pause is 10-100% of the interval: a random phase per cluster
INITIAL_KEY = "initial"
FIX = "fix:"  # key prefix of the alert-channel root standing for an approved fix at work
# Conditions of a whole-cluster loss: while one is open, its incident owns every change.
WHOLE_CLUSTER = ("quorum_lost:", "corosync_quorum_lost:", "cluster_unreachable:")


@dataclass
class Watcher:
    settings: Settings
    collect: Callable[..., Any]  # async (cluster, *, ask) -> ClusterReport
    store: Store
    clock: Callable[[], datetime]
    notify: Callable[[], None] = lambda: None  # wakes the deliverer after enqueueing
    fix_button: bool = False
    monotonic: Callable[[], float] = time.monotonic
    metrics: Metrics | None = None
    _states: dict[str, WatchState | None] = field(default_factory=dict)
    _flaps: dict[str, FlapClock] = field(default_factory=dict)
    _saved: dict[str, str] = field(default_factory=dict)
    _last: dict[str, ClusterReport] = field(default_factory=dict)
    _wake: dict[str, asyncio.Event] = field(default_factory=dict)
    _polled: asyncio.Condition = field(default_factory=asyncio.Condition)
    # cluster -> an alert-channel root of a fix is open (missing: not looked up since start)
    _fix_roots: dict[str, bool] = field(default_factory=dict)
    polls: int = 0

    # -- loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for cluster in self.settings.clusters:
                tg.create_task(self._loop(cluster), name=f"watch:{cluster.name}")

    def wake(self, cluster: str) -> bool:
        """The push path: poll this cluster now. False if it is not watched."""
        event = self._wake.get(cluster)
        if event is None:
            return False
        event.set()
        return True

    async def _loop(self, cluster: ClusterConfig) -> None:
        """Poll on a fixed cadence with a random phase per cluster: clusters do not poll in
        lockstep, yet the gap between two polls stays the interval (so alert lag stays bounded
        by interval + processing), whatever a poll costs."""
        wake = self._wake.setdefault(cluster.name, asyncio.Event())
        interval = self.settings.poll_interval_s
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        first = True
        while True:
            wake.clear()
            try:
                await self.poll(cluster)
            except Exception:  # one bad poll must never stop the watch
                log.exception("poll of %s failed", cluster.name)
            next_at += interval * (random.uniform(JITTER, 1.0) if first else 1.0)
            first = False
            next_at = max(next_at, loop.time())  # a slow poll must not cause a burst of catch-ups
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(next_at):
                    await wake.wait()
            if wake.is_set():
                next_at = loop.time()  # pushed: poll now, then keep the cadence from here

    # -- one poll --------------------------------------------------------------------------

    async def poll(self, cluster: ClusterConfig) -> tuple[IncidentDraft, ...]:
        started = self.monotonic()
        # Light polls: the collector asks one node in turn and refreshes everything on a change.
        report: ClusterReport = await self.collect(cluster, ask=Ask.TURN)
        if self.metrics is not None:
            self.metrics.record_poll(report, self.monotonic() - started)
        # The collector hands back the very same report when no node said anything new.
        if report is self._last.get(cluster.name) and not self._release_due(cluster):
            drafts: tuple[IncidentDraft, ...] = ()
            self._settle_flapping(cluster, report)
            self._settle_fixes(cluster, report)
        else:
            drafts = self.observe(cluster, report)
            # Only once observed and committed: a report whose writes failed is news next poll too.
            self._last[cluster.name] = report
        self.polls += 1
        async with self._polled:
            self._polled.notify_all()
        return drafts

    def _release_due(self, cluster: ClusterConfig) -> bool:
        """A held finding's settle time is over: the report must be looked at again, unchanged or not."""
        state = self._states.get(cluster.name)
        if state is None or not state.settling.held:
            return False
        now, settle_s = self.clock().timestamp(), self.settings.settle_s
        return any(now - h.since >= settle_s for h in state.settling.held)

    async def wait_polls(self, n: int, timeout: float = 30.0) -> None:
        """Wait until n more polls have finished (tests and benchmarks; no sleeping)."""
        target = self.polls + n
        async with asyncio.timeout(timeout), self._polled:
            await self._polled.wait_for(lambda: self.polls >= target)

    def observe(self, cluster: ClusterConfig, report: ClusterReport) -> tuple[IncidentDraft, ...]:
        """Diff a fresh report against the stored state and turn the changes into messages.

        All it writes (the new state, incidents, outbox rows) is one transaction: a store error half
        way (database locked, disk full) leaves no trace, so the next poll sees the same change again.
        """
        name = cluster.name
        prev = self._states[name] if name in self._states else self._load(name)
        state, events = step(prev, report, cluster.expectations,
                             unreachable_after=self.settings.unreachable_after)
        now = self.clock()
        fixes = self._fixes(cluster, now)
        settling, events = settle(state.settling, events, now.timestamp(), self.settings.settle_s,
                                  fixing=any(f.acting(now, self.settings.settle_s) for f in fixes),
                                  moved=ring_moved(prev.last if prev is not None else None, state.last),
                                  busy=pacemaker_busy(state.last))
        state = replace(state, settling=settling)
        drafts = incidents(events)
        dumped = _dump(state)
        poll = self._poll(cluster, report, prev.last if prev is not None else None)
        poll.state, poll.dumped, poll.fixes = state, dumped, fixes
        with self._atomically(poll):
            if dumped != self._saved.get(name):  # an fsync per poll is wasted when nothing changed
                self.store.save_watch_state(name, dumped)
            if prev is None and not report.healthy:  # first sight (or a first sight that failed)
                self._open_initial(poll)
            elif prev is not None and prev.last is None and state.last is not None and not report.healthy:
                self._first_view(poll)
            # Before this poll's news: a flap that calmed is settled against what the cluster looked
            # like until now, and this poll's change is then news like any other.
            self._settle_flaps(poll)
            for draft in self._coalesced(poll, drafts):
                self._handle(poll, draft)
            self._track_flaps(poll, drafts)
            self._end_fixes(poll)
            if report.healthy:
                self._resolve_all(poll)
                self._settled(poll)
        return drafts

    def _fixes(self, cluster: ClusterConfig, now: datetime) -> tuple[Fix, ...]:
        """The approved remediations of this cluster acting now or within the settle window."""
        since = now - timedelta(seconds=self.settings.settle_s)
        return tuple(Fix(r.id, r.action, r.args, r.node, r.channel, r.message_ts, ended)
                     for r, ended in self.store.acting_requests(cluster.name, since))

    def _load(self, name: str) -> WatchState | None:
        raw = self.store.load_watch_state(name)
        state = None
        if raw is not None:
            try:
                state = WatchState.from_json(_load_json(raw))
            except ValueError:
                log.warning("stored watch state of %s is unreadable; starting afresh", name)
        self._states[name] = state
        return state

    def _poll(self, cluster: ClusterConfig, report: ClusterReport, before: Snapshot | None) -> _Poll:
        flaps = self._flaps.get(cluster.name)
        fresh = FlapClock(Flapping(limit=self.settings.flap_limit, window=self.settings.flap_window_s))
        poll = _Poll(cluster, report, before, flaps or fresh)
        if flaps is None:  # the first poll since start
            self._resume_flaps(poll)
        return poll

    @contextlib.contextmanager
    def _atomically(self, poll: _Poll) -> Iterator[None]:
        """The poll's writes as one transaction; the watcher's memory follows once it committed."""
        with self.store.transaction():
            yield
        name = poll.cluster.name
        if poll.state is not None:  # first: whatever fails below, this poll's changes are not news again
            self._states[name] = poll.state
            self._saved[name] = poll.dumped
        self._flaps[name] = poll.flaps
        for done in poll.committed:
            done()
        self.notify()

    # -- incidents -------------------------------------------------------------------------

    def _handle(self, poll: _Poll, draft: IncidentDraft) -> None:
        fix = explaining(poll.fixes, draft, self.clock(), self.settings.settle_s)
        if fix is not None:
            self._fix_effect(poll, fix, draft)
            return
        draft = self._owned(poll, draft)
        # A one-shot (a fence) toggles nothing: it does not count towards flapping, and it is said
        # when it happens, not once a flap has calmed and it is stale.
        toggles = draft.only(lambda e: not e.one_shot)
        if toggles is None or not self._quiet_for_flapping(poll, toggles):
            self._deliver(poll, draft)
            return
        shots = draft.only(lambda e: e.one_shot)
        if shots is not None:
            self._deliver(poll, shots)

    def _coalesced(self, poll: _Poll, drafts: tuple[IncidentDraft, ...]) -> list[IncidentDraft]:
        """The poll's drafts, its new problems as one incident when they are one event."""
        if sum(d.is_problem for d in drafts) < 2:
            return list(drafts)
        now = self.clock()

        def opening(d: IncidentDraft) -> bool:
            if explaining(poll.fixes, d, now, self.settings.settle_s) is not None:
                return False
            key = self._owned(poll, d).key
            return (self.store.find_open_incident(poll.cluster.name, key) is None
                    and self._recent(poll, key, self.settings.flap_window_s) is None)

        return coalesce(drafts, opening)

    def _owned(self, poll: _Poll, draft: IncidentDraft) -> IncidentDraft:
        """The draft keyed on the incident it belongs to (its node's, when that node's incident is
        open or just ended): one node's failure is one incident whichever symptom shows first."""
        since = self.clock() - timedelta(seconds=self.settings.settle_s)
        found = [i for i in self.store.recent_incidents(poll.cluster.name, since)
                 if not i.key.startswith((FLAPPING, FIX))]
        absorbing = next((i.key for i in found if i.state is IncidentState.OPEN
                          and any(k.startswith(WHOLE_CLUSTER) for k in _opened(i))), None)
        snap = poll.state.last if poll.state is not None else None
        members = snap.members if snap is not None else ()
        key = owner(draft, nodes=[n.name for n in poll.cluster.nodes], members=members,
                    incidents=[i.key for i in found], absorbing=absorbing)
        return draft if key == draft.key else replace(draft, key=key)

    def _fix_effect(self, poll: _Poll, fix: Fix, draft: IncidentDraft) -> None:
        """An approved fix's effect: told in its request's thread and the related incident's,
        never paged, never an incident of its own. When alerts go to another channel than the
        request's, that channel gets one plain root naming the fix, with its effects in the thread."""
        cluster = poll.cluster
        doc = followup_doc(cluster.name, draft)
        if fix.message_ts is not None:
            self._enqueue(MessageKind.REPLY, cluster, None, doc, thread=fix.message_ts, channel=fix.channel)
        if fix.channel != self._channel(cluster):
            self._enqueue(MessageKind.REPLY, cluster, self._fix_root(poll, fix), doc)
        related = self.store.find_open_incident(cluster.name, self._owned(poll, draft).key)
        if related is not None:
            self._enqueue(MessageKind.REPLY, cluster, related, doc)
        self._close(poll, draft, related, quiet=True)

    def _fix_root(self, poll: _Poll, fix: Fix) -> Incident:
        cluster = poll.cluster
        found = self.store.find_open_incident(cluster.name, FIX + fix.request_id)
        if found is not None:
            return found
        title = f"approved fix `{fix.label}` is acting"
        inc = self.store.open_incident(cluster=cluster.name, key=FIX + fix.request_id, severity=Severity.INFO,
                                       title=title, channel=self._channel(cluster), now=self.clock(),
                                       payload=IncidentRecord.new(request=fix.request_id).payload)
        doc = fix_doc(cluster.name, fix.label, fix.channel, fix.message_ts)
        self._enqueue(MessageKind.ROOT, cluster, inc, doc)
        return inc

    def _settle_fixes(self, cluster: ClusterConfig, report: ClusterReport) -> None:
        """End a fix's alert-channel root while the report stays the same (observe() is skipped
        then). Until one is open this costs one dict lookup per poll."""
        if self._fix_roots.get(cluster.name) is False:
            return
        state = self._states.get(cluster.name)
        poll = self._poll(cluster, report, state.last if state is not None else None)
        poll.fixes = self._fixes(cluster, self.clock())
        with self._atomically(poll):
            self._end_fixes(poll)

    def _end_fixes(self, poll: _Poll) -> None:
        """The alert-channel root of a fix ends once the fix and its settle window are over."""
        acting = {FIX + f.request_id for f in poll.fixes if f.acting(self.clock(), self.settings.settle_s)}
        if not poll.fixes and self._fix_roots.get(poll.cluster.name) is False:
            return  # none open (unknown after a start: looked up once)
        roots = [i for i in self.store.open_incidents(poll.cluster.name) if i.key.startswith(FIX)]
        self._fix_roots[poll.cluster.name] = bool(roots)
        for inc in roots:
            if inc.key not in acting:
                self._resolve(poll, inc)

    def _deliver(self, poll: _Poll, draft: IncidentDraft, *, loud: bool = False,
                 host: Incident | None = None) -> None:
        """The draft's news where it belongs; each of its recoveries in the thread of what it ends,
        whatever else the draft is about (a problem in the same poll, a fence)."""
        own = None if draft.is_recovery else self._news(poll, draft, loud=loud, host=host)
        self._close(poll, draft, own)

    def _news(self, poll: _Poll, draft: IncidentDraft, *, loud: bool = False,
              host: Incident | None = None) -> Incident | None:
        """Post a problem or a neutral change; the incident it went to, if any."""
        cluster = poll.cluster
        found = self.store.find_open_incident(cluster.name, draft.key)
        if not draft.is_problem:
            # Neutral news (a VIP moved, the DC changed): in the thread of the incident it follows
            # (a recovery's tail, a VIP going back home), else one message that opens nothing.
            tail = found or self._recent(poll, draft.key, self.settings.settle_s)
            if tail is not None:
                self._enqueue(MessageKind.REPLY, cluster, tail, followup_doc(cluster.name, draft))
            else:
                self._enqueue(MessageKind.ROOT, cluster, None, incident_doc(cluster.name, draft))
            return None
        # An incident that already holds one of its conditions (taken in while the quorum was lost,
        # say) owns the draft: a condition is never held twice.
        found = found or next((i for i in self.store.open_incidents(cluster.name)
                               if set(_opened(i)) & set(draft.opens)), None)
        if found is not None:
            return self._follow_up(poll, found, draft, loud=loud)
        again = self._recent(poll, draft.key, self.settings.flap_window_s) if draft.opens else None
        if again is None and host is not None and host.key == draft.key and draft.opens:
            again = host  # what a flap left broken: the flapping incident again
        if again is not None:
            # The same cause again within the flap window: its incident again, said in the channel.
            reopened = self.store.reopen_incident(again.id)
            return self._follow_up(poll, reopened, draft, reopened=True, loud=loud)
        if draft.opens:
            return self._open(poll, draft)
        # A one-shot problem (a fence) with no incident to join: one message, nothing left open;
        # its recoveries, if any, go to their incidents' threads.
        alone = draft.only(lambda e: not e.recovery) or draft
        doc = incident_doc(cluster.name, alone, mention=cluster.mention)
        self._enqueue(MessageKind.ROOT, cluster, None, doc)
        return None

    def _open(self, poll: _Poll, draft: IncidentDraft) -> Incident:
        cluster = poll.cluster
        # The draft is kept so that an escalation can re-render the root message whole.
        inc = self.store.open_incident(
            cluster=cluster.name, key=draft.key, severity=draft.severity, title=draft.title,
            channel=self._channel(cluster), now=self.clock(),
            payload=IncidentRecord.new(holds=draft.opens, draft=draft).payload)
        self._opened_metric(poll, inc)
        self._enqueue(MessageKind.ROOT, cluster, inc, self._root_doc(cluster, draft, inc))
        return inc

    def _recent(self, poll: _Poll, key: str, within_s: float) -> Incident | None:
        return self.store.recent_incident(poll.cluster.name, key, self.clock() - timedelta(seconds=within_s))

    def _follow_up(self, poll: _Poll, found: Incident, draft: IncidentDraft, *,
                   reopened: bool = False, loud: bool = False) -> Incident:
        """More news about an open incident: a reply in its thread, and in the channel too when
        `lifecycle.follow_up` says it must not hide there (worse, a new CRITICAL one-shot)."""
        cluster = poll.cluster
        news = follow_up(_rec(found), found.severity, draft, reopened=reopened, loud=loud)
        inc = self.store.update_incident(found.id, payload=news.record.payload)
        self._enqueue(MessageKind.REPLY, cluster, inc, followup_doc(cluster.name, draft, times=news.times),
                      broadcast=news.broadcast)
        if news.escalate:
            inc = self._escalate(cluster, inc, draft)
        if news.loud:
            doc = escalation_doc(cluster.name, draft, incident_key=found.key, incident_title=found.title,
                                 was=found.severity, mention=cluster.mention)
            self._enqueue(MessageKind.REPLY, cluster, inc, doc, broadcast=True)
        return inc

    def _escalate(self, cluster: ClusterConfig, inc: Incident, draft: IncidentDraft) -> Incident:
        """The root message takes the worse severity (and the mention): edited to the whole story."""
        root = _root_draft(inc)
        if root is None:  # opened by an older clusterbot, which kept no draft: only the severity moves
            return self.store.update_incident(inc.id, severity=draft.severity)
        whole = root.merged(draft)
        inc = self.store.update_incident(
            inc.id, severity=whole.severity, title=whole.title,
            payload=_rec(inc).with_draft(whole).payload)
        self._enqueue(MessageKind.EDIT, cluster, inc, self._root_doc(cluster, whole, inc))
        return inc

    def _root_doc(self, cluster: ClusterConfig, draft: IncidentDraft, inc: Incident) -> Doc:
        return incident_doc(cluster.name, draft, incident_id=inc.id, mention=cluster.mention,
                            fix_button=self.fix_button)

    def _close(self, poll: _Poll, draft: IncidentDraft, own: Incident | None, *, quiet: bool = False) -> None:
        """End the conditions the draft's recoveries clear, in whichever incidents opened them.
        `own`, the incident the draft was just posted to, needs no second message."""
        closes = set(draft.closes)
        if not closes:
            return
        found = self.store.open_incidents(poll.cluster.name)
        hosts = {_host(i) for i in found if i.key.startswith(FLAPPING)}  # they end with their flap
        touched = [i for i in found if set(_opened(i)) & closes]
        for inc in touched:
            ended = set(_opened(inc)) & closes
            left = sorted(set(_opened(inc)) - closes)
            inc = self.store.update_incident(inc.id, payload=_rec(inc).with_open(left).payload)
            if own is None or inc.id != own.id:
                # A problem's draft may carry another incident's recovery: only that goes there.
                part = draft if draft.is_recovery else _recoveries(draft, ended)
                self._enqueue(MessageKind.REPLY, poll.cluster, inc, followup_doc(poll.cluster.name, part))
            if not left and inc.id not in hosts:
                self._resolve(poll, inc)
        if not touched and not quiet:
            log.info("%s: recovery with no open incident: %s", poll.cluster.name, draft.title)

    def _resolve_all(self, poll: _Poll) -> None:
        """Back to healthy: every open incident is over; a flapping one (and the incident whose
        thread it is told in) once it calmed; an approved fix's once its settle window is over."""
        found = self.store.open_incidents(poll.cluster.name)
        hosts = {_host(i) for i in found if i.key.startswith(FLAPPING)}
        for inc in found:
            if inc.key.startswith(FLAPPING):
                # _settle_flaps ends it
                poll.flaps = poll.flaps.watch(poll.flaps.calm_at(inc.key, self.monotonic()))
                continue
            if inc.id not in hosts and not inc.key.startswith(FIX):
                self._resolve(poll, inc)

    def _resolve(self, poll: _Poll, inc: Incident) -> None:
        now = self.clock()
        done = self.store.resolve_incident(inc.id, now=now)
        if self.metrics is not None:
            metrics, name = self.metrics, poll.cluster.name
            poll.committed.append(lambda: metrics.incident_resolved(name))
        lasted = now - done.opened_at
        said = recovery_doc(poll.cluster.name, poll.report, lasted)
        if _rec(done).settling is poll.report.healthy:  # "still wrong: …": told once it settled
            done = self.store.update_incident(
                done.id, payload=_rec(done).with_settling(not poll.report.healthy).payload)
        self._enqueue(MessageKind.REPLY, poll.cluster, done, said)
        self._enqueue(MessageKind.EDIT, poll.cluster, done,
                      resolved_doc(poll.cluster.name, done.title, done.severity, lasted))

    def _settled(self, poll: _Poll) -> None:
        """The recovery tail: an incident that ended with "still wrong: …" (VIPs not yet home, a
        clone instance not yet started) hears in its thread that the whole cluster is healthy
        again, so its last word is not a problem nobody closed. Within flap_window_s of its end."""
        now = self.clock()
        since = now - timedelta(seconds=self.settings.flap_window_s)
        for inc in self.store.recent_incidents(poll.cluster.name, since):
            if inc.state is not IncidentState.RESOLVED or not _rec(inc).settling:
                continue
            inc = self.store.update_incident(inc.id, payload=_rec(inc).with_settling(False).payload)
            self._enqueue(MessageKind.REPLY, poll.cluster, inc,
                          recovery_doc(poll.cluster.name, poll.report, now - inc.opened_at))

    def _open_initial(self, poll: _Poll) -> None:
        cluster, report = poll.cluster, poll.report
        if self.store.find_open_incident(cluster.name, INITIAL_KEY) is not None:
            return
        inc = self.store.open_incident(cluster=cluster.name, key=INITIAL_KEY,
                                       severity=report.severity or Severity.WARNING,
                                       title="unhealthy when clusterbot started watching",
                                       channel=self._channel(cluster), now=self.clock(),
                                       payload=IncidentRecord.new().payload)
        self._opened_metric(poll, inc)
        self._enqueue(MessageKind.ROOT, cluster, inc, initial_doc(report, mention=cluster.mention))

    def _first_view(self, poll: _Poll) -> None:
        """The first view after a start when no node answered. There is no earlier view to diff
        against, so nothing else would ever say what is wrong: the "unhealthy at start" incident
        says it now, in its root and thread, and pages when it turns out CRITICAL."""
        cluster, report = poll.cluster, poll.report
        found = self.store.find_open_incident(cluster.name, INITIAL_KEY)
        if found is None:
            return
        severity = report.severity or Severity.WARNING
        inc = self.store.update_incident(found.id, severity=max(found.severity, severity))
        doc = initial_doc(report, mention=cluster.mention, first_view=True)
        self._enqueue(MessageKind.EDIT, cluster, inc, doc)
        self._enqueue(MessageKind.REPLY, cluster, inc, doc)
        if severity is Severity.CRITICAL and found.severity < Severity.CRITICAL:
            self._enqueue(MessageKind.ROOT, cluster, None, doc)  # a thread reply notifies nobody

    def _opened_metric(self, poll: _Poll, inc: Incident) -> None:
        if self.metrics is not None:
            metrics, name = self.metrics, poll.cluster.name
            poll.committed.append(lambda: metrics.incident_opened(name, inc.severity))

    # -- flapping --------------------------------------------------------------------------

    def _quiet_for_flapping(self, poll: _Poll, draft: IncidentDraft) -> bool:
        """Count the toggle. A key flapping (or whose flapping incident is still open) stays quiet
        until it has not toggled for a whole window: then `_settle_flaps` says how it ended. The
        draft's events are changes of conditions: `_handle` keeps one-shots out of it."""
        cluster = poll.cluster
        found = self.store.find_open_incident(cluster.name, FLAPPING + draft.key)
        verdict = toggle(poll.flaps, draft, self.monotonic(),
                         None if found is None else _rec(found).silenced)
        poll.flaps = verdict.clock
        if isinstance(verdict.effect, OpenFlap):
            self._open_flap(poll, verdict.effect)
        elif isinstance(verdict.effect, Silence) and found is not None:
            widened = _rec(found).with_silenced(set(verdict.effect.silenced))
            self.store.update_incident(found.id, payload=widened.payload)
        return verdict.quiet

    def _open_flap(self, poll: _Poll, flap: OpenFlap) -> None:
        """Told in the thread of the incident that is flapping, when it has one: one cause, one
        incident. "latest": each silenced condition's latest change, kept by `_track_flaps`."""
        cluster = poll.cluster
        host = (self.store.find_open_incident(cluster.name, flap.key)
                or self._reopened(poll, self._recent(poll, flap.key, flap.window)))
        inc = self.store.open_incident(
            cluster=cluster.name, key=FLAPPING + flap.key, severity=Severity.WARNING,
            title=f"{flap.key} is flapping", now=self.clock(), channel=self._channel(cluster),
            payload=IncidentRecord.new(silenced=flap.silenced,
                                       host=host.id if host is not None else None).payload)
        doc = flapping_doc(cluster.name, flap.key, flap.count, flap.window)
        kind = MessageKind.ROOT if host is None else MessageKind.REPLY
        self._enqueue(kind, cluster, inc, doc, broadcast=host is not None)

    def _reopened(self, poll: _Poll, inc: Incident | None) -> Incident | None:
        """A resolved incident open again, its root back to what it was about (not struck out)."""
        if inc is None:
            return None
        inc = self.store.reopen_incident(inc.id)
        root = _root_draft(inc)
        if root is not None:
            self._enqueue(MessageKind.EDIT, poll.cluster, inc, self._root_doc(poll.cluster, root, inc))
        return inc

    def _track_flaps(self, poll: _Poll, drafts: tuple[IncidentDraft, ...]) -> None:
        """Keep in each open flapping incident the latest change of every condition it silenced,
        quiet or alerted in another incident's draft: when the flap calms, that is how the condition
        is. Neither the picture from before the flap (an incident may have been resolved as healthy
        since) nor the quiet changes alone (another incident may have taken the last one) can say."""
        changes = [e for d in drafts for e in d.events if _condition_change(e)]
        if poll.flaps.due is None or not changes:  # no flap open (or nothing it could silence): no query
            return
        for inc in self.store.open_incidents(poll.cluster.name):
            silenced = set(_rec(inc).silenced) if inc.key.startswith(FLAPPING) else set()
            mine = {e.key: e for e in changes if e.key in silenced}
            if mine:
                self.store.update_incident(inc.id, payload=_rec(inc).with_latest(mine).payload)

    def _settle_flaps(self, poll: _Poll) -> None:
        """End every flap that calmed (no toggle for a whole window). Until one is due: no query."""
        now = self.monotonic()
        if poll.flaps.due is None or now < poll.flaps.due:
            return
        flaps = {i.id: i for i in self.store.open_incidents(poll.cluster.name) if i.key.startswith(FLAPPING)}
        poll.flaps, ended = calmed(poll.flaps, ((i.id, i.key) for i in flaps.values()), now)
        for end in ended:
            self._end_flap(poll, flaps[end.incident], end.calm)

    def _end_flap(self, poll: _Poll, inc: Incident, calm: timedelta) -> None:
        """What the flap left that no open incident says is alerted as if it had just happened (a
        problem gets its own incident, at its own severity); then the flapping incident ends in
        its thread, naming the incidents of what is still wrong."""
        silenced = set(_rec(inc).silenced)
        host = self._flap_host(inc, silenced)
        for draft in self._net_change(poll, inc, silenced):
            self._deliver(poll, draft, loud=True, host=host)
        if host is not None:
            host = self.store.get_incident(host.id)
            if host is not None and host.state is IncidentState.OPEN and not _opened(host):
                self._resolve(poll, host)
        name = poll.cluster.name
        still = tuple((i.key, i.title, i.severity) for i in self.store.open_incidents(name)
                      if set(_opened(i)) & silenced)
        now = self.clock()
        done = self.store.resolve_incident(inc.id, now=now)
        if self.metrics is not None:
            metrics = self.metrics
            poll.committed.append(lambda: metrics.incident_resolved(name))
        key = inc.key.removeprefix(FLAPPING)
        over = flap_over_doc(name, key, calm, poll.report, still)
        self._enqueue(MessageKind.REPLY, poll.cluster, done, over)
        if _host(done) == done.id:  # a hosted flap leaves the root to the incident it is told in
            self._enqueue(MessageKind.EDIT, poll.cluster, done, resolved_doc(name, done.title, done.severity,
                                                                   now - done.opened_at))

    def _flap_host(self, inc: Incident, silenced: set[str]) -> Incident | None:
        """The incident a flap is told in. What it held before the flap is stale now: the flap's
        net change says how each silenced condition is."""
        host = self.store.get_incident(_host(inc)) if _host(inc) != inc.id else None
        if host is None or host.state is not IncidentState.OPEN:
            return host
        left = [k for k in _opened(host) if k not in silenced]
        return self.store.update_incident(host.id, payload=_rec(host).with_open(left).payload)

    def _net_change(self, poll: _Poll, inc: Incident, silenced: set[str]) -> tuple[IncidentDraft, ...]:
        """Each condition the flap silenced, as its latest change left it, against the conditions
        open now: a problem no open incident holds is news (one that some incident holds is not
        news again), and so is a recovery of a condition an incident still holds. Moves and the
        like in between are history."""
        latest = {**self._since_before(poll, inc), **_rec(inc).latest()}
        held = {key for i in self.store.open_incidents(poll.cluster.name) for key in _opened(i)}
        left = [e for e in latest.values() if e.key in silenced and _condition_change(e)
                and (e.recovery if e.key in held else e.problem)]
        return incidents(left)

    def _since_before(self, poll: _Poll, inc: Incident) -> dict[str, Event]:
        """A flap opened by an older clusterbot kept no latest changes, only the cluster before it:
        the changes from that picture to the cluster now stand in for them."""
        raw = _rec(inc).before
        if poll.before is None or raw is None:
            return {}
        try:
            before = Snapshot.from_json(raw)
        except ValueError:
            log.warning("%s: the view before %s is unreadable; not comparing", poll.cluster.name, inc.key)
            return {}
        return {e.key: e for e in diff(before, poll.before)}

    def _resume_flaps(self, poll: _Poll) -> None:
        """After a restart the toggles of a flapping incident left open are gone: count the restart
        as its last toggle, so it ends after one calm window like any other."""
        keys = [i.key for i in self.store.open_incidents(poll.cluster.name) if i.key.startswith(FLAPPING)]
        poll.flaps = resumed(poll.flaps, keys, self.monotonic())

    def _settle_flapping(self, cluster: ClusterConfig, report: ClusterReport) -> None:
        """End a flap that calmed down while the report stayed the same.

        poll() skips observe() for an unchanged report, and observe() is where flaps end, so a
        stable cluster (healthy or not) would keep its flapping incident open forever and never
        alert what the flap left broken. Until one is due this costs one dict lookup per poll, no
        diff and no query.
        """
        flaps = self._flaps.get(cluster.name)
        due = flaps.due if flaps is not None else None
        if due is None or self.monotonic() < due:
            return
        state = self._states.get(cluster.name)
        poll = self._poll(cluster, report, state.last if state is not None else None)
        with self._atomically(poll):
            self._settle_flaps(poll)
            if report.healthy:
                self._resolve_all(poll)

    # -- outbox ----------------------------------------------------------------------------

    def _channel(self, cluster: ClusterConfig) -> str:
        return cluster.alert_channel or self.settings.alert_channel or "alerts"

    def _enqueue(self, kind: MessageKind, cluster: ClusterConfig, inc: Incident | None, doc: Doc, *,
                 broadcast: bool = False, thread: str | None = None, channel: str | None = None) -> None:
        """Queue one message. `inc`: the incident whose thread (or root) it is; a flap told in
        another incident's thread goes there. `thread`/`channel`: another thread (a request's).
        `broadcast`: a thread reply also shown in the channel."""
        self._queue(Outgoing(kind, doc, channel or self._channel(cluster),
                             None if inc is None else _host(inc), thread, broadcast))

    def _queue(self, msg: Outgoing) -> None:
        payload: dict[str, Any] = {"doc": doc_json(msg.doc), "channel": msg.channel}
        if msg.incident is not None:
            payload["incident"] = msg.incident
        if msg.thread is not None:
            payload["thread"] = msg.thread
        if msg.broadcast:
            payload["broadcast"] = True
        self.store.enqueue(msg.kind, payload, now=self.clock())


@dataclass
class _Poll:
    """One poll while it is written. Its store writes join one transaction; the memory it changes
    lives here and reaches the Watcher only once that committed (see Watcher._atomically)."""

    cluster: ClusterConfig
    report: ClusterReport
    before: Snapshot | None  # the cluster at the previous poll: what the alerts so far describe
    flaps: FlapClock  # the toggles counted, and when the first open flapping incident may calm
    committed: list[Callable[[], None]] = field(default_factory=list)  # to do once committed (metrics)
    fixes: tuple[Fix, ...] = ()  # approved remediations acting on the cluster
    state: WatchState | None = None  # the new watch state, when the report was diffed
    dumped: str = ""  # ... and its JSON, as stored


def _rec(inc: Incident) -> IncidentRecord:
    return IncidentRecord(inc.payload)


def _host(inc: Incident) -> int:
    """The incident whose thread `inc` is told in: a flap is told in the flapping incident's."""
    host = _rec(inc).host
    return inc.id if host is None else host


def _recoveries(draft: IncidentDraft, ended: set[str]) -> IncidentDraft:
    """The draft's recoveries that end `ended`: what another incident's thread needs to hear."""
    return draft.only(lambda e: e.recovery and e.key in ended) or draft


def _root_draft(inc: Incident) -> IncidentDraft | None:
    draft = _rec(inc).draft()
    if draft is None and "draft" in inc.payload:
        log.warning("incident %d: its stored draft is unreadable", inc.id)
    return draft


def _opened(inc: Incident) -> list[str]:
    return _rec(inc).open


def _condition_change(event: Event) -> bool:
    """A condition going bad or good: what a flap silences and how it ends (not a move, not a fence,
    not a node's bounce between two polls: that is over when it is seen)."""
    bounced = event.kind is EventKind.NODE_BOUNCED
    return event.recovery or (event.problem and not event.one_shot and not bounced)


def _dump(state: WatchState) -> str:
    import json

    return json.dumps(state.to_json())


def _load_json(raw: str) -> Any:
    import json

    return json.loads(raw)
