"""One poll of one cluster, decided: its changes in, the new memory and typed effects out.

Which incident a change opens, joins, reopens or resolves, first sight of a cluster, flaps opening
and ending, an approved fix's effects and the settling tail are all decided here, with no store, no
clock and no outbox: `Known` is what the store knew when the poll began (the incidents open or
recently ended, the acting fixes), and the effects (bot/watch/effects.py) are what the watcher
writes, in order and in one transaction. Inside one poll the decisions see each other's writes
as the store would (an incident opened for one draft is found by the next), through a working
copy of the known incidents.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from bot.pacemaker.diff import Event, EventKind, Flapping, IncidentDraft, WatchState, diff, incidents
from bot.pacemaker.diff import step as diff_step
from bot.pacemaker.health import Expectations, Severity
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
from bot.watch.effects import (
    Counted,
    Effect,
    IncidentView,
    Note,
    OpenIncident,
    Post,
    ReopenIncident,
    ResolveIncident,
    RootStory,
    SaveState,
    UpdateIncident,
)
from bot.watch.fixes import Fix, explaining
from bot.watch.grouping import coalesce, owner
from bot.watch.lifecycle import FLAPPING, FlapClock, OpenFlap, Silence, calmed, follow_up, resumed, toggle
from bot.watch.records import IncidentRecord, MessageKind, New, Ref
from bot.watch.settle import pacemaker_busy, ring_moved, settle

INITIAL_KEY = "initial"
FIX = "fix:"  # key prefix of the alert-channel root standing for an approved fix at work
# Conditions of a whole-cluster loss: while one is open, its incident owns every change.
WHOLE_CLUSTER = ("quorum_lost:", "corosync_quorum_lost:", "cluster_unreachable:")


@dataclass(frozen=True, slots=True)
class Rules:
    """The settings one cluster's decisions depend on."""

    cluster: str
    channel: str  # where its alerts go
    mention: str | None
    nodes: tuple[str, ...]
    expect: Expectations
    settle_s: float
    flap_limit: int
    flap_window_s: float
    unreachable_after: int

    @property
    def lookback_s(self) -> float:
        """How long an ended incident still matters: a recovery tail, a cause back within the window."""
        return max(self.settle_s, self.flap_window_s)


@dataclass(frozen=True, slots=True)
class Memory:
    """What the watcher keeps of a cluster between polls. `flaps`: None on the first poll since a
    start (a flap left open is resumed); `fix_roots`: whether an alert-channel root of a fix is
    open (None: not looked up since the start)."""

    state: WatchState | None = None
    flaps: FlapClock | None = None
    fix_roots: bool | None = None


@dataclass(frozen=True, slots=True)
class Known:
    """What the store knew when the poll began: the incidents open or ended within
    `Rules.lookback_s` plus the incidents open flaps are told in, oldest first; the approved
    fixes acting on the cluster now or within the settle window."""

    incidents: tuple[IncidentView, ...] = ()
    fixes: tuple[Fix, ...] = ()


@dataclass(frozen=True, slots=True)
class Step:
    memory: Memory
    effects: tuple[Effect, ...]
    drafts: tuple[IncidentDraft, ...] = ()  # the poll's changes grouped by cause (before settling's hold)


def observe(memory: Memory, report: ClusterReport, known: Known, rules: Rules, now: datetime,
            mono: float) -> Step:
    """A report that may have changed: diff it against the memory and decide what it means.
    `mono`: the monotonic clock, which flaps are counted on."""
    prev = memory.state
    state, events = diff_step(prev, report, rules.expect, unreachable_after=rules.unreachable_after)
    before = prev.last if prev is not None else None
    settling, events = settle(state.settling, events, now.timestamp(), rules.settle_s,
                              fixing=any(f.acting(now, rules.settle_s) for f in known.fixes),
                              moved=ring_moved(before, state.last), busy=pacemaker_busy(state.last))
    state = replace(state, settling=settling)
    drafts = incidents(events)
    poll = _Poll(rules, known, report, before, now, mono, memory, state)
    poll.effects.append(SaveState(state))
    if prev is None and not report.healthy:  # first sight (or a first sight that failed)
        poll.open_initial()
    elif prev is not None and prev.last is None and state.last is not None and not report.healthy:
        poll.first_view()
    # Before this poll's news: a flap that calmed is settled against what the cluster looked like
    # until now, and this poll's change is then news like any other.
    poll.settle_flaps()
    for draft in poll.coalesced(drafts):
        poll.handle(draft)
    poll.track_flaps(drafts)
    poll.end_fixes()
    if report.healthy:
        poll.resolve_all()
        poll.settled()
    return poll.done(drafts)


