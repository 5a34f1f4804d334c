"""Replay a recorded lab sequence through the real watcher, in virtual time, and count what an
on-call would read.

The chain is the real one from the SSH answer on: the real Collector (light turns, full polls,
parse cache, merge) asks a pool whose answers are the sequence's recorded samples at the virtual
time of the poll, and the real Watcher diffs, groups and writes to a real SQLite store. Polls fall
at `phase + k * poll_s`. What the outbox holds is what the deliverer posts to Slack; each row is
stamped with its poll's virtual time plus the CPU time the poll really took.

Only the public contract of a Sequence is used (tests/fakes/sequences.py): `answer(node, cmd, t)`,
`nodes`, `vips`, `everywhere`, `kind`, `duration`, `steps`, `samples`; so the same harness
measures any version of the watcher (the "before" figures come from main's).
"""

from __future__ import annotations

import re
import shlex
import time
import uuid
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from bot.approvals import Approve, Finish, Request, Result, Start
from bot.collect import Collector
from bot.corosync.parse import parse_quorum
from bot.errors import ParseError, SudoRefused, Unreachable
from bot.settings import ClusterConfig, NodeConfig, Settings
from bot.ssh import Completed, SshTarget
from bot.store import AsyncStore
from bot.watcher import Watcher
from tests.fakes.sequences import cmd_of

MENTION = "<!subteam^S0ONCALL>"
BASE = datetime(2026, 1, 1, tzinfo=UTC)
CRITICAL_EMOJI = ":red_circle:"
OK_EMOJI = ":large_green_circle:"
# After the last sample the cluster stays as it was: long enough for a flap to calm and every
# settle window to pass, so every incident has had its chance to end.
TAIL_S = 30.0
APPROVED_BEFORE_S = 0.2  # the runner starts a fix as soon as it is approved


class SampleLike(Protocol):
    t: float
    node: str
    cmd: str
    rc: int
    out: str
    err: str


class SequenceLike(Protocol):
    name: str
    kind: str
    nodes: tuple[str, ...]
    vips: tuple[str, ...]
    everywhere: tuple[str, ...]
    duration: float
    steps: Any
    samples: Any

    def answer(self, node: str, cmd: str, t: float) -> Any: ...


@dataclass
class VClock:
    """Virtual time: seconds since the start of the sequence."""

    t: float = 0.0

    def now(self) -> datetime:
        return BASE + timedelta(seconds=self.t)

    def monotonic(self) -> float:
        return self.t


@dataclass
class ReplayPool:
    """An SshPool whose nodes answer what the sequence recorded at the virtual time."""

    seq: SequenceLike
    clock: VClock
    asked: int = 0

    async def read(self, target: SshTarget, argv: Seq[str], *, timeout_s: float) -> Completed:
        self.asked += 1
        cmd = cmd_of(shlex.join(argv))
        sample = self.seq.answer(target.node, cmd, self.clock.t) if cmd else None
        if sample is None:
            if cmd in ("daemons", "crmadmin"):  # not recorded: like a sudoers file without them
                raise SudoRefused(target.node, f"{cmd} was not recorded")
            raise Unreachable(target.node, f"nothing recorded for {shlex.join(argv)}")
        if sample.rc is None:  # the recorder got no answer over SSH either
            raise Unreachable(target.node, sample.err or "no answer")
        return Completed(target.node, tuple(argv), sample.rc, sample.out, sample.err,
                         getattr(sample, "dt", 0.05))

    run = read

    def warm(self, target: SshTarget) -> bool:
        return True  # every answer comes from the recording: no connection to warm up


@dataclass(frozen=True)
class Message:
    at: float  # virtual time it was queued: poll time + the poll's real processing time
    kind: str  # root | reply | edit
    incident: int | None
    verdict: str
    thread: str | None  # a request's thread (remediation-aware posts)


@dataclass(frozen=True)
class Hold:
    """One finding the watcher held back (settling): from when it was first seen to the poll
    that no longer held it (released as news, or dropped because it cleared)."""

    kind: str
    key: str
    since: float
    until: float

    @property
    def seconds(self) -> float:
        return self.until - self.since


@dataclass
class Replay:
    seq: SequenceLike
    poll_s: float
    phase: float
    messages: list[Message] = field(default_factory=list)
    holds: list[Hold] = field(default_factory=list)
    open_at_end: list[str] = field(default_factory=list)
    polls: int = 0
    cpu_s: float = 0.0
    unhealthy_polls: int = 0  # polls that saw a problem while no fix was acting (or settling)

    @property
    def roots(self) -> list[Message]:
        return [m for m in self.messages if m.kind == "root"]

    @property
    def replies(self) -> list[Message]:
        return [m for m in self.messages if m.kind == "reply"]

    @property
    def pages(self) -> list[Message]:
        return [m for m in self.messages if m.kind in ("root", "reply") and MENTION in m.verdict]

    def first_root_lag(self, shown_at: float) -> float | None:
        """From `shown_at` (when the change first showed: see `shown_at`) to the first root."""
        if not self.roots:
            return None
        return self.roots[0].at - shown_at

    def false_recoveries(self) -> list[Message]:
        """Recoveries said while a node they name is out of the Corosync membership. A node named
        only as where something moved from ("virtual_ip_3 moved node3 → node1": the VIP serves
        again, on node1) is not said to be back."""
        out = []
        for m in self.messages:
            if m.kind == "root" or not _says_recovered(m.verdict):
                continue
            said = _MOVED_FROM.sub("moved →", m.verdict)
            absent = [n for n in self.seq.nodes if _names(said, n) and not member(self.seq, n, m.at)]
            if absent:
                out.append(m)
        return out


