"""The watcher as a state machine: random but realistic poll sequences, with the invariants an on-call
SRE relies on checked after every poll.

The reports are built from the real Pacemaker 2.1.5 captures (whole scenarios, one node lagging behind
the others, nodes silent over SSH, Pacemaker down everywhere) with a few edits on top (a VIP or a clone
stopped, node states, fencings that succeed or fail). They reach `Watcher.poll()` through its collect
callable, as the same object when nothing changed (the collector's contract) or as a new one; the clock
jumps at random; the watcher restarts on the same SQLite file. The test plays the deliverer: it takes
what each poll queued from the store's outbox.

"Condition" is the watcher's own notion (bot/pacemaker/diff.py): the `key` of a problem that is not a
one-shot, which an incident holds ("open") until its recovery closes it. The conditions present after
a poll are read off the stored WatchState: its settled view diffed against the healthy capture, plus
the node and cluster reachability verdicts.

By default 150 examples of up to 20 steps: about 30-55 s on 2 cores, its share of the unit suite.
For a longer hunt, raise them through the environment (-rP shows what the examples exercised):
    WATCHER_SM_EXAMPLES=600 WATCHER_SM_STEPS=30 .venv/bin/python -m pytest -q -p no:cacheprovider -rP \\
        tests/unit/test_watcher_stateful.py
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test

from bot.collect import Ask, Collector
from bot.pacemaker.diff import EventKind, WatchState, diff
from bot.pacemaker.health import Severity
from bot.pacemaker.merge import ClusterReport
from bot.pacemaker.model import FenceEvent, NodeView
from bot.pacemaker.snapshot import Snapshot, snapshot
from bot.settings import ClusterConfig, Settings
from bot.store import AsyncStore, Incident, Store
from bot.watcher import FLAPPING, INITIAL_KEY, Watcher
from tests.fakes.replay import ReplayPool, VClock
from tests.fakes.sequences import load, names
from tests.fakes.stores import SyncView
from tests.unit.test_diff import pacemaker_down_everywhere, report, with_node
from tests.unit.test_watcher_incidents import CLUSTER, MENTION, Clock, clone_down_on, compose, vip2_stopped

EXAMPLES = int(os.environ.get("WATCHER_SM_EXAMPLES", "150"))
STEPS = int(os.environ.get("WATCHER_SM_STEPS", "20"))

NAME = CLUSTER.name
SETTINGS = Settings(clusters=(CLUSTER,))
WINDOW = SETTINGS.flap_window_s
# a_healthy three times: a cluster is healthy most of the time, and recoveries need a healthy report.
SCENARIOS = ("a_healthy", "a_healthy", "a_healthy", "b_standby", "b2_unstandby", "c_node3_crashed",
             "d_two_nodes_down", "e_failed_actions", "e2_after_cleanup", "f2_cluster_maintenance",
             "g1_node2_back")
Change = Callable[[NodeView], NodeView]


def fence_at(status: str, attempt: int) -> Change:
    """node3's reboot, `status`, completed at one of a few distinct times (a new fencing each)."""
    done = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=40 * attempt)
    reason = "timed out" if status == "failed" else None
    return lambda v: replace(v, fence_history=(FenceEvent("reboot", "node3", status, exit_reason=reason,
                                                          completed=done),))