def unchanged(memory: Memory, report: ClusterReport, known: Known, rules: Rules, now: datetime,
              mono: float) -> Step:
    """The same report as last poll (no diff to make): what time alone ends. A flap that calmed
    (a stable cluster would otherwise keep it open forever and never alert what it left broken),
    and a fix's alert-channel root once the fix and its settle window are over."""
    state = memory.state
    poll = _Poll(rules, known, report, state.last if state is not None else None, now, mono, memory, state)
    if flap_due(poll.flaps, mono):
        poll.settle_flaps()
        if report.healthy:
            poll.resolve_all()
    if poll.fix_roots is not False:
        poll.end_fixes()
    return poll.done(())


Decide = Callable[[Memory, ClusterReport, Known, Rules, datetime, float], Step]


def needed(memory: Memory | None, same: bool, now: datetime, mono: float, settle_s: float) -> Decide | None:
    """What a poll must decide. `same`: the collector handed back the very report of the last
    poll (no node said anything new). A report that may have changed, or a held finding whose
    settle time is over, is observed; the same report only when time alone may end something
    (`unchanged`); else nothing, and the store is not touched: one look at the memory a poll."""
    if memory is None or not same or _release_due(memory, now, settle_s):
        return observe
    if flap_due(memory.flaps, mono) or memory.fix_roots is not False:
        return unchanged
    return None


def flap_due(flaps: FlapClock | None, mono: float) -> bool:
    return flaps is not None and flaps.due is not None and mono >= flaps.due


def _release_due(memory: Memory, now: datetime, settle_s: float) -> bool:
    """A held finding's settle time is over: the report must be looked at again, unchanged or not."""
    state = memory.state
    if state is None or not state.settling.held:
        return False
    return any(now.timestamp() - h.since >= settle_s for h in state.settling.held)


def hosts_missing(found: Iterable[IncidentView]) -> list[int]:
    """The stored incidents open flaps are told in that `found` lacks (ended before the look-back):
    `Known` needs them too."""
    found = list(found)
    have = {i.ref for i in found}
    return sorted(h for h in _flap_hosts(i for i in found if i.open) if isinstance(h, int) and h not in have)