_MOVED_FROM = re.compile(r"moved [^→;]*→")


def _says_recovered(verdict: str) -> bool:
    return verdict.startswith(OK_EMOJI) or "up again" in verdict or "resolved after" in verdict


def _names(text: str, node: str) -> bool:
    return re.search(rf"\b{re.escape(node)}\b", text) is not None


def member(seq: SequenceLike, node: str, t: float) -> bool:
    """Ground truth from the recording: some node's own Corosync view at t counts `node` in."""
    for asker in seq.nodes:
        sample = seq.answer(asker, "quorumtool", t)
        if sample is None or not sample.out.strip():
            continue
        try:
            status = parse_quorum(sample.out)
        except ParseError:
            continue
        if node in {m.name for m in status.members if m.name}:
            return True
    return False


def start_of(seq: SequenceLike) -> float:
    """The first moment every recorded command of every node has an answer."""
    firsts: dict[tuple[str, str], float] = {}
    for s in seq.samples:
        firsts.setdefault((s.node, s.cmd), s.t)
    return max(firsts.values(), default=0.0)


async def shown_at(seq: SequenceLike, tmp: Path) -> float | None:
    """When the first alerted change showed in the recording: the first root of the same watcher
    polling at the recording's own resolution (every sample interval, `interval_s`), less that
    interval. Lag measured from it is what the poll interval and processing add, nothing else."""
    step = float(getattr(seq, "interval_s", 0.25))
    ideal = await replay(seq, tmp, poll_s=step, tail_s=0.0, ideal=True)
    return ideal.roots[0].at - step if ideal.roots else None


def cluster_of(seq: SequenceLike, **extra: Any) -> ClusterConfig:
    return ClusterConfig(name=seq.name.replace("_", "-"), kind=seq.kind,  # type: ignore[arg-type]
                         nodes=tuple(NodeConfig(name=n, host=f"{n}.lab") for n in seq.nodes),
                         vips=tuple(seq.vips), everywhere=tuple(seq.everywhere), mention=MENTION, **extra)


def settings_of(cluster: ClusterConfig, tmp: Path, poll_s: float, **extra: Any) -> Settings:
    values: dict[str, Any] = {"flap_limit": 4, "flap_window_s": 120.0}
    values.update(extra)
    return Settings(clusters=(cluster,), poll_interval_s=poll_s, state_dir=tmp, alert_channel="C0ALERTS",
                    **values)


async def replay(seq: SequenceLike, tmp: Path, *, poll_s: float, phase: float = 0.0,
                 tail_s: float | None = None, store: AsyncStore | None = None,
                 request_channel: str = "C0ALERTS", ideal: bool = False, **settings: Any) -> Replay:
    """Replay `seq` polling every `poll_s` from `phase`, then `tail_s` more of its last state."""
    # The first poll sees the cluster as it was before the scenario (the watcher was watching
    # already); the others fall at phase + k * poll_s.
    first = start_of(seq)
    clock = VClock(first)
    cluster = cluster_of(seq)
    conf = settings_of(cluster, tmp, poll_s, **settings)
    if ideal:  # every poll asks every node: the best any poll interval could see
        conf = conf.model_copy(update={"poll_every_node": True, "detail_every": 1})
    own = store is None
    store = store or AsyncStore(tmp / f"replay-{uuid.uuid4().hex}.db")  # one store per replay
    pool = ReplayPool(seq, clock)
    collector = Collector(pool=pool, settings=conf, now=clock.now)  # type: ignore[arg-type]
    watcher = Watcher(settings=conf, collect=collector.collect, store=store, clock=clock.now,
                      monotonic=clock.monotonic)
    result = Replay(seq, poll_s, phase)
    fixes = FixScript(seq, cluster, store, request_channel)
    end = seq.duration + (conf.flap_window_s + TAIL_S if tail_s is None else tail_s)
    seen = 0
    held: dict[str, tuple[str, float]] = {}
    try:
        while clock.t <= end:
            await fixes.advance(clock.t)
            started = time.process_time()
            await watcher.poll(cluster)
            cost = time.process_time() - started
            last = watcher._last.get(cluster.name)
            settle_s = getattr(conf, "settle_s", 15.0)  # the watcher before issue 14 had none
            if last is not None and not last.healthy and not fixes.acting(clock.t, settle_s):
                result.unhealthy_polls += 1
            result.cpu_s += cost
            result.polls += 1
            _track_holds(watcher, cluster.name, clock.t, held, result.holds)
            seen = await _collect_messages(store, result, clock.t + cost, seen)
            clock.t = _next_poll(clock.t, phase, poll_s)
        result.open_at_end = [i.key for i in await store.open_incidents(cluster.name)]
    finally:
        if own:
            await store.close()
    return result


