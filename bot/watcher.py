"""Watch every cluster: poll, decide what changed (bot/watch/step.py), apply it.

Every decision about incidents is pure (bot/pacemaker/diff.py, bot/watch/); this module owns the
loop, the store and the outbox. A poll reads once what the decision needs (`_read`), hands it to
the step, and writes the step's effects in one transaction (`_apply`): a store error loses no
alert, the next poll sees the same change again. Both run on the store's thread (AsyncStore), never
on the event loop; the watcher's memory changes on the loop, once the write committed. State lives
in the database (SQLite or PostgreSQL), so a restart repeats no open alert and reports what
changed while the bot was down; a database outage only delays: the memory stays as the last
committed poll left it, and the first poll after it reports what changed meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bot.collect import Ask
from bot.delivery import doc_json
from bot.errors import StoreUnavailable
from bot.metrics import Metrics
from bot.pacemaker.diff import IncidentDraft, WatchState
from bot.pacemaker.merge import ClusterReport
from bot.render.alerts import incident_doc
from bot.settings import ClusterConfig, Settings
from bot.store import AsyncStore, Incident, IncidentState, Store
from bot.watch import effects as fx
from bot.watch import step
from bot.watch.fixes import Fix
from bot.watch.lifecycle import FLAPPING
from bot.watch.records import IncidentRecord, New, Ref
from bot.watch.step import INITIAL_KEY, Known, Memory, Rules

__all__ = ["FLAPPING", "INITIAL_KEY", "Watcher"]

log = logging.getLogger(__name__)
JITTER = 0.1  # the first pause is 10-100% of the interval: a random phase per cluster


@dataclass
class Watcher:
    settings: Settings
    collect: Callable[..., Any]  # async (cluster, *, ask) -> ClusterReport
    store: AsyncStore
    clock: Callable[[], datetime]
    notify: Callable[[], None] = lambda: None  # wakes the deliverer after enqueueing
    fix_button: bool = False
    monotonic: Callable[[], float] = time.monotonic
    metrics: Metrics | None = None
    _memory: dict[str, Memory] = field(default_factory=dict)  # as the last committed poll left it
    _saved: dict[str, str] = field(default_factory=dict)
    _last: dict[str, ClusterReport] = field(default_factory=dict)
    _wake: dict[str, asyncio.Event] = field(default_factory=dict)
    _polled: asyncio.Condition = field(default_factory=asyncio.Condition)
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
            except StoreUnavailable as err:  # an outage: one line a poll, the change is news next poll
                log.warning("poll of %s not recorded: %s", cluster.name, err)
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
        name = cluster.name
        decide = step.needed(self._memory.get(name), report is self._last.get(name), self.clock(),
                             self.monotonic(), self.settings.settle_s)
        drafts: tuple[IncidentDraft, ...] = ()
        if decide is not None:
            drafts = await self._decide(decide, cluster, report)
            # Only once decided and committed: a report whose writes failed is news next poll too.
            self._last[name] = report
        self.polls += 1
        async with self._polled:
            self._polled.notify_all()
        return drafts

    async def wait_polls(self, n: int, timeout: float = 30.0) -> None:
        """Wait until n more polls have finished (tests and benchmarks; no sleeping)."""
        target = self.polls + n
        async with asyncio.timeout(timeout), self._polled:
            await self._polled.wait_for(lambda: self.polls >= target)

    async def observe(self, cluster: ClusterConfig, report: ClusterReport) -> tuple[IncidentDraft, ...]:
        """Diff a fresh report against the stored state and turn the changes into messages."""
        return await self._decide(step.observe, cluster, report)

    async def _decide(self, decide: step.Decide, cluster: ClusterConfig,
                      report: ClusterReport) -> tuple[IncidentDraft, ...]:
        now, rules, name = self.clock(), self._rules(cluster), cluster.name
        remembered = self._memory.get(name)
        stored, known = await self.store.call(lambda db: _read(db, name, rules, now, remembered is None))
        memory = remembered or Memory(_parse_state(name, stored))
        done = decide(memory, report, known, rules, now, self.monotonic())
        await self._apply(cluster, done, now)
        return done.drafts

    def _rules(self, cluster: ClusterConfig) -> Rules:
        s = self.settings
        return Rules(cluster.name, cluster.alert_channel or s.alert_channel or "alerts", cluster.mention,
                     tuple(n.name for n in cluster.nodes), cluster.expectations, s.settle_s, s.flap_limit,
                     s.flap_window_s, s.unreachable_after)

    # -- the store: one read and one write per poll ----------------------------------------

    async def _apply(self, cluster: ClusterConfig, done: step.Step, now: datetime) -> None:
        """The step's effects, in order, as one transaction; the watcher's memory, the metrics and
        the deliverer follow once it committed."""
        name = cluster.name
        saved = self._saved.get(name)
        dumped = await self.store.transaction(lambda db: self._write_all(db, cluster, done, saved, now))
        self._memory[name] = done.memory
        if dumped is not None:
            self._saved[name] = dumped
        if self.metrics is not None:
            for effect in done.effects:
                if isinstance(effect, fx.Counted) and effect.opened is not None:
                    self.metrics.incident_opened(name, effect.opened)
                elif isinstance(effect, fx.Counted):
                    self.metrics.incident_resolved(name)
        self.notify()

    def _write_all(self, store: Store, cluster: ClusterConfig, done: step.Step, saved: str | None,
                   now: datetime) -> str | None:
        """On the store's thread, inside the poll's transaction: every effect; the state saved."""
        ids, dumped = _Ids(), None
        for effect in done.effects:
            if isinstance(effect, fx.SaveState):
                dumped = json.dumps(effect.state.to_json())
                if dumped != saved:  # an fsync per poll is wasted when nothing changed
                    store.save_watch_state(cluster.name, dumped)
            else:
                self._write(store, cluster, effect, ids, now)
        return dumped

    def _write(self, store: Store, cluster: ClusterConfig, effect: fx.Effect, ids: _Ids,
               now: datetime) -> None:
        if isinstance(effect, fx.OpenIncident):
            inc = store.open_incident(cluster=cluster.name, key=effect.key, severity=effect.severity,
                                      title=effect.title, channel=effect.channel, now=effect.at,
                                      payload=ids.payload(effect.record))
            ids.new[effect.ref] = inc.id
        elif isinstance(effect, fx.UpdateIncident):
            store.update_incident(ids(effect.ref), severity=effect.severity, title=effect.title,
                                  payload=None if effect.record is None else ids.payload(effect.record))
        elif isinstance(effect, fx.ReopenIncident):
            store.reopen_incident(ids(effect.ref))
        elif isinstance(effect, fx.ResolveIncident):
            store.resolve_incident(ids(effect.ref), now=effect.at)
        elif isinstance(effect, fx.Post):
            self._enqueue(store, cluster, effect, ids, now)
        elif isinstance(effect, fx.Note):
            log.log(logging.WARNING if effect.warning else logging.INFO, "%s", effect.message)

    def _enqueue(self, store: Store, cluster: ClusterConfig, post: fx.Post, ids: _Ids,
                 now: datetime) -> None:
        doc = post.doc
        if isinstance(doc, fx.RootStory):  # its fix button names the incident, known only now
            doc = incident_doc(cluster.name, doc.draft, incident_id=ids(doc.incident),
                               mention=cluster.mention, fix_button=self.fix_button)
        payload: dict[str, Any] = {"doc": doc_json(doc), "channel": post.channel}
        if post.incident is not None:
            payload["incident"] = ids(post.incident)
        if post.thread is not None:
            payload["thread"] = post.thread
        if post.broadcast:
            payload["broadcast"] = True
        store.enqueue(post.kind, payload, now=now)


@dataclass
class _Ids:
    """The ids the store gave the incidents a step opened (`New` refs), as they are written."""

    new: dict[New, int] = field(default_factory=dict)

    def __call__(self, ref: Ref) -> int:
        return ref if isinstance(ref, int) else self.new[ref]

    def payload(self, record: IncidentRecord) -> dict[str, object]:
        host = record.host
        return record.payload if host is None else {**record.payload, "host": self(host)}


def _read(store: Store, name: str, rules: Rules, now: datetime,
          with_state: bool) -> tuple[str | None, Known]:
    """On the store's thread: all the step needs from the store. The cluster's stored state (only
    after a start: otherwise the memory has it), the incidents open or ended within the look-back
    plus those open flaps are told in, and the approved fixes acting now or within the settle window."""
    stored = store.load_watch_state(name) if with_state else None
    since = now - timedelta(seconds=rules.lookback_s)
    found = store.recent_incidents(name, since)
    found += [h for h in map(store.get_incident, step.hosts_missing(map(_view, found))) if h is not None]
    since = now - timedelta(seconds=rules.settle_s)
    fixes = tuple(Fix(r.id, r.action, r.args, r.node, r.channel, r.message_ts, ended)
                  for r, ended in store.acting_requests(name, since))
    return stored, Known(tuple(_view(i) for i in sorted(found, key=lambda i: i.id)), fixes)


def _parse_state(name: str, raw: str | None) -> WatchState | None:
    if raw is None:
        return None
    try:
        return WatchState.from_json(json.loads(raw))
    except ValueError:
        log.warning("stored watch state of %s is unreadable; starting afresh", name)
        return None


def _view(inc: Incident) -> fx.IncidentView:
    return fx.IncidentView(inc.id, inc.key, inc.state is IncidentState.OPEN, inc.severity, inc.title,
                           inc.opened_at, inc.resolved_at, IncidentRecord(inc.payload))