class _Poll:
    """One poll being decided: the incidents as its decisions so far left them, and its effects.

    Its methods read and write the working copy the way the watcher once read and wrote the store,
    so that each decision sees the ones before it; nothing outside is touched."""

    def __init__(self, rules: Rules, known: Known, report: ClusterReport, before: Snapshot | None,
                 now: datetime, mono: float, memory: Memory, state: WatchState | None) -> None:
        self.rules, self.report, self.before, self.now, self.mono = rules, report, before, now, mono
        self.state = state  # as the report left it (diffed, or the same as last poll)
        self.fixes = known.fixes
        self.fix_roots = memory.fix_roots
        self.effects: list[Effect] = []
        self._incidents = {i.ref: i for i in known.incidents}
        self._opened = 0
        flaps = memory.flaps
        if flaps is None:  # the first poll since start
            fresh = FlapClock(Flapping(limit=rules.flap_limit, window=rules.flap_window_s))
            flaps = resumed(fresh, [i.key for i in self._open() if i.key.startswith(FLAPPING)], mono)
        self.flaps = flaps

    def done(self, drafts: tuple[IncidentDraft, ...]) -> Step:
        return Step(Memory(self.state, self.flaps, self.fix_roots), tuple(self.effects), drafts)

    # -- the working copy (what the store would answer, and the writes it gets) ---------------

    def _open(self) -> list[IncidentView]:
        return [i for i in self._incidents.values() if i.open]

    def _find_open(self, key: str) -> IncidentView | None:
        return next((i for i in self._incidents.values() if i.open and i.key == key), None)

    def _ended_since(self, within_s: float) -> Callable[[IncidentView], bool]:
        since = self.now - timedelta(seconds=within_s)
        return lambda i: not i.open and i.resolved_at is not None and i.resolved_at >= since

    def _recent(self, key: str, within_s: float) -> IncidentView | None:
        """The latest incident with this key that ended within `within_s`."""
        ended = self._ended_since(within_s)
        return next((i for i in reversed(self._incidents.values()) if i.key == key and ended(i)), None)

    def _recent_all(self, within_s: float) -> list[IncidentView]:
        """Incidents open now or ended within `within_s`, oldest first."""
        ended = self._ended_since(within_s)
        return [i for i in self._incidents.values() if i.open or ended(i)]

    def _put(self, inc: IncidentView) -> IncidentView:
        self._incidents[inc.ref] = inc
        return inc

    def _new(self, key: str, severity: Severity, title: str, record: IncidentRecord) -> IncidentView:
        self._opened += 1
        ref = New(self._opened)
        self.effects.append(OpenIncident(ref, key, severity, title, self.rules.channel, self.now, record))
        inc = IncidentView(ref, key, True, severity, title, self.now, None, record)
        return self._put(inc)

    def _update(self, inc: IncidentView, *, severity: Severity | None = None, title: str | None = None,
                record: IncidentRecord | None = None) -> IncidentView:
        self.effects.append(UpdateIncident(inc.ref, severity, title, record))
        current = self._incidents[inc.ref]
        return self._put(replace(current, severity=current.severity if severity is None else severity,
                                 title=current.title if title is None else title,
                                 record=current.record if record is None else record))

    def _reopen(self, inc: IncidentView) -> IncidentView:
        """The incident open again, holding nothing yet: it ended when nothing it held was wrong any
        more, the cluster healthy, even what it still listed then (a bounce, a member loss: nothing
        diffs their end). Kept, that would come back as a second hold of a condition another
        incident took since, and be closed and told twice."""
        self.effects.append(ReopenIncident(inc.ref))
        current = self._incidents[inc.ref]
        if current.open:
            return current
        current = self._put(replace(current, open=True, resolved_at=None))
        return self._update(current, record=current.record.with_open([]).with_reopened_at(self.now))

    def _end(self, inc: IncidentView) -> IncidentView:
        self.effects.append(ResolveIncident(inc.ref, self.now))
        self.effects.append(Counted(None))
        current = self._incidents[inc.ref]
        return self._put(replace(current, open=False, resolved_at=self.now)) if current.open else current

    def _post(self, kind: MessageKind, inc: IncidentView | None, doc: Doc | RootStory, *,
              broadcast: bool = False, thread: str | None = None, channel: str | None = None) -> None:
        """`inc`: the incident whose thread (or root) it is; a flap told in another incident's
        thread goes there."""
        self.effects.append(Post(kind, doc, channel or self.rules.channel, None if inc is None else inc.host,
                                 thread, broadcast))

    def _note(self, message: str, *, warning: bool = False) -> None:
        self.effects.append(Note(f"{self.rules.cluster}: {message}", warning))

    # -- incidents -------------------------------------------------------------------------

    def handle(self, draft: IncidentDraft) -> None:
        fix = explaining(self.fixes, draft, self.now, self.rules.settle_s)
        if fix is not None:
            self._fix_effect(fix, draft)
            return
        draft = self._owned(draft)
        # A one-shot (a fence) toggles nothing: it does not count towards flapping, and it is said
        # when it happens, not once a flap has calmed and it is stale.
        toggles = draft.only(lambda e: not e.one_shot)
        if toggles is None or not self._quiet_for_flapping(toggles):
            self._deliver(draft)
            return
        shots = draft.only(lambda e: e.one_shot)
        if shots is not None:
            self._deliver(shots)

    def coalesced(self, drafts: tuple[IncidentDraft, ...]) -> list[IncidentDraft]:
        """The poll's drafts, its new problems as one incident when they are one event."""
        if sum(d.is_problem for d in drafts) < 2:
            return list(drafts)

        def opening(d: IncidentDraft) -> bool:
            if explaining(self.fixes, d, self.now, self.rules.settle_s) is not None:
                return False
            key = self._owned(d).key
            return self._find_open(key) is None and self._recent(key, self.rules.flap_window_s) is None

        return coalesce(drafts, opening)

    def _owned(self, draft: IncidentDraft) -> IncidentDraft:
        """The draft keyed on the incident it belongs to (its node's, when that node's incident is
        open or just ended): one node's failure is one incident whichever symptom shows first."""
        found = [i for i in self._recent_all(self.rules.settle_s) if not i.key.startswith((FLAPPING, FIX))]
        absorbing = next((i.key for i in found if i.open
                          and any(k.startswith(WHOLE_CLUSTER) for k in i.record.open)), None)
        snap = self.state.last if self.state is not None else None
        members = snap.members if snap is not None else ()
        key = owner(draft, nodes=self.rules.nodes, members=members, incidents=[i.key for i in found],
                    absorbing=absorbing)
        return draft if key == draft.key else replace(draft, key=key)

    def _fix_effect(self, fix: Fix, draft: IncidentDraft) -> None:
        """An approved fix's effect: told in its request's thread and the related incident's,
        never paged, never an incident of its own. When alerts go to another channel than the
        request's, that channel gets one plain root naming the fix, with its effects in the thread."""
        doc = followup_doc(self.rules.cluster, draft)
        if fix.message_ts is not None:
            self._post(MessageKind.REPLY, None, doc, thread=fix.message_ts, channel=fix.channel)
        if fix.channel != self.rules.channel:
            self._post(MessageKind.REPLY, self._fix_root(fix), doc)
        related = self._find_open(self._owned(draft).key)
        if related is not None:
            self._post(MessageKind.REPLY, related, doc)
        self._close(draft, related, quiet=True)

    def _fix_root(self, fix: Fix) -> IncidentView:
        found = self._find_open(FIX + fix.request_id)
        if found is not None:
            return found
        inc = self._new(FIX + fix.request_id, Severity.INFO, f"approved fix `{fix.label}` is acting",
                        IncidentRecord.new(request=fix.request_id))
        self._post(MessageKind.ROOT, inc, fix_doc(self.rules.cluster, fix.label, fix.channel, fix.message_ts))
        return inc

    def end_fixes(self) -> None:
        """The alert-channel root of a fix ends once the fix and its settle window are over."""
        acting = {FIX + f.request_id for f in self.fixes if f.acting(self.now, self.rules.settle_s)}
        if not self.fixes and self.fix_roots is False:
            return  # none open (unknown after a start: looked up once)
        roots = [i for i in self._open() if i.key.startswith(FIX)]
        self.fix_roots = bool(roots)
        for inc in roots:
            if inc.key not in acting:
                self._resolve(inc)

    def _deliver(self, draft: IncidentDraft, *, loud: bool = False, host: IncidentView | None = None) -> None:
        """The draft's news where it belongs; each of its recoveries in the thread of what it ends,
        whatever else the draft is about (a problem in the same poll, a fence)."""
        own = None if draft.is_recovery else self._news(draft, loud=loud, host=host)
        self._close(draft, own)

    def _news(self, draft: IncidentDraft, *, loud: bool = False,
              host: IncidentView | None = None) -> IncidentView | None:
        """Post a problem or a neutral change; the incident it went to, if any."""
        name = self.rules.cluster
        found = self._find_open(draft.key)
        if not draft.is_problem:
            # Neutral news (a VIP moved, the DC changed): in the thread of the incident it follows
            # (a recovery's tail, a VIP going back home), else one message that opens nothing.
            tail = found or self._recent(draft.key, self.rules.settle_s)
            if tail is not None:
                self._post(MessageKind.REPLY, tail, followup_doc(name, draft))
            else:
                self._post(MessageKind.ROOT, None, incident_doc(name, draft))
            return None
        # An incident that already holds one of its conditions (taken in while the quorum was lost,
        # say) owns the draft: a condition is never held twice.
        found = found or next((i for i in self._open() if set(i.record.open) & set(draft.opens)), None)
        if found is not None:
            return self._follow_up(found, draft, loud=loud)
        again = self._recent(draft.key, self.rules.flap_window_s) if draft.opens else None
        if again is None and host is not None and host.key == draft.key and draft.opens:
            again = host  # what a flap left broken: the flapping incident again
        if again is not None:
            # The same cause again within the flap window: its incident again, said in the channel.
            return self._follow_up(self._reopen(again), draft, reopened=True, loud=loud)
        if draft.opens:
            return self._open_for(draft)
        # A one-shot problem (a fence) with no incident to join: one message, nothing left open;
        # its recoveries, if any, go to their incidents' threads.
        alone = draft.only(lambda e: not e.recovery) or draft
        self._post(MessageKind.ROOT, None, incident_doc(name, alone, mention=self.rules.mention))
        return None

    def _open_for(self, draft: IncidentDraft) -> IncidentView:
        # The draft is kept so that an escalation can re-render the root message whole.
        inc = self._new(draft.key, draft.severity, draft.title,
                        IncidentRecord.new(holds=draft.opens, draft=draft))
        self.effects.append(Counted(inc.severity))
        self._post(MessageKind.ROOT, inc, RootStory(draft, inc.ref))
        return inc

    def _follow_up(self, found: IncidentView, draft: IncidentDraft, *, reopened: bool = False,
                   loud: bool = False) -> IncidentView:
        """More news about an open incident: a reply in its thread, and in the channel too when
        `lifecycle.follow_up` says it must not hide there (worse, a new CRITICAL one-shot)."""
        name = self.rules.cluster
        elsewhere = {k for i in self._open() if i.ref != found.ref for k in i.record.open}
        news = follow_up(found.record, found.severity, draft, reopened=reopened, loud=loud,
                         held_elsewhere=elsewhere)
        inc = self._update(found, record=news.record)
        self._post(MessageKind.REPLY, inc, followup_doc(name, draft, times=news.times),
                   broadcast=news.broadcast)
        if news.escalate:
            inc = self._escalate(inc, draft)
        if news.loud:
            doc = escalation_doc(name, draft, incident_key=found.key, incident_title=found.title,
                                 was=found.severity, mention=self.rules.mention)
            self._post(MessageKind.REPLY, inc, doc, broadcast=True)
        return inc

    def _escalate(self, inc: IncidentView, draft: IncidentDraft) -> IncidentView:
        """The root message takes the worse severity (and the mention): edited to the whole story."""
        root = self._root_draft(inc)
        if root is None:  # opened by an older clusterbot, which kept no draft: only the severity moves
            return self._update(inc, severity=draft.severity)
        whole = root.merged(draft)
        inc = self._update(inc, severity=whole.severity, title=whole.title,
                           record=inc.record.with_draft(whole))
        self._post(MessageKind.EDIT, inc, RootStory(whole, inc.ref))
        return inc

    def _root_draft(self, inc: IncidentView) -> IncidentDraft | None:
        draft = inc.record.draft()
        if draft is None and "draft" in inc.record.raw:
            self._note(f"incident {inc.ref}: its stored draft is unreadable", warning=True)
        return draft

    def _close(self, draft: IncidentDraft, own: IncidentView | None, *, quiet: bool = False) -> None:
        """End the conditions the draft's recoveries clear, in whichever incidents opened them.
        `own`, the incident the draft was just posted to, needs no second message."""
        closes = set(draft.closes)
        if not closes:
            return
        found = self._open()
        hosts = _flap_hosts(found)  # they end with their flap
        touched = [i for i in found if set(i.record.open) & closes]
        for inc in touched:
            ended = set(inc.record.open) & closes
            left = sorted(set(inc.record.open) - closes)
            inc = self._update(inc, record=inc.record.with_open(left))
            if own is None or inc.ref != own.ref:
                # A problem's draft may carry another incident's recovery: only that goes there.
                part = draft if draft.is_recovery else _recoveries(draft, ended)
                self._post(MessageKind.REPLY, inc, followup_doc(self.rules.cluster, part))
            if not left and inc.ref not in hosts:
                self._resolve(inc)
        if not touched and not quiet:
            self._note(f"recovery with no open incident: {draft.title}")

    def resolve_all(self) -> None:
        """Back to healthy: every open incident is over; a flapping one (and the incident whose
        thread it is told in) once it calmed; an approved fix's once its settle window is over."""
        found = self._open()
        hosts = _flap_hosts(found)
        for inc in found:
            if inc.key.startswith(FLAPPING):
                self.flaps = self.flaps.watch(self.flaps.calm_at(inc.key, self.mono))  # settle_flaps ends it
                continue
            if inc.ref not in hosts and not inc.key.startswith(FIX):
                self._resolve(inc)

    def _resolve(self, inc: IncidentView) -> None:
        done = self._end(inc)
        lasted = self.now - done.opened_at  # the root: the whole incident
        said = recovery_doc(self.rules.cluster, self.report, self._outage(done))
        if done.record.settling is self.report.healthy:  # "still wrong: …": told once it settled
            done = self._update(done, record=done.record.with_settling(not self.report.healthy))
        self._post(MessageKind.REPLY, done, said)
        self._post(MessageKind.EDIT, done,
                   resolved_doc(self.rules.cluster, done.title, done.severity, lasted))

    def settled(self) -> None:
        """The recovery tail: an incident that ended with "still wrong: …" (VIPs not yet home, a
        clone instance not yet started) hears in its thread that the whole cluster is healthy
        again, so its last word is not a problem nobody closed. Within flap_window_s of its end."""
        for inc in self._recent_all(self.rules.flap_window_s):
            if inc.open or not inc.record.settling:
                continue
            inc = self._update(inc, record=inc.record.with_settling(False))
            said = recovery_doc(self.rules.cluster, self.report, self._outage(inc))
            self._post(MessageKind.REPLY, inc, said)

    def _outage(self, inc: IncidentView) -> timedelta:
        """How long the thread's latest outage lasted: since the incident opened, or since it was
        last reopened (a reply's "after 8s" is that return's, not the whole flap's)."""
        return self.now - (inc.record.reopened_at or inc.opened_at)

    def open_initial(self) -> None:
        if self._find_open(INITIAL_KEY) is not None:
            return
        inc = self._new(INITIAL_KEY, self.report.severity or Severity.WARNING,
                        "unhealthy when clusterbot started watching", IncidentRecord.new())
        self.effects.append(Counted(inc.severity))
        self._post(MessageKind.ROOT, inc, initial_doc(self.report, mention=self.rules.mention))

    def first_view(self) -> None:
        """The first view after a start when no node answered. There is no earlier view to diff
        against, so nothing else would ever say what is wrong: the "unhealthy at start" incident
        says it now, in its root and thread, and pages when it turns out CRITICAL."""
        found = self._find_open(INITIAL_KEY)
        if found is None:
            return
        severity = self.report.severity or Severity.WARNING
        inc = self._update(found, severity=max(found.severity, severity))
        doc = initial_doc(self.report, mention=self.rules.mention, first_view=True)
        self._post(MessageKind.EDIT, inc, doc)
        self._post(MessageKind.REPLY, inc, doc)
        if severity is Severity.CRITICAL and found.severity < Severity.CRITICAL:
            self._post(MessageKind.ROOT, None, doc)  # a thread reply notifies nobody

    # -- flapping --------------------------------------------------------------------------

    def _quiet_for_flapping(self, draft: IncidentDraft) -> bool:
        """Count the toggle. A key flapping (or whose flapping incident is still open) stays quiet
        until it has not toggled for a whole window: then `settle_flaps` says how it ended. The
        draft's events are changes of conditions: `handle` keeps one-shots out of it."""
        found = self._find_open(FLAPPING + draft.key)
        verdict = toggle(self.flaps, draft, self.mono, None if found is None else found.record.silenced)
        self.flaps = verdict.clock
        if isinstance(verdict.effect, OpenFlap):
            self._open_flap(verdict.effect)
        elif isinstance(verdict.effect, Silence) and found is not None:
            self._update(found, record=found.record.with_silenced(set(verdict.effect.silenced)))
        return verdict.quiet

    def _open_flap(self, flap: OpenFlap) -> None:
        """Told in the thread of the incident that is flapping, when it has one: one cause, one
        incident. "latest": each silenced condition's latest change, kept by `track_flaps`."""
        host = self._find_open(flap.key) or self._reopened(self._recent(flap.key, flap.window))
        inc = self._new(FLAPPING + flap.key, Severity.WARNING, f"{flap.key} is flapping",
                        IncidentRecord.new(silenced=flap.silenced,
                                           host=host.ref if host is not None else None))
        doc = flapping_doc(self.rules.cluster, flap.key, flap.count, flap.window)
        kind = MessageKind.ROOT if host is None else MessageKind.REPLY
        self._post(kind, inc, doc, broadcast=host is not None)

    def _reopened(self, inc: IncidentView | None) -> IncidentView | None:
        """A resolved incident open again, its root back to what it was about (not struck out)."""
        if inc is None:
            return None
        inc = self._reopen(inc)
        root = self._root_draft(inc)
        if root is not None:
            self._post(MessageKind.EDIT, inc, RootStory(root, inc.ref))
        return inc

    def track_flaps(self, drafts: tuple[IncidentDraft, ...]) -> None:
        """Keep in each open flapping incident the latest change of every condition it silenced,
        quiet or alerted in another incident's draft: when the flap calms, that is how the condition
        is. Neither the picture from before the flap (an incident may have been resolved as healthy
        since) nor the quiet changes alone (another incident may have taken the last one) can say."""
        changes = [e for d in drafts for e in d.events if _condition_change(e)]
        if self.flaps.due is None or not changes:  # no flap open, or nothing it could silence
            return
        for inc in self._open():
            silenced = set(inc.record.silenced) if inc.key.startswith(FLAPPING) else set()
            mine = {e.key: e for e in changes if e.key in silenced}
            if mine:
                self._update(inc, record=inc.record.with_latest(mine))

    def settle_flaps(self) -> None:
        """End every flap that calmed (no toggle for a whole window)."""
        if not flap_due(self.flaps, self.mono):
            return
        flaps = {i.ref: i for i in self._open() if i.key.startswith(FLAPPING)}
        self.flaps, ended = calmed(self.flaps, ((i.ref, i.key) for i in flaps.values()), self.mono)
        for end in ended:
            self._end_flap(flaps[end.incident], end.calm)

    def _end_flap(self, inc: IncidentView, calm: timedelta) -> None:
        """What the flap left that no open incident says is alerted as if it had just happened (a
        problem gets its own incident, at its own severity); then the flapping incident ends in
        its thread, naming the incidents of what is still wrong."""
        silenced = set(inc.record.silenced)
        host = self._flap_host(inc, silenced)
        for draft in self._net_change(inc, silenced):
            self._deliver(draft, loud=True, host=host)
        if host is not None:
            host = self._incidents.get(host.ref)
            if host is not None and host.open and not host.record.open:
                self._resolve(host)
        name = self.rules.cluster
        still = tuple((i.key, i.title, i.severity) for i in self._open() if set(i.record.open) & silenced)
        done = self._end(inc)
        over = flap_over_doc(name, inc.key.removeprefix(FLAPPING), calm, self.report, still)
        self._post(MessageKind.REPLY, done, over)
        if done.host == done.ref:  # a hosted flap leaves the root to the incident it is told in
            self._post(MessageKind.EDIT, done,
                       resolved_doc(name, done.title, done.severity, self.now - done.opened_at))

    def _flap_host(self, inc: IncidentView, silenced: set[str]) -> IncidentView | None:
        """The incident a flap is told in. What it held before the flap is stale now: the flap's
        net change says how each silenced condition is."""
        host = self._incidents.get(inc.host) if inc.host != inc.ref else None
        if host is None or not host.open:
            return host
        left = [k for k in host.record.open if k not in silenced]
        return self._update(host, record=host.record.with_open(left))

    def _net_change(self, inc: IncidentView, silenced: set[str]) -> tuple[IncidentDraft, ...]:
        """Each condition the flap silenced, as its latest change left it, against the conditions
        open now: a problem no open incident holds is news (one that some incident holds is not
        news again), and so is a recovery of a condition an incident still holds. Moves and the
        like in between are history."""
        latest = {**self._since_before(inc), **inc.record.latest()}
        held = {key for i in self._open() for key in i.record.open}
        left = [e for e in latest.values() if e.key in silenced and _condition_change(e)
                and (e.recovery if e.key in held else e.problem)]
        return incidents(left)

    def _since_before(self, inc: IncidentView) -> dict[str, Event]:
        """A flap opened by an older clusterbot kept no latest changes, only the cluster before it:
        the changes from that picture to the cluster now stand in for them."""
        raw = inc.record.before
        if self.before is None or raw is None:
            return {}
        try:
            before = Snapshot.from_json(raw)
        except ValueError:
            self._note(f"the view before {inc.key} is unreadable; not comparing", warning=True)
            return {}
        return {e.key: e for e in diff(before, self.before)}


def _flap_hosts(found: Iterable[IncidentView]) -> set[Ref]:
    """The incidents open flaps are told in: they end with their flap."""
    return {i.host for i in found if i.key.startswith(FLAPPING)}


def _recoveries(draft: IncidentDraft, ended: set[str]) -> IncidentDraft:
    """The draft's recoveries that end `ended`: what another incident's thread needs to hear."""
    return draft.only(lambda e: e.recovery and e.key in ended) or draft


def _condition_change(event: Event) -> bool:
    """A condition going bad or good: what a flap silences and how it ends (not a move, not a fence,
    not a node's bounce between two polls: that is over when it is seen)."""
    bounced = event.kind is EventKind.NODE_BOUNCED
    return event.recovery or (event.problem and not event.one_shot and not bounced)