def _track_holds(watcher: Watcher, cluster: str, t: float, held: dict[str, tuple[str, float]],
                 out: list[Hold]) -> None:
    """What the watcher holds after this poll, against what it held before (its watch state)."""
    memory = watcher._memory.get(cluster)
    state = memory.state if memory is not None else None
    now = {h.event.key: (str(h.event.kind), h.since - BASE.timestamp())
           for h in (state.settling.held if state is not None else ())}
    for key, (kind, since) in list(held.items()):
        if key not in now:
            out.append(Hold(kind, key, since, t))
            del held[key]
    for key, value in now.items():
        held.setdefault(key, value)


@dataclass
class FixScript:
    """The sequence's catalogue fixes as approved requests in the store, with the real state
    machine and audit: approved just before the step, running through it, finished at its end
    (consecutive steps of one fix, like a resync's two restarts, are one request)."""

    seq: SequenceLike
    cluster: ClusterConfig
    store: AsyncStore
    channel: str
    pending: list[tuple[float, str, Any]] = field(default_factory=list)
    windows: list[tuple[float, float]] = field(default_factory=list)  # approved .. finished

    def __post_init__(self) -> None:
        spans: list[tuple[float, float, Any]] = []
        for step in self.seq.steps:
            fix = getattr(step, "remediation", None)
            if fix is None:
                continue
            if spans and spans[-1][2] == fix and step.t - spans[-1][1] < 1.0:
                spans[-1] = (spans[-1][0], step.t_end, fix)
            else:
                spans.append((step.t, step.t_end, fix))
        for i, (t, t_end, (action, args)) in enumerate(spans):
            rid = f"fix{i}"
            self.windows.append((t - APPROVED_BEFORE_S, t_end))
            self.pending += [(t - APPROVED_BEFORE_S, rid, ("create", action, tuple(args))),
                             (t - APPROVED_BEFORE_S, rid, Approve("U0APPROVER")),
                             (t, rid, Start()), (t_end, rid, Finish(Result(exit_status=0)))]
        self.pending.sort(key=lambda p: p[0])

    def acting(self, t: float, settle_s: float) -> bool:
        return any(start <= t <= end + settle_s for start, end in self.windows)

    async def advance(self, t: float) -> None:
        while self.pending and self.pending[0][0] <= t:
            at, rid, what = self.pending.pop(0)
            now = BASE + timedelta(seconds=at)
            if isinstance(what, tuple):
                _, action, args = what
                await self.store.create_request(Request(
                    id=rid, cluster=self.cluster.name, action=action, args=args,
                    node=self.cluster.nodes[0].name,
                    argv=("pcs", action, *args), requester="U0ONCALL", channel=self.channel,
                    reason="replayed remediation", prediction=None, fingerprint="replay", created_at=now,
                    expires_at=now + timedelta(minutes=15), required_approvals=1, allow_self_approval=False,
                    message_ts=f"req-{rid}"))
            else:
                await self.store.apply(rid, what, now=now, is_approver=True)


def _next_poll(t: float, phase: float, poll_s: float) -> float:
    """The next poll time phase + k * poll_s after t."""
    k = int((t - phase) // poll_s) + 1
    return phase + k * poll_s


async def _collect_messages(store: AsyncStore, result: Replay, at: float, seen: int) -> int:
    for item in await store.due(BASE + timedelta(days=365), limit=100000):
        if item.id <= seen:
            continue
        p = item.payload
        inc = p.get("incident")
        result.messages.append(Message(at, item.kind, int(inc) if isinstance(inc, int | str) else None,
                                       str(p["doc"]["verdict"]), p.get("thread")))  # type: ignore[index,arg-type]
        seen = item.id
    return seen


def table_row(name: str, poll_s: float, runs: list[Replay], shown: float | None) -> str:
    roots = sorted(len(r.roots) for r in runs)
    lags = sorted(lag for r in runs if shown is not None and (lag := r.first_root_lag(shown)) is not None)
    p50 = lags[len(lags) // 2] if lags else float("nan")
    worst = lags[-1] if lags else float("nan")
    false = sum(len(r.false_recoveries()) for r in runs)
    pages = sum(len(r.pages) for r in runs)
    left = sum(len(r.open_at_end) for r in runs)
    return (f"{name:28} {poll_s:>4.0f}s  roots {roots[0]}-{roots[-1]}  lag p50 {p50:5.2f} max {worst:5.2f}  "
            f"false {false}  pages {pages}  open {left}")
