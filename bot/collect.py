"""Ask every node of a cluster for its own view, concurrently, over the warm SSH pool.

One node's failure (unreachable, slow, host key, sudo, garbage) becomes a typed NodeResult;
it never hides the other nodes' answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bot.errors import ParseError, SshError
from bot.pacemaker.daemons import Daemons, parse_is_active
from bot.pacemaker.merge import ClusterReport, NodeResult, merge
from bot.pacemaker.model import NodeView
from bot.pacemaker.parse import parse
from bot.settings import ClusterConfig, NodeConfig, Settings
from bot.ssh import Completed, SshPool, SshTarget

log = logging.getLogger(__name__)
_NOT_FOUND = 127


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
    )


@dataclass
class Collector:
    """Collects ClusterReports. Holds the pool and remembers which nodes need legacy crm_mon."""

    pool: SshPool
    settings: Settings
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    _limit: asyncio.Semaphore = field(init=False)
    _legacy: set[tuple[str, str]] = field(default_factory=set, init=False)

    def __post_init__(self) -> None:
        self._limit = asyncio.Semaphore(self.settings.max_concurrency)

    async def collect(self, cluster: ClusterConfig) -> ClusterReport:
        results = await asyncio.gather(*(self._node(cluster, n) for n in cluster.nodes))
        return merge(cluster.name, results, cluster.expectations, self.now())

    async def collect_many(self, clusters: Iterable[ClusterConfig]) -> list[ClusterReport]:
        """Sweep many clusters at once; the global semaphore bounds SSH sessions in flight."""
        return list(await asyncio.gather(*(self.collect(c) for c in clusters)))

    async def run(self, cluster: ClusterConfig, node: str, argv: tuple[str, ...],
                  timeout_s: float | None = None) -> Completed:
        """Run one command on one node of a cluster (remediation uses this)."""
        conf = cluster.node(node)
        if conf is None:
            raise ValueError(f"{node} is not a configured node of {cluster.name}")
        async with self._limit:
            return await self.pool.run(target_for(cluster, conf, self.settings), argv,
                                       timeout_s=timeout_s or self.settings.command_timeout_s)

    async def _node(self, cluster: ClusterConfig, node: NodeConfig) -> NodeResult:
        started = time.perf_counter()
        target = target_for(cluster, node, self.settings)
        try:
            view, daemons = await asyncio.gather(
                self._crm_mon(cluster, target), self._daemons(cluster, target))
        except SshError as err:
            return NodeResult(node.name, error=_strip(err, node.name), error_kind=err.kind,
                              duration_s=time.perf_counter() - started)
        except ParseError as err:
            return NodeResult(node.name, error=str(err), error_kind="parse",
                              duration_s=time.perf_counter() - started)
        return NodeResult(node.name, view=view, daemons=daemons,
                          duration_s=time.perf_counter() - started)

    async def _exec(self, target: SshTarget, argv: tuple[str, ...]) -> Completed:
        async with self._limit:
            return await self.pool.run(target, argv, timeout_s=self.settings.command_timeout_s)

    async def _crm_mon(self, cluster: ClusterConfig, target: SshTarget) -> NodeView:
        key = (cluster.name, target.node)
        cmds = cluster.commands
        argv = cmds.crm_mon_legacy if key in self._legacy else cmds.crm_mon
        done = await self._exec(target, argv)
        if _looks_like_xml(done.stdout):
            return parse(done.stdout)
        if key not in self._legacy and _unknown_option(done):
            # Pacemaker 1.1 / 2.0.0-2.0.2 has no --output-as: remember and use crm_mon -X.
            log.info("%s: crm_mon has no --output-as, falling back to %s", target.node,
                     " ".join(cmds.crm_mon_legacy))
            self._legacy.add(key)
            return await self._crm_mon(cluster, target)
        raise ParseError(_no_xml(done))

    async def _daemons(self, cluster: ClusterConfig, target: SshTarget) -> Daemons | None:
        argv = cluster.commands.daemons
        try:
            done = await self._exec(target, argv)
        except SshError as err:
            if err.kind in ("timeout", "command_failed"):
                return None  # daemon state is a nice-to-have; crm_mon decides the node's fate
            raise
        if done.exit_status == _NOT_FOUND:
            return Daemons(systemd=False)
        return parse_is_active(tuple(a for a in argv[2:] if not a.startswith("-")),
                               done.stdout, done.stderr)


def _strip(err: SshError, node: str) -> str:
    return str(err).removeprefix(f"{node}: ")


def _looks_like_xml(stdout: str) -> bool:
    return stdout.lstrip().startswith("<")


def _unknown_option(done: Completed) -> bool:
    text = (done.stderr + done.stdout).lower()
    return done.exit_status != 0 and ("unrecognized option" in text or "unknown option" in text
                                      or "invalid option" in text)


def _no_xml(done: Completed) -> str:
    detail = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[0][:200]
    return f"crm_mon exited {done.exit_status} without XML: {detail}"