def fence_failures(attempts: int) -> Change:
    """A fence device failing retry after retry: several failed fencings in one history."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    history = tuple(FenceEvent("reboot", "node3", "failed", exit_reason="timed out",
                               completed=start + timedelta(seconds=40 * i)) for i in range(attempts))
    return lambda v: replace(v, fence_history=history)


MODS: dict[str, Change] = {
    "vip2_stopped": vip2_stopped,
    "clone_down_on_node1": clone_down_on("node1"),
    "clone_down_on_node3": clone_down_on("node3"),
    "node3_offline": with_node("node3", online=False),
    "node3_unclean": with_node("node3", online=False, unclean=True),
    "node1_standby": with_node("node1", standby=True),
    "node2_maintenance": with_node("node2", maintenance=True),
    "fence_ok_0": fence_at("success", 0),
    "fence_ok_1": fence_at("success", 1),
    "fence_failed_0": fence_at("failed", 0),
    "fence_failed_1": fence_at("failed", 1),
    "fence_failed_x3": fence_failures(3),
}

# A report: (scenario per node, edits, nodes silent over SSH); "ALL_DOWN": Pacemaker down everywhere.
Spec = tuple[tuple[str, str, str] | str, tuple[str, ...], tuple[str, ...]]
HEALTHY: Spec = (("a_healthy",) * 3, (), ())


# Conditions this machine cannot know are over from a report alone: the captures carry no Corosync
# view (a recording's member loss or link is not diffed against them), and a node's bounce between
# two polls is over when it is seen (its incident ends when the cluster is healthy).
UNKNOWN_HERE = frozenset({EventKind.MEMBER_LOST, EventKind.LINK_DOWN, EventKind.COROSYNC_QUORUM_LOST,
                          EventKind.NODE_BOUNCED})
RECORDED = tuple(n for n in names() if load(n).kind == "pacemaker")


@cache
def recorded_report(name: str, t: float) -> ClusterReport:
    """What the real collector makes of every node's recorded answers at t (a fresh object: the
    watcher diffs it like any new report)."""
    seq = load(name)
    collector = Collector(pool=ReplayPool(seq, VClock(t)), settings=SETTINGS, now=VClock(t).now)  # type: ignore[arg-type]
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(collector.collect(CLUSTER, ask=Ask.ALL))
    finally:
        loop.close()


def build(spec: Spec) -> ClusterReport:
    """A fresh report object (the collector hands back a new object whenever something changed)."""
    scen, mods, silent = spec
    if scen == "ALL_DOWN":
        return pacemaker_down_everywhere()
    change = compose(*(MODS[m] for m in mods)) if mods else None
    return report(scen, change, **{n: "ssh: timed out" for n in silent})


same3 = st.sampled_from(SCENARIOS).map(lambda s: (s, s, s))
lagging = st.tuples(st.sampled_from(SCENARIOS), st.sampled_from(SCENARIOS), st.integers(0, 2)).map(
    lambda t: tuple(t[1] if i == t[2] else t[0] for i in range(3)))  # one node's view differs
specs: st.SearchStrategy[Spec] = st.tuples(
    st.one_of(same3, same3, same3, lagging, st.just("ALL_DOWN")),
    st.lists(st.sampled_from(sorted(MODS)), max_size=2, unique=True).map(tuple),
    st.sampled_from([(), (), (), (), ("node3",), ("node1",)]),
)
# Mostly the poll interval; sometimes a slow poll; sometimes about a flap window or more (a pause).
ticks = st.one_of(st.just(5.0), st.just(5.0), st.floats(1, 120), st.floats(WINDOW - 5, WINDOW * 3))


@cache
def _healthy_base() -> Snapshot:
    return snapshot(report("a_healthy"), CLUSTER.expectations)


def conditions(state: WatchState | None) -> set[str]:
    """The conditions the watcher tracks that hold now: every non-one-shot problem key between the
    healthy capture and the last settled view, plus the reachability verdicts."""
    if state is None:
        return set()
    found: set[str] = set()
    if state.last is not None:
        found |= {e.key for e in diff(_healthy_base(), state.last) if e.problem and not e.one_shot}
    found |= {f"{EventKind.NODE_UNREACHABLE}:{n}" for n in state.unreachable}
    if state.no_view_said:
        found.add(f"{EventKind.CLUSTER_UNREACHABLE}:cluster")
    return found


def failed_fencings(rep: ClusterReport) -> frozenset[FenceEvent]:
    """The failed fencings the report shows. Every connected view carries the same fence history
    (the edits apply to each alike; the captures have none), so the reference view's is the report's."""
    if rep.reference is None:
        return frozenset()
    return frozenset(f for f in rep.reference.fence_history if f.status == "failed")


def strings(inc: Incident, field: str) -> list[str]:
    """A list of keys the watcher keeps in an incident's payload ("open", "silenced")."""
    value = inc.payload.get(field, [])
    assert isinstance(value, list), f"{inc.key}: {field} is {value!r}"
    return [str(v) for v in value]


