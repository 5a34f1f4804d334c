"""Ask every node of a cluster for its own view, concurrently, over the warm SSH pool.

One node's failure (unreachable, slow, host key, sudo, garbage) becomes a typed NodeResult;
it never hides the other nodes' answers.

Per node, all commands run at once: crm_mon and the daemons as before, plus Corosync's own
quorum (`corosync-quorumtool -s`) and link (`corosync-cfgtool -s`) views. For a Pacemaker
cluster crm_mon decides the node's fate and Corosync trouble is only reported; for a
corosync-only cluster (kind = "corosync": Proxmox VE, ...) there is no crm_mon and the quorum
view is the node's answer.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import Enum
from typing import Generic, TypeVar

from bot.corosync.model import LinkStatus, NodeCorosync, QuorumStatus
from bot.corosync.parse import parse_cfgtool, parse_quorum
from bot.early import COROSYNC_DAEMONS, controller_argv
from bot.errors import ParseError, SshError
from bot.pacemaker.daemons import Daemons, parse_is_active
from bot.pacemaker.merge import ClusterReport, NodeResult, merge
from bot.pacemaker.model import ControllerStatus, NodeView
from bot.pacemaker.parse import parse, parse_controller
from bot.remedies import Version, parse_pcs_version
from bot.settings import ClusterConfig, NodeConfig, Settings
from bot.ssh import Completed, SshPool, SshTarget

log = logging.getLogger(__name__)
_NOT_FOUND = 127
# What the Corosync tools print (stderr, exit 1) when corosync is not running on the node.
_COROSYNC_DOWN = ("Cannot initialize CMAP service", "Cannot initialize QUORUM service",
                  "Cannot initialise CFG service", "Could not initialize corosync")
T = TypeVar("T")
KEEPALIVE_S = 30.0
CONTROLLER_GRACE_S = 0.1  # how much longer than its other commands a node's answer may take for it
# crmadmin answers that will not change by asking again: not installed, an option this version
# lacks (no --output-as before 2.1), or no right to ask the controller (not root, not haclient).
_CONTROLLER_FOR_GOOD = ("unrecognized option", "unknown option", "insufficient privileges")
# The crm_mon times of the collection running in this task (node tasks inherit it).
_ANSWER_TIMES: ContextVar[dict[str, float] | None] = ContextVar("answer_times", default=None)
# One node's answers, asked together before its commands are read one by one (see _full).
_ASKED: ContextVar[dict[tuple[str, ...], Completed | SshError] | None] = ContextVar("asked", default=None)


class Ask(Enum):
    """How much one collection asks the nodes."""

    TURN = "turn"  # the watcher: crm_mon of one node in turn; any change it shows asks everyone
    STATUS = "status"  # crm_mon of every node; an unchanged node's details may be a few s old
    ALL = "all"  # every command on every node: what a remediation decides on


def target_for(cluster: ClusterConfig, node: NodeConfig, settings: Settings) -> SshTarget:
    return SshTarget(
        node=node.name,
        host=node.host,
        port=node.port,
        user=cluster.ssh_user,
        client_keys=(cluster.ssh_key,) if cluster.ssh_key else (),
        known_hosts=cluster.known_hosts,
        sudo=cluster.sudo,
        connect_timeout_s=settings.connect_timeout_s,
        # Polls use every connection every few seconds anyway; a keepalive only has to catch
        # the silent ones. At 300 connections, 10 s keepalives cost as much CPU as the polls.
        keepalive_interval_s=KEEPALIVE_S,
    )


@dataclass
class Collector:
    """Collects ClusterReports. Holds the pool and remembers which nodes need legacy crm_mon."""

    pool: SshPool
    settings: Settings
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    # Ask each node's controller state (crmadmin) with its details. Only the watcher's settling
    # reads it (bot.pacemaker.snapshot); a one-shot status shows nothing of it, so `clusterbot
    # status` spares each node a command and its controller an IPC round (~15 ms CPU a node).
    controller: bool = True
    _limit: asyncio.Semaphore = field(init=False)
    _legacy: set[tuple[str, str]] = field(default_factory=set, init=False)
    # Watching is mostly asking "still the same?": remember the last answers per node, so an
    # unchanged cluster costs one crm_mon per node and no parsing, merging or diffing.
    _details: dict[tuple[str, str], NodeResult] = field(default_factory=dict, init=False)
    _views: dict[tuple[str, str], tuple[str, NodeView]] = field(default_factory=dict, init=False)
    _reports: dict[str, tuple[tuple[NodeResult, ...], ClusterReport]] = field(default_factory=dict,
                                                                               init=False)
    _turns: dict[str, int] = field(default_factory=dict, init=False)
    # Seconds each node took to answer crm_mon in the latest collection of a cluster (only the
    # nodes actually asked): a reused NodeResult keeps the duration of the poll that made it.
    _answers: dict[str, dict[str, float]] = field(default_factory=dict, init=False)
    _ages: dict[tuple[str, str], int] = field(default_factory=dict, init=False)
    # Nodes whose crmadmin cannot answer (missing, too old, refused): not asked again; settling
    # falls back to its approximations there.
    _no_controller: set[tuple[str, str]] = field(default_factory=set, init=False)
    _in_flight: set[asyncio.Task[ControllerStatus | None]] = field(default_factory=set, init=False)

    def __post_init__(self) -> None:
        self._limit = asyncio.Semaphore(self.settings.max_concurrency)

    async def collect(self, cluster: ClusterConfig, *, ask: Ask = Ask.STATUS) -> ClusterReport:
        """Every node's answer, merged.

        * `Ask.TURN` (the watcher, most polls) asks crm_mon of one node in turn and reuses the
          rest of the last answers; any change that node shows brings a full poll of every node.
        * `Ask.STATUS` asks crm_mon of every node; a node whose answer is unchanged keeps its
          daemon and Corosync answers up to `status_detail_max_age_s` old.
        * `Ask.ALL` asks every node everything.
        """
        times: dict[str, float] = {}
        token = _ANSWER_TIMES.set(times)  # this collection's own, even if another runs at once
        try:
            return await self._collect(cluster, ask)
        finally:
            _ANSWER_TIMES.reset(token)
            self._answers[cluster.name] = times

    async def _collect(self, cluster: ClusterConfig, ask: Ask) -> ClusterReport:
        last = self._reports.get(cluster.name)
        asked: dict[str, NodeView | NodeResult] = {}  # a light poll's answer: not asked twice
        if ask is Ask.TURN and last is not None and not self.settings.poll_every_node:
            light = await self._light(cluster, last[0], asked)
            if light is not None:
                return light
        max_age = {Ask.TURN: float("inf"), Ask.STATUS: self.settings.status_detail_max_age_s,
                   Ask.ALL: None}[ask]
        results = tuple(await asyncio.gather(
            *(self._node(cluster, n, max_age, asked.get(n.name)) for n in cluster.nodes)))
        if last is not None and all(a is b for a, b in zip(last[0], results, strict=True)):
            # Nothing new from any node: the very same report (a status stamps its own time).
            return last[1] if ask is Ask.TURN else replace(last[1], collected_at=self.now())
        report = merge(cluster.name, results, cluster.expectations, self.now(), kind=cluster.kind)
        self._reports[cluster.name] = (results, report)
        return report

    async def _light(self, cluster: ClusterConfig, last: tuple[NodeResult, ...],
                     asked: dict[str, NodeView | NodeResult]) -> ClusterReport | None:
        """One node, in turn: crm_mon, and every `detail_every`-th time its details too (a
        corosync-only cluster: its details every time). Returns the last report if that node
        said nothing new, else None (poll everyone); what it did say goes into `asked`."""
        # Only while every node answered with a live view: a crashed node's "not connected"
        # stays the same while the others' views change, and a silent node must be asked every
        # poll to count towards "unreachable". A cluster in trouble gets full polls.
        if not all(r.ok and not _stale_if_kept(r) for r in last):
            return None
        turn = self._turns[cluster.name] = (self._turns.get(cluster.name, -1) + 1) % len(cluster.nodes)
        node = cluster.nodes[turn]
        key = (cluster.name, node.name)
        cached = self._details.get(key)
        if cached is None or last[turn] is not cached:
            return None
        age = self._ages[key] = self._ages.get(key, 0) + 1
        if age >= self.settings.detail_every or cluster.kind == "corosync":
            self._ages[key] = 0
            fresh = await self._full(cluster, node)
            if _same(fresh, cached):
                return self._reports[cluster.name][1]
            # Kept and handed to the full poll: with crm_mon unchanged it would otherwise reuse
            # the old details, and a daemon or link change alone would never be reported.
            asked[node.name] = self._details[key] = fresh
            return None
        started = time.perf_counter()
        try:
            view = await self._crm_mon(cluster, target_for(cluster, node, self.settings))
        except (SshError, ParseError) as err:
            # A hung node must cost one timeout per poll, not one here and more in the full poll.
            asked[node.name] = self._details[key] = _failed(node.name, err, started)
            return None
        if view is cached.view:
            return self._reports[cluster.name][1]
        asked[node.name] = view
        return None

    def answer_times(self, cluster: str) -> dict[str, float]:
        """Node -> seconds to answer, for the nodes asked in the latest collection of cluster."""
        return dict(self._answers.get(cluster, {}))

    async def collect_many(self, clusters: Iterable[ClusterConfig]) -> list[ClusterReport]:
        """Sweep many clusters at once; the global semaphore bounds SSH sessions in flight."""
        return list(await asyncio.gather(*(self.collect(c) for c in clusters)))

    async def run(self, cluster: ClusterConfig, node: str, argv: tuple[str, ...],
                  timeout_s: float | None = None, *, input: str | None = None) -> Completed:
        """Run one command on one node of a cluster (remediation uses this), alone on its own
        session; `input` is its stdin."""
        async with self._limit:
            return await self.pool.run(self._target(cluster, node), argv, input=input,
                                       timeout_s=timeout_s or self.settings.command_timeout_s)

    async def read(self, cluster: ClusterConfig, node: str, argv: tuple[str, ...]) -> Completed:
        """A read-only command on one node (a read shell may answer it)."""
        return await self._exec(self._target(cluster, node), argv)

    async def pcs_version(self, cluster: ClusterConfig, node: str) -> Version | None:
        """pcs's version on the node (None: pcs is not installed), asked once per connection.
        Raises SshError, or ParseError when `pcs --version` answers something else."""
        # Why without sudo: printing its version needs no root, and sudoers need not allow it.
        target = replace(self._target(cluster, node), sudo=False)

        async def ask() -> Version | None:
            done = await self._exec(target, ("pcs", "--version"))
            if done.exit_status == _NOT_FOUND:
                return None
            version = parse_pcs_version(done.stdout)
            if done.exit_status != 0 or version is None:
                detail = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[0][:200]
                raise ParseError(f"`pcs --version` exited {done.exit_status}: {detail}")
            return version

        return await self.pool.remember(target, "pcs --version", ask)

    def _target(self, cluster: ClusterConfig, node: str) -> SshTarget:
        conf = cluster.node(node)
        if conf is None:
            raise ValueError(f"{node} is not a configured node of {cluster.name}")
        return target_for(cluster, conf, self.settings)

    async def _node(self, cluster: ClusterConfig, node: NodeConfig, max_age_s: float | None,
                    asked: NodeView | NodeResult | None = None) -> NodeResult:
        """`max_age_s`: how old the node's daemon and Corosync answers may be (None: fresh).
        `asked`: what this poll already heard from the node (its crm_mon, or everything)."""
        if isinstance(asked, NodeResult):
            return asked
        key = (cluster.name, node.name)
        cached = None if max_age_s is None or cluster.kind == "corosync" else self._details.get(key)
        if cached is not None and self._younger(cached, max_age_s) and not _stale_if_kept(cached):
            return await self._crm_mon_only(cluster, node, cached, asked)
        result = await self._full(cluster, node, asked)
        if result.view is not None or result.corosync is not None:
            self._details[key] = result
        return result

    def _younger(self, result: NodeResult, max_age_s: float | None) -> bool:
        if max_age_s is None or result.details_at is None:
            return False
        age = (self.now() - result.details_at).total_seconds()
        return 0 <= age <= max_age_s  # a clock stepped back makes nothing look fresh

    async def _crm_mon_only(self, cluster: ClusterConfig, node: NodeConfig, last: NodeResult,
                            asked: NodeView | None) -> NodeResult:
        """crm_mon alone; if its answer changed, the node's details are refreshed too, so a
        change is seen whole (Pacemaker and Corosync) in the poll that first shows it."""
        view = asked
        if view is None:
            started = time.perf_counter()
            try:
                view = await self._crm_mon(cluster, target_for(cluster, node, self.settings))
            except (SshError, ParseError) as err:
                # Asking everything now would only wait for the same hung or broken crm_mon again.
                result = self._details[(cluster.name, node.name)] = _failed(node.name, err, started)
                return result
        if view is last.view:
            return last  # identical answer: keep the identical result (and so the report)
        result = await self._full(cluster, node, view)
        self._details[(cluster.name, node.name)] = result
        return result

    async def _full(self, cluster: ClusterConfig, node: NodeConfig,
                    known: NodeView | None = None) -> NodeResult:
        """Every read command on the node; `known`: a crm_mon answer this poll already has."""
        started = time.perf_counter()
        target = target_for(cluster, node, self.settings)
        view: NodeView | None = None
        # A cold node is asked everything at once: one session and no round trips between
        # commands (a new session costs a real sshd a fork, PAM and a login). A warm one asks
        # on its open read shells, concurrently, each command under the session limit.
        cold = not self.pool.warm(target)
        asked = await self._ask_all(target, self._argvs(cluster, target, known)) if cold else None
        token = _ASKED.set(asked)
        try:
            if cluster.kind == "corosync":
                daemons, (quorum, links) = await asyncio.gather(
                    self._daemons(cluster, target), self._corosync(cluster, target, decisive=True))
                controller = None
            else:
                asking: list[asyncio.Task[ControllerStatus | None]] = []
                view, daemons, (quorum, links) = await asyncio.gather(
                    _given(known) if known is not None else self._crm_mon(cluster, target),
                    self._daemons_then_controller(cluster, target, asking),
                    self._corosync(cluster, target, decisive=False))
                controller = await self._without_waiting(target, asking)
        except (SshError, ParseError) as err:
            return _failed(node.name, err, started)
        finally:
            _ASKED.reset(token)
        if cluster.kind == "corosync" and quorum.value is None and not quorum.down:
            # No quorum view and no "corosync is down" either (garbage, tool missing): like a
            # crm_mon without XML, the node gave no answer we can use.
            return NodeResult(node.name, error=quorum.error, error_kind=quorum.kind,
                              duration_s=time.perf_counter() - started)
        failed = quorum if quorum.value is None else links
        return NodeResult(node.name, view=view, daemons=daemons,
                          duration_s=time.perf_counter() - started, details_at=self.now(),
                          corosync=NodeCorosync(quorum.value, links.value),
                          corosync_error=failed.error, corosync_error_kind=failed.kind,
                          controller=controller)

    def _argvs(self, cluster: ClusterConfig, target: SshTarget,
               known: NodeView | None) -> list[tuple[str, ...]]:
        """What `_full` asks the node, crm_mon first (it decides the node's fate)."""
        cmds = cluster.commands
        crm_mon = cmds.crm_mon_legacy if (cluster.name, target.node) in self._legacy else cmds.crm_mon
        first = [crm_mon] if cluster.kind != "corosync" and known is None else []
        last = [controller_argv(target.node)] if self._asks_controller(cluster, target) else []
        return [*first, _daemons_argv(cluster), cmds.quorum, cmds.links, *last]

    async def _ask_all(self, target: SshTarget, argvs: list[tuple[str, ...]],
                       ) -> dict[tuple[str, ...], Completed | SshError]:
        async with self._limit:
            answers = await self.pool.read_all(target, argvs, timeout_s=self.settings.command_timeout_s)
        return dict(zip(argvs, answers, strict=True))

    async def _exec(self, target: SshTarget, argv: tuple[str, ...]) -> Completed:
        asked = _ASKED.get()
        answer = asked.pop(argv, None) if asked is not None else None
        if isinstance(answer, SshError):
            raise answer
        if answer is not None:
            return answer
        async with self._limit:  # every command here only reads: a read shell may answer it
            return await self.pool.read(target, argv, timeout_s=self.settings.command_timeout_s)

    async def _crm_mon(self, cluster: ClusterConfig, target: SshTarget) -> NodeView:
        key = (cluster.name, target.node)
        cmds = cluster.commands
        argv = cmds.crm_mon_legacy if key in self._legacy else cmds.crm_mon
        done = await self._exec(target, argv)
        times = _ANSWER_TIMES.get()
        if times is not None:
            times[target.node] = max(times.get(target.node, 0.0), done.duration_s)
        if _looks_like_xml(done.stdout):
            return self._parse_cached(key, done.stdout)
        if key not in self._legacy and _unknown_option(done):
            # Pacemaker 1.1 / 2.0.0-2.0.2 has no --output-as: remember and use crm_mon -X.
            log.info("%s: crm_mon has no --output-as, falling back to %s", target.node,
                     " ".join(cmds.crm_mon_legacy))
            self._legacy.add(key)
            return await self._crm_mon(cluster, target)
        raise ParseError(_no_xml(done))

    def _parse_cached(self, key: tuple[str, str], xml: str) -> NodeView:
        """Parse, unless the answer equals the last one but for its timestamps."""
        stable = _VOLATILE.sub("", xml)
        hit = self._views.get(key)
        if hit is not None and hit[0] == stable:
            return hit[1]
        view = parse(xml)
        self._views[key] = (stable, view)
        return view

    async def _corosync(self, cluster: ClusterConfig, target: SshTarget, *, decisive: bool,
                        ) -> tuple[_Answer[QuorumStatus], _Answer[LinkStatus]]:
        """Both Corosync views at once. `decisive`: the quorum view is the node's answer, so
        failing to reach the node fails it; otherwise Corosync trouble is only reported."""
        cmds = cluster.commands
        quorum, links = await asyncio.gather(
            self._tool(target, cmds.quorum, parse_quorum, decisive),
            self._tool(target, cmds.links, parse_cfgtool, False))
        return quorum, links

    async def _tool(self, target: SshTarget, argv: tuple[str, ...], parse_text: Callable[[str], T],
                    decisive: bool) -> _Answer[T]:
        try:
            done = await self._exec(target, argv)
        except SshError as err:
            if decisive:
                raise
            # e.g. sudoers written for crm_mon only: Pacemaker's answer must not be lost to it.
            return _Answer(error=f"{argv[0]}: {_strip(err, target.node)}", kind=err.kind)
        return _read_tool(done, parse_text)

    async def _daemons_then_controller(self, cluster: ClusterConfig, target: SshTarget,
                                       asking: list[asyncio.Task[ControllerStatus | None]],
                                       ) -> Daemons | None:
        """The daemons, then crmadmin started on their read shell: a fifth command at once would
        find none free (four per connection) and cost the node an exec session per poll."""
        daemons = await self._daemons(cluster, target)
        task = asyncio.ensure_future(self._controller(cluster, target))
        self._in_flight.add(task)  # referenced until done, even when nobody waits for it
        task.add_done_callback(self._in_flight.discard)
        asking.append(task)
        return daemons

    async def _without_waiting(self, target: SshTarget,
                               asking: list[asyncio.Task[ControllerStatus | None]],
                               ) -> ControllerStatus | None:
        """crmadmin's answer if it comes within CONTROLLER_GRACE_S of the node's other answers.
        A busy controller answers late (up to its 1 s timeout, measured on the lab during
        transitions), and the node's answer must not wait for it: that would delay the very
        alerts (a node lost) that come with a transition. A late one finishes on its own."""
        if not asking:
            return None
        task = asking[0]
        try:
            return await asyncio.wait_for(asyncio.shield(task), CONTROLLER_GRACE_S)
        except TimeoutError:
            log.debug("%s: crmadmin did not answer in time; its state is unknown this poll", target.node)
            return None

    def _asks_controller(self, cluster: ClusterConfig, target: SshTarget) -> bool:
        return (self.controller and cluster.kind != "corosync"
                and (cluster.name, target.node) not in self._no_controller)

    async def _controller(self, cluster: ClusterConfig, target: SshTarget) -> ControllerStatus | None:
        """The node's controller state, or None: like the daemons it only informs (settling),
        so no failure here fails the node. One that will not change is logged once and the node
        is not asked again."""
        if not self._asks_controller(cluster, target):
            return None
        try:
            done = await self._exec(target, controller_argv(target.node))
        except SshError as err:
            if err.kind == "sudo":
                self._give_up_controller(cluster, target, _strip(err, target.node))
            return None
        try:
            return parse_controller(done.stdout)
        except ParseError as err:
            text = (done.stderr + done.stdout).lower()
            if done.exit_status == _NOT_FOUND or any(m in text for m in _CONTROLLER_FOR_GOOD):
                why = str(err) if _looks_like_xml(done.stdout) else _no_xml(done, "crmadmin")
                self._give_up_controller(cluster, target, why)
            else:  # its controller is down or busy: so for this poll only
                log.debug("%s: no controller state: %s", target.node, err)
            return None

    def _give_up_controller(self, cluster: ClusterConfig, target: SshTarget, why: str) -> None:
        self._no_controller.add((cluster.name, target.node))
        log.warning("%s: cannot read whether Pacemaker is acting (%s); settling there uses node "
                    "changes only", target.node, why)

    async def _daemons(self, cluster: ClusterConfig, target: SshTarget) -> Daemons | None:
        argv = _daemons_argv(cluster)
        try:
            done = await self._exec(target, argv)
        except SshError as err:
            # Daemon state is a nice-to-have; crm_mon (or the quorum view) decides the node's fate.
            # A sudoers file without this exact unit list refuses it alone: say why, carry on.
            if err.kind in ("timeout", "command_failed", "sudo"):
                if err.kind == "sudo":
                    log.debug("%s: daemon states unavailable: %s", target.node, err)
                return None
            raise
        if done.exit_status == _NOT_FOUND:
            return Daemons(systemd=False)
        return parse_is_active(tuple(a for a in argv[2:] if not a.startswith("-")),
                               done.stdout, done.stderr)


@dataclass(frozen=True, slots=True)
class _Answer(Generic[T]):
    """One Corosync tool's parsed output, or why there is none."""

    value: T | None = None
    error: str | None = None
    kind: str | None = None  # down, not_found, parse, or an SshError kind

    @property
    def down(self) -> bool:
        return self.kind == "down"


def _read_tool(done: Completed, parse_text: Callable[[str], T]) -> _Answer[T]:
    """Parse stdout whenever there is some: quorumtool exits 2 when not quorate (1 when corosync
    is down) and still prints the full view; only the text says what happened."""
    tool = done.argv[0]
    error: str | None = None
    if done.stdout.strip():
        try:
            return _Answer(parse_text(done.stdout))
        except ParseError as err:
            error = str(err)
    text = done.stderr + done.stdout
    marker = next((m for m in _COROSYNC_DOWN if m in text), None)
    if marker is not None:
        return _Answer(error=f"corosync is not running ({marker})", kind="down")
    if done.exit_status == _NOT_FOUND:
        return _Answer(error=f"{tool} not found", kind="not_found")
    detail = (done.stderr.strip() or "no output").splitlines()[0][:200]
    return _Answer(error=error or f"{tool} exited {done.exit_status}: {detail}", kind="parse")


def _daemons_argv(cluster: ClusterConfig) -> tuple[str, ...]:
    """The configured command; a corosync-only cluster that configured none asks for corosync."""
    if cluster.kind == "corosync" and "daemons" not in cluster.commands.model_fields_set:
        return COROSYNC_DAEMONS
    return cluster.commands.daemons


# crm_mon stamps every answer with the time it was asked; nothing else changes by itself.
# Why the literal prefix first: re then scans for it fast (12x quicker than an alternation).
_VOLATILE = re.compile(r'last_update(?: time="[^"]*"|d="[^"]*")')


async def _given(view: NodeView) -> NodeView:
    return view


def _same(a: NodeResult, b: NodeResult) -> bool:
    """The same answer (the view compared by identity: the parse cache keeps it identical)."""
    return (a.view is b.view and a.daemons == b.daemons and _stable(a.corosync) == _stable(b.corosync)
            and a.error == b.error and a.corosync_error == b.corosync_error
            and a.controller == b.controller)


def _stale_if_kept(result: NodeResult) -> bool:
    """Details that must be asked again rather than kept: a daemon said inactive. Restarting
    one (the runbook's resync restarts pcsd) changes nothing crm_mon shows, so a kept "pcsd is not
    active" outlived its recovery by up to `detail_every` turns of the node (recorded 2026-12-02)."""
    return result.daemons is not None and bool(result.daemons.inactive)


def _stable(corosync: NodeCorosync | None) -> NodeCorosync | None:
    """Without quorumtool's clock line, which differs in every answer: like crm_mon's timestamps,
    it must not make an unchanged node look changed (a full poll and a diff every detail turn)."""
    if corosync is None or corosync.quorum is None or corosync.quorum.date is None:
        return corosync
    return replace(corosync, quorum=replace(corosync.quorum, date=None))


def _failed(node: str, err: SshError | ParseError, started: float) -> NodeResult:
    """The node's result when its answer could not be had (SshError) or read (ParseError)."""
    if isinstance(err, SshError):
        return NodeResult(node, error=_strip(err, node), error_kind=err.kind,
                          duration_s=time.perf_counter() - started)
    return NodeResult(node, error=str(err), error_kind="parse", duration_s=time.perf_counter() - started)


def _strip(err: SshError, node: str) -> str:
    return str(err).removeprefix(f"{node}: ")


def _looks_like_xml(stdout: str) -> bool:
    return stdout.lstrip().startswith("<")


def _unknown_option(done: Completed) -> bool:
    text = (done.stderr + done.stdout).lower()
    return done.exit_status != 0 and ("unrecognized option" in text or "unknown option" in text
                                      or "invalid option" in text)


def _no_xml(done: Completed, tool: str = "crm_mon") -> str:
    detail = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[0][:200]
    return f"{tool} exited {done.exit_status} without XML: {detail}"
