"""Watch every cluster: poll, diff against the stored state, open, thread and resolve incidents.

The diff and the grouping are pure (bot/pacemaker/diff.py); this module owns the loop, the
store and the outbox. State lives in SQLite, so a restart repeats no open alert and reports
what changed while the bot was down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.collect import Ask
from bot.delivery import doc_json
from bot.metrics import Metrics
from bot.pacemaker.diff import Flapping, IncidentDraft, WatchState, incidents, step
from bot.pacemaker.health import Severity
from bot.pacemaker.merge import ClusterReport
from bot.render.alerts import (
    flapping_doc,
    followup_doc,
    incident_doc,
    initial_doc,
    recovery_doc,
    resolved_doc,
)
from bot.render.doc import Doc
from bot.settings import ClusterConfig, Settings
from bot.store import Incident, Store

log = logging.getLogger(__name__)
JITTER = 0.1  # the first pause is 10-100% of the interval: a random phase per cluster
INITIAL_KEY = "initial"


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
    _flaps: dict[str, Flapping] = field(default_factory=dict)
    # cluster -> monotonic time by which a flapping incident left open on a healthy report has calmed
    _flap_due: dict[str, float] = field(default_factory=dict)
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
        same = report is self._last.get(cluster.name)
        self._last[cluster.name] = report
        if same:
            drafts: tuple[IncidentDraft, ...] = ()
            self._settle_flapping(cluster, report)
        else:
            drafts = self.observe(cluster, report)
        self.polls += 1
        async with self._polled:
            self._polled.notify_all()
        return drafts

    async def wait_polls(self, n: int, timeout: float = 30.0) -> None:
        """Wait until n more polls have finished (tests and benchmarks; no sleeping)."""
        target = self.polls + n
        async with asyncio.timeout(timeout), self._polled:
            await self._polled.wait_for(lambda: self.polls >= target)

    def observe(self, cluster: ClusterConfig, report: ClusterReport) -> tuple[IncidentDraft, ...]:
        """Diff a fresh report against the stored state and turn the changes into messages."""
        first = cluster.name not in self._states and self._load(cluster.name) is None
        prev = self._states.get(cluster.name)
        state, events = step(prev, report, cluster.expectations,
                             unreachable_after=self.settings.unreachable_after)
        self._states[cluster.name] = state
        dumped = _dump(state)
        if dumped != self._saved.get(cluster.name):  # an fsync per poll is wasted when nothing changed
            self.store.save_watch_state(cluster.name, dumped)
            self._saved[cluster.name] = dumped
        if first and not report.healthy:
            self._open_initial(cluster, report)
        drafts = incidents(events)
        for draft in drafts:
            self._handle(cluster, draft)
        if report.healthy:
            self._resolve_all(cluster, report)
        self.notify()
        return drafts

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

    # -- incidents -------------------------------------------------------------------------

    def _handle(self, cluster: ClusterConfig, draft: IncidentDraft) -> None:
        if self._quiet_for_flapping(cluster, draft):
            return
        if draft.is_recovery:
            self._recover(cluster, draft)
        elif draft.opens:
            self._problem(cluster, draft)
        else:  # neutral news (a VIP moved, the DC changed, a fence): one message, nothing left open
            self._enqueue("root", cluster, None, incident_doc(cluster.name, draft))

    def _problem(self, cluster: ClusterConfig, draft: IncidentDraft) -> None:
        found = self.store.find_open_incident(cluster.name, draft.key)
        if found is not None:
            opened = sorted(set(_opened(found)) | set(draft.opens))
            self.store.update_incident(found.id, payload={**found.payload, "open": opened},
                                       severity=max(found.severity, draft.severity))
            self._enqueue("reply", cluster, found, followup_doc(cluster.name, draft))
            return
        inc = self.store.open_incident(
            cluster=cluster.name, key=draft.key, severity=draft.severity, title=draft.title,
            channel=self._channel(cluster), now=self.clock(), payload={"open": list(draft.opens),
                                                                      "remedy": _remedy(draft)})
        self._opened_metric(cluster, inc)
        doc = incident_doc(cluster.name, draft, incident_id=inc.id, mention=cluster.mention,
                           fix_button=self.fix_button)
        self._enqueue("root", cluster, inc, doc)

    def _recover(self, cluster: ClusterConfig, draft: IncidentDraft) -> None:
        closes = set(draft.closes)
        touched = [i for i in self.store.open_incidents(cluster.name) if set(_opened(i)) & closes]
        for inc in touched:
            left = sorted(set(_opened(inc)) - closes)
            self.store.update_incident(inc.id, payload={**inc.payload, "open": left})
            self._enqueue("reply", cluster, inc, followup_doc(cluster.name, draft))
            if not left:
                self._resolve(cluster, inc, None)
        if not touched:
            log.info("%s: recovery with no open incident: %s", cluster.name, draft.title)

    def _resolve_all(self, cluster: ClusterConfig, report: ClusterReport) -> None:
        """Back to healthy: every open incident is over (flapping ones once stable)."""
        for inc in self.store.open_incidents(cluster.name):
            if inc.key.startswith("flapping:") and self._still_flapping(cluster.name, inc.key):
                self._recheck_flapping(cluster.name, inc.key)
                continue
            self._resolve(cluster, inc, report)

    def _resolve(self, cluster: ClusterConfig, inc: Incident, report: ClusterReport | None) -> None:
        now = self.clock()
        done = self.store.resolve_incident(inc.id, now=now)
        if self.metrics is not None:
            self.metrics.incident_resolved(cluster.name)
        lasted = now - done.opened_at
        self._enqueue("reply", cluster, done, recovery_doc(cluster.name, report, lasted))
        self._enqueue("edit", cluster, done, resolved_doc(cluster.name, done.title, done.severity, lasted))

    def _open_initial(self, cluster: ClusterConfig, report: ClusterReport) -> None:
        if self.store.find_open_incident(cluster.name, INITIAL_KEY) is not None:
            return
        inc = self.store.open_incident(cluster=cluster.name, key=INITIAL_KEY,
                                       severity=report.severity or Severity.WARNING,
                                       title="unhealthy when clusterbot started watching",
                                       channel=self._channel(cluster), now=self.clock(),
                                       payload={"open": []})
        self._opened_metric(cluster, inc)
        self._enqueue("root", cluster, inc, initial_doc(report))

    def _opened_metric(self, cluster: ClusterConfig, inc: Incident) -> None:
        if self.metrics is not None:
            self.metrics.incident_opened(cluster.name, inc.severity)

    # -- flapping --------------------------------------------------------------------------

    def _quiet_for_flapping(self, cluster: ClusterConfig, draft: IncidentDraft) -> bool:
        now = self.monotonic()
        fresh = Flapping(limit=self.settings.flap_limit, window=self.settings.flap_window_s)
        flaps = self._flaps.get(cluster.name, fresh).record(draft.key, now)
        self._flaps[cluster.name] = flaps
        if not flaps.is_flapping(draft.key, now):
            return False
        key = f"flapping:{draft.key}"
        if self.store.find_open_incident(cluster.name, key) is None:
            inc = self.store.open_incident(cluster=cluster.name, key=key, severity=Severity.WARNING,
                                           title=f"{draft.key} is flapping", now=self.clock(),
                                           channel=self._channel(cluster), payload={"open": []})
            doc = flapping_doc(cluster.name, draft.key, flaps.count(draft.key, now), flaps.window)
            self._enqueue("root", cluster, inc, doc)
        return True

    def _still_flapping(self, name: str, key: str) -> bool:
        flaps = self._flaps.get(name)
        return flaps is not None and flaps.is_flapping(key.removeprefix("flapping:"), self.monotonic())

    def _recheck_flapping(self, name: str, key: str) -> None:
        """Remember when this flap is over at the latest: a window with no toggle since the last one."""
        flaps = self._flaps.get(name)
        last = flaps.stable_since(key.removeprefix("flapping:")) if flaps is not None else None
        if flaps is None or last is None:
            return
        due = last + flaps.window
        self._flap_due[name] = min(due, self._flap_due.get(name, due))

    def _settle_flapping(self, cluster: ClusterConfig, report: ClusterReport) -> None:
        """Resolve a flap that calmed down while the report stayed the same.

        poll() skips observe() for an unchanged report, and observe() is where incidents are
        resolved, so a healthy, stable cluster would keep its flapping incident open forever.
        Until one is due this costs one dict lookup per poll, no diff and no query.
        """
        due = self._flap_due.get(cluster.name)
        if due is None or self.monotonic() < due:
            return
        del self._flap_due[cluster.name]
        if report.healthy:  # else the next healthy report goes through observe(), which resolves it
            self._resolve_all(cluster, report)  # re-arms _flap_due for any flap still going on
            self.notify()

    # -- outbox ----------------------------------------------------------------------------

    def _channel(self, cluster: ClusterConfig) -> str:
        return cluster.alert_channel or self.settings.alert_channel or "alerts"

    def _enqueue(self, kind: str, cluster: ClusterConfig, inc: Incident | None, doc: Doc) -> None:
        payload: dict[str, Any] = {"doc": doc_json(doc), "channel": self._channel(cluster)}
        if inc is not None:
            payload["incident"] = inc.id
        self.store.enqueue(kind, payload, now=self.clock())


def _opened(inc: Incident) -> list[str]:
    value = inc.payload.get("open", [])
    return [str(v) for v in value] if isinstance(value, list) else []


def _remedy(draft: IncidentDraft) -> str | None:
    return str(draft.remedy) if draft.remedy else None


def _dump(state: WatchState) -> str:
    import json

    return json.dumps(state.to_json())


def _load_json(raw: str) -> Any:
    import json

    return json.loads(raw)