@dataclass(frozen=True, slots=True)
class Message:
    kind: str  # "root", "reply", "edit"
    incident: int | None
    text: str  # the verdict line: what Slack shows first
    broadcast: bool = False  # a thread reply also sent to the channel

    @property
    def pages(self) -> bool:
        return (self.kind == "root" or self.broadcast) and MENTION in self.text


def _remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


class WatcherMachine(RuleBasedStateMachine):
    def __init__(self, db: Path, seen: Counter[str]) -> None:
        super().__init__()
        self.db = db
        self.seen = seen  # what the examples exercised, counted once per example
        self.exercised: set[str] = set()
        _remove_db(db)  # a fresh database per example, even if the last one's teardown fell short
        self.clock = Clock()
        self.loop = asyncio.new_event_loop()
        self.current: ClusterReport | None = None
        self.spec: Spec | None = None
        self.known: ClusterReport | None = None  # what the running watcher last polled (None after restart)
        self.shown_failed: frozenset[FenceEvent] = frozenset()  # in the last report with a view
        self.fencings_failed = 0  # failed fencings a report showed that the last view did not
        self.critical: set[int] = set()  # incidents that reached CRITICAL (severity never goes down)
        self.rooted: set[int] = set()
        self.pages = 0
        self.flap_end_pages = 0
        self.ever_silenced: set[str] = set()
        self.first_seen: set[str] | None = None  # conditions continuously present since first sight
        self.settling: set[str] = set()  # conditions the settling core holds back after this poll
        self.log: list[str] = []
        self.decoded: tuple[str | None, WatchState | None, frozenset[str]] = (None, None, frozenset())
        self.store = SyncView(AsyncStore(db))
        self.watcher = self._watcher()

    def _watcher(self) -> Watcher:
        async def collect(cluster: ClusterConfig, *, ask: Ask) -> ClusterReport:
            assert self.current is not None
            return self.current

        return Watcher(settings=SETTINGS, collect=collect, store=self.store.store, clock=self.clock.now,
                       monotonic=self.clock.monotonic)

    def teardown(self) -> None:
        self.seen.update(self.exercised)
        self.store.close()
        self.loop.close()
        _remove_db(self.db)

    # ------------------------------------------------------------ reading the store

    def deliver(self) -> list[Message]:
        """What the last poll queued, in order; marked delivered like the deliverer would, so that
        the next poll reads only its own."""
        now = self.clock.now()
        items = self.store.due(now, limit=10_000)

        def mark(db: Store) -> None:
            with db.transaction():
                for item in items:
                    db.mark_delivered(item.id, "ts", now=now)
        self.store.store.blocking(mark)
        out = []
        for item in items:
            inc, doc = item.payload.get("incident"), item.payload["doc"]
            assert (inc is None or isinstance(inc, int)) and isinstance(doc, dict)
            out.append(Message(item.kind, inc, str(doc["verdict"]), bool(item.payload.get("broadcast"))))
        return out

    def stored_state(self) -> tuple[WatchState | None, frozenset[str]]:
        """The watcher's state as stored, and the conditions it says hold. Decoding it is slow (type
        hints per dataclass) and most polls leave it as it was: decoded again only once it changed."""
        raw = self.store.load_watch_state(NAME)
        if raw != self.decoded[0]:
            state = None if raw is None else WatchState.from_json(json.loads(raw))
            self.decoded = (raw, state, frozenset(conditions(state)))
        return self.decoded[1], self.decoded[2]

    def open_incidents(self) -> list[Incident]:
        return self.store.open_incidents(NAME)

    # ------------------------------------------------------------ one poll and its checks

    def poll(self, spec: Spec | None, dt: float, recorded: ClusterReport | None = None) -> None:
        self.clock.tick(dt)
        if spec is not None:
            self.current, self.spec = build(spec), spec
        if recorded is not None:
            self.current = recorded
        assert self.current is not None
        rep = self.current
        same = rep is self.known  # the collector's "nothing new": the watcher skips the diff
        prev_state, _ = self.stored_state()
        flaps_before = {i.id for i in self.open_incidents() if i.key.startswith(FLAPPING)}
        self.loop.run_until_complete(self.watcher.poll(CLUSTER))
        self.known = rep
        new = self.deliver()
        if rep.has_view:
            failed = failed_fencings(rep)
            self.fencings_failed += len(failed - self.shown_failed)
            self.shown_failed = failed
        self.log.append(f"t={self.clock.mono:.0f} same={same} healthy={rep.healthy} "
                        f"new={[(m.kind, m.incident, m.text[:90]) for m in new]}")
        state, now = self.stored_state()
        # Conditions present since the cluster was first seen (or first seen with a view, after a blind
        # start) were never news: the "initial" incident stands for them as long as they last.
        if prev_state is None or (prev_state.last is None and state is not None and state.last is not None):
            self.first_seen = set(now) | (self.first_seen or set())
        elif self.first_seen is not None:
            self.first_seen &= now
        incs = self.open_incidents()
        ended_flaps = flaps_before - {i.id for i in incs}
        self.settling = {h.event.key for h in state.settling.held} if state is not None else set()
        before = {h.event.key for h in prev_state.settling.held} if prev_state is not None else set()
        released = bool(before - self.settling)
        self.check(now, new, incs, same=same, ended_flaps=ended_flaps | ({-1} if released else set()))
        for m in new:
            if "is flapping" in m.text:
                self.exercised.add("flap opened")
            elif "has not changed for" in m.text:
                self.exercised.add("flap ended" + (" (same report)" if same else ""))
            elif "escalated to" in m.text:
                self.exercised.add("escalation")
            elif "was already unhealthy" in m.text:
                self.exercised.add("initial incident")
            elif "FAILED" in m.text and m.pages:
                self.exercised.add("failed fencing paged")

    def check(self, now: frozenset[str], new: list[Message], incs: list[Incident], *, same: bool,
              ended_flaps: set[int]) -> None:
        assert self.current is not None
        rep = self.current
        flaps = [i for i in incs if i.key.startswith(FLAPPING)]
        plain = [i for i in incs if not i.key.startswith(FLAPPING)]
        initial = next((i for i in incs if i.key == INITIAL_KEY), None)
        held: dict[str, list[str]] = {}
        for i in plain:
            for k in strings(i, "open"):
                held.setdefault(k, []).append(i.key)
        silenced = {k for i in flaps for k in strings(i, "silenced")}
        # A flap is never opened and ended in one poll, so what open flaps silence, seen after every
        # poll, is everything any flap ever silenced.
        self.ever_silenced |= silenced
        story = "\n".join(self.log[-12:])
        opened = [(i.key, strings(i, "open")) for i in incs]

        # 1. every condition is held by an open incident, a flap silencing it, the settling core
        #    (a derived finding waiting, at most settle_s, for Pacemaker to finish), or "initial"
        for cond in sorted(now):
            ok = cond in held or cond in silenced or cond in self.settling or (
                initial is not None and self.first_seen is not None and cond in self.first_seen)
            assert ok, f"condition {cond} held by no open incident; open={opened}\n{story}"
        # 2. no condition held by two open incidents, except one a flap has silenced. That is by
        #    design (see `_double_hold` below): a flap stays quiet, so the incident that held its key
        #    before keeps the condition, not knowing it came and went; a later problem grouped under
        #    another key (a quorum loss absorbs every node going offline) opens it in its own incident
        #    too. Each thread tells its own story, and once the flap calms, a recovery of the condition
        #    closes it in every incident holding it.
        for cond, keys in held.items():
            if len(keys) > 1 and cond in self.ever_silenced:
                self.exercised.add("double hold after a flap")
            else:
                assert len(keys) == 1, f"{cond} held by {keys}\n{story}"
        # 3. healthy and no flap open: nothing open
        if rep.healthy and not flaps:
            assert not incs, f"healthy but open: {opened}\n{story}"
        # 4. replies and edits go to an incident whose root was queued before; 7. one root per
        #    incident (across restarts too: the outbox is the store's)
        for m in new:
            about = f"{m.kind} about incident {m.incident}: {m.text}\n{story}"
            if m.kind == "root" and m.incident is not None:
                assert m.incident not in self.rooted, f"second root: {about}"
                self.rooted.add(m.incident)
            elif m.kind in ("reply", "edit"):
                assert m.incident in self.rooted, f"no root before: {about}"
        # 5. no "healthy again" while unhealthy
        for m in new:
            assert rep.healthy or "healthy again" not in m.text, f"healthy while unhealthy: {m.text}\n{story}"
        # 6. the same report polled again queues nothing, unless a flap that was open calmed and ended
        #    in this poll, or a held finding outlived its settle time (and what is left is news then)
        if same and not ended_flaps:
            assert not new, f"unchanged report queued {new}\n{story}"
        # 8. a page is the first alarm of an incident at CRITICAL (opened so, or escalated to it; the
        #    severity never goes down, so once per incident) or a failed fencing new in this poll.
        #    Incidents touched in this poll are the open ones and those its messages went to.
        for inc_id in {i.id for i in incs} | {m.incident for m in new if m.incident is not None}:
            inc = self.store.get_incident(inc_id)
            if inc is not None and inc.severity is Severity.CRITICAL:
                self.critical.add(inc_id)
        self.pages += sum(m.pages for m in new)
        if ended_flaps - {-1}:
            # Issue 14: a flap is told in its key's own incident, so a flap that calms with the
            # condition still CRITICAL pages in that incident again (the channel heard nothing for
            # a whole calm window): once per flap.
            self.flap_end_pages += min(1, sum(m.pages for m in new))
        bound = len(self.critical) + self.fencings_failed + self.flap_end_pages
        assert self.pages <= bound, (f"{self.pages} pages > {len(self.critical)} incidents at CRITICAL"
                                     f" + {self.fencings_failed} failed fencings\n{story}")
        # 9. an open incident (but "initial", flaps and the incidents flaps are told in) holds some
        #    condition
        hosts = {i.payload.get("host") for i in flaps}
        for i in plain:
            assert i.key == INITIAL_KEY or i.id in hosts or strings(i, "open"), \
                f"{i.key} open holding nothing\n{story}"
        # 10. no ghost: what an open incident holds is a condition now or silenced by a flap (without a
        #     view nothing is known to be better, so there is nothing to check)
        if rep.has_view:
            for cond, keys in held.items():
                last = self.stored_state()[0]
                unknown = cond == f"{EventKind.QUORUM_LOST}:cluster" and last is not None and \
                    last.last is not None and last.last.quorate is None  # a view without a DC says nothing
                if cond.split(":")[0] in UNKNOWN_HERE or unknown:
                    continue
                assert cond in now or cond in silenced, f"{keys} still holds {cond}, which is over\n{story}"

    # ------------------------------------------------------------ rules

    @initialize(spec=st.one_of(st.just(HEALTHY), specs))  # healthy at first sight, often
    def first(self, spec: Spec) -> None:
        self.log.append(f"first {spec}")
        self.poll(spec, 5.0)

    @rule(spec=specs, dt=ticks)
    def new_report(self, spec: Spec, dt: float) -> None:
        self.log.append(f"new {spec} dt={dt:.0f}")
        self.poll(spec, dt)

    @rule(mod=st.sampled_from(sorted(MODS)), dt=ticks)
    def one_change(self, mod: str, dt: float) -> None:
        """One edit made or undone, the rest as it was: how a cluster usually moves, and what makes an
        open incident worse (node3 offline, then its fencing fails) or recover in part."""
        assert self.spec is not None
        scen, mods, silent = self.spec
        mods = tuple(m for m in mods if m != mod) if mod in mods else (*mods, mod)
        self.log.append(f"one change {mod} dt={dt:.0f}")
        self.poll((scen, mods, silent), dt)

    @rule(a=specs, b=specs, n=st.integers(2, 7))
    def toggle(self, a: Spec, b: Spec, n: int) -> None:
        """Two states alternating every poll: what makes a key flap."""
        self.log.append(f"toggle {n}x {a} <-> {b}")
        for i in range(n):
            self.poll(a if i % 2 == 0 else b, 5.0)

    @rule(name=st.sampled_from(RECORDED), phase=st.floats(0, 1), every=st.sampled_from([1.0, 5.0]),
          start=st.floats(0, 1), length=st.floats(0.2, 1))
    def recorded(self, name: str, phase: float, every: float, start: float, length: float) -> None:
        """A stretch of a recorded lab sequence (tests/fixtures/sequences), polled every `every`
        seconds: the real timing of a failure (links before membership, resources one by one)."""
        seq = load(name)
        t = start * seq.duration + phase * every
        end = min(seq.duration, t + length * seq.duration, t + 20 * every)  # a bounded stretch
        self.log.append(f"recorded {name} {t:.2f}..{end:.2f} every {every:g}s")
        self.exercised.add("recorded sequence")
        while t <= end:
            self.poll(None, every, recorded=recorded_report(name, round(t * 4) / 4))
            t += every

    @rule(dt=ticks)
    def same_report(self, dt: float) -> None:
        self.log.append(f"same dt={dt:.0f}")
        self.poll(None, dt)

    @rule(n=st.integers(1, int(WINDOW // 5) + 5), fresh=st.booleans())
    def hold(self, n: int, fresh: bool) -> None:
        """The cluster stays as it is for n polls (5 s apart; up to past a flap window), as the same
        object or as new copies."""
        self.log.append(f"hold {n}x fresh={fresh}")
        for _ in range(n):
            self.poll(self.spec if fresh else None, 5.0)

    @rule(dt=st.floats(WINDOW, WINDOW * 5))
    def jump(self, dt: float) -> None:
        self.log.append(f"jump {dt:.0f}s (no poll)")
        self.clock.tick(dt)

    @rule()
    def restart(self) -> None:
        self.log.append("restart")
        if any(i.key.startswith(FLAPPING) for i in self.open_incidents()):
            self.exercised.add("restart with a flap open")
        self.store.close()
        self.store = SyncView(AsyncStore(self.db))
        self.watcher = self._watcher()
        self.known = None  # a new watcher has polled nothing: the same report object is news to it


@pytest.fixture
def db_dir(tmp_path: Path) -> Iterator[Path]:
    """/dev/shm when there is one: every poll commits with synchronous=FULL, and on a disk the fsyncs
    would take most of the run."""
    if not os.path.isdir("/dev/shm"):
        yield tmp_path
        return
    path = Path(tempfile.mkdtemp(prefix="watcher-sm-", dir="/dev/shm"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_the_watcher_keeps_its_invariants_over_random_poll_sequences(db_dir: Path) -> None:
    seen: Counter[str] = Counter()
    run_state_machine_as_test(
        # Any factory will do (as documented); the annotation says a class.
        lambda: WatcherMachine(db_dir / "state.db", seen),  # type: ignore[arg-type]
        # too_slow: an example polls up to a few hundred times, on purpose. filter_too_much: the
        # rules are drawn through a filter (Hypothesis turns some off per example), which may retry.
        settings=settings(max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
    print(f"examples exercising: {dict(seen.most_common())}")  # shown with -s or -rP
    # Invariants checked on sequences that never flap or page would prove little. Each of these shows
    # up in a tenth of the examples or more, so 100 examples missing one means the generator broke.
    if EXAMPLES >= 100:
        wanted = {"flap opened", "flap ended", "escalation", "initial incident", "failed fencing paged",
                  "recorded sequence"}
        missing = wanted - {k.removesuffix(" (same report)") for k in seen}
        assert not missing, f"no example exercised {missing}: {dict(seen)}"


# ---------------------------------------------------------------- what the machine found so far

H3 = ("a_healthy",) * 3
DOWN2 = ("d_two_nodes_down",) * 3


def _view_and_quorum_back_together(m: WatcherMachine) -> None:
    """Pacemaker back everywhere regains the view and the quorum in one poll: this once left an empty
    incident draft that raised on every poll of the cluster from then on (fixed in diff.incidents)."""
    m.first(HEALTHY)
    m.toggle(a=(DOWN2, (), ()), b=("ALL_DOWN", (), ()), n=2)
    m.new_report(HEALTHY, 5.0)
    m.hold(3, fresh=True)


def _double_hold(m: WatcherMachine) -> None:
    """node3 flaps, then the quorum is lost: node_offline:node3 is held by node:node3 and by quorum."""
    m.first(HEALTHY)
    m.toggle(a=HEALTHY, b=HEALTHY, n=2)
    m.toggle(a=("ALL_DOWN", (), ()), b=HEALTHY, n=3)
    m.toggle(a=(H3, ("clone_down_on_node1", "fence_failed_0"), ()), b=(("c_node3_crashed", *H3[1:]), (), ()),
             n=4)
    m.toggle(a=(H3, (), ("node3",)), b=(DOWN2, (), ()), n=2)
    m.hold(int(WINDOW // 5) + 2, fresh=False)  # until the flap has calmed and ended


def _blind_start(m: WatcherMachine) -> None:
    """No node answers at first sight; the first view shows a stopped VIP (the "initial" incident says it)."""
    m.first((H3, (), ("node1", "node2", "node3")))
    m.new_report((H3, ("vip2_stopped",), ()), 5.0)
    m.hold(5, fresh=True)
    m.new_report(HEALTHY, 5.0)


def _reopened_with_a_stale_bounce(m: WatcherMachine) -> None:
    """node3's cluster stop and start; node2 bounces in its recovery tail (node3's incident takes it:
    which node bounced is a guess) and that incident ends with the cluster healthy, still listing the
    bounce (nothing diffs a bounce's end). node2 is lost and bounces again (its own incident holds
    it), then node3 flaps: node3's incident, reopened to tell the flap, held node2's old bounce too."""
    m.first(HEALTHY)
    m.recorded("cluster_stop_start", phase=0.0, every=1.0, start=0.0, length=0.7108392851866847)
    m.recorded("cluster_stop_start", phase=0.0, every=1.0, start=0.0, length=0.21875)
    m.recorded("cluster_stop_start", phase=0.0, every=1.0, start=0.4440052757426588, length=0.25)
    m.recorded("flapping_node", phase=0.21875, every=5.0, start=0.09356698824371158,
               length=0.2913592214183696)
    m.recorded("flapping_node", phase=0.0, every=1.0, start=0.0, length=0.2601528228992647)
    m.recorded("cluster_stop_start", phase=0.9694939850269126, every=1.0, start=0.21875, length=0.21875)


@pytest.mark.parametrize("replay", [_view_and_quorum_back_together, _double_hold, _blind_start,
                                    _reopened_with_a_stale_bounce])
def test_the_sequences_found_so_far_keep_the_invariants(db_dir: Path,
                                                        replay: Callable[[WatcherMachine], None]) -> None:
    """Random runs meet these only now and then: replayed every time, with the same checks."""
    m = WatcherMachine(db_dir / "state.db", Counter())
    try:
        replay(m)
    finally:
        m.teardown()
    if replay is _double_hold:
        # Issue 14: the quorum loss is told in the incident of the node whose loss caused it, so
        # node3's going offline is no longer held twice (invariant 2's relaxation stays for safety).
        assert "double hold after a flap" not in m.exercised


# ---------------------------------------------------------------- one-shots never flap


@settings(max_examples=60, deadline=None)
@given(base=st.sampled_from(["a_healthy", "c_node3_crashed", "e_failed_actions"]),
       fences=st.lists(st.sampled_from([m for m in MODS if m.startswith("fence")]), min_size=6, max_size=20))
def test_fencing_alone_never_makes_a_key_flap(base: str, fences: list[str]) -> None:
    """Fence history changing poll after poll (new fencings, retries, successes) on an otherwise
    unchanged cluster opens no flapping incident: one-shots toggle nothing."""
    clock = Clock()
    store = SyncView(AsyncStore(":memory:"))
    try:
        w = Watcher(settings=SETTINGS, collect=lambda *a, **k: None, store=store.store, clock=clock.now,
                    monotonic=clock.monotonic)
        for spec in [(base, (), ())] + [(base, (f,), ()) for f in fences]:
            clock.tick(5.0)
            asyncio.run(w.observe(CLUSTER, build(spec)))
        assert not [i for i in store.open_incidents(NAME) if i.key.startswith(FLAPPING)]
        queued = store.due(clock.now(), limit=10_000)
        assert not [m for m in queued if "is flapping" in str(m.payload)]
    finally:
        store.close()
