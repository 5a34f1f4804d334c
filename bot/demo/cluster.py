"""The embedded demo cluster: the simulator behind one real loopback SSH server per node.

Throwaway keys and a known_hosts file live in a temporary directory; the bot connects with
host-key checking on, exactly as it does to a real cluster.
"""

from __future__ import annotations

import tempfile
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from bot.demo.sim import Simulator
from bot.demo.sshd import KeyMaterial, LoopbackSshServer
from bot.settings import ClusterConfig, NodeConfig

DEMO_USER = "clusterbot"
# The console demo's approvers when none are configured: try `/as alice`, then `/approve ID`.
# Never in Slack, where no user id is "alice": there configured approvers apply, or nobody.
DEMO_APPROVERS = ("alice", "bob")
NODES = ("node1", "node2", "node3")
VIPS = ("virtual_ip_1", "virtual_ip_2", "virtual_ip_3")
USAGE = ("/demo kill NODE | poweroff NODE | heal NODE | fail RESOURCE [NODE] | break RESOURCE | "
         "repair RESOURCE | desync NODE | maintenance on|off")


@dataclass
class DemoCluster:
    name: str = "prod-haproxy"
    sim: Simulator = field(default_factory=Simulator)
    servers: dict[str, LoopbackSshServer] = field(default_factory=dict)
    keys: KeyMaterial | None = None
    _stack: AsyncExitStack = field(default_factory=AsyncExitStack)

    async def __aenter__(self) -> DemoCluster:
        tmp = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="clusterbot-demo-")))
        self.keys = KeyMaterial.create(tmp)
        for node in NODES:
            server = LoopbackSshServer(self._handler(node), authorized_key=self.keys.public_key,
                                       username=DEMO_USER, name=node, input_handler=self._handler(node))
            self.servers[node] = await self._stack.enter_async_context(server)
        self.keys.write_known_hosts(self.servers.values())
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._stack.aclose()

    def _handler(self, node: str):  # type: ignore[no-untyped-def]
        async def handle(command: str, username: str, stdin: str = "") -> tuple[int, str, str]:
            done = self.sim.handle_line(node, command, stdin)
            return done.exit_status, done.stdout, done.stderr
        return handle

    def config(self, **extra: object) -> ClusterConfig:
        assert self.keys is not None, "use `async with DemoCluster()`"
        nodes = tuple(NodeConfig(name=n, host="127.0.0.1", port=s.port) for n, s in self.servers.items())
        return ClusterConfig.model_validate({
            "name": self.name, "nodes": nodes, "ssh_user": DEMO_USER,
            "ssh_key": self.keys.client_key_path, "known_hosts": self.keys.known_hosts,
            "sudo": True, "vips": VIPS, "everywhere": ("loadbalancer-clone",), **extra})

    async def demo_command(self, args: tuple[str, ...]) -> str:
        """`/demo ...`: break and heal the simulated cluster."""
        if not args:
            return USAGE
        verb, rest = args[0], args[1:]
        try:
            return await self._apply(verb, rest)
        except (KeyError, ValueError, IndexError) as exc:
            return f"demo: {exc.args[0] if exc.args else exc}\n{USAGE}"

    async def _apply(self, verb: str, rest: tuple[str, ...]) -> str:
        if verb in ("kill", "crash"):
            self.sim.crash(self._node(rest))
            return f"demo: {rest[0]} crashed (corosync and pacemaker killed, VIPs dropped)"
        if verb == "poweroff":
            self.sim.power_off(self._node(rest))
            await self.servers[rest[0]].set_reachable(False)
            return f"demo: {rest[0]} powered off (SSH unreachable)"
        if verb == "heal":
            self.sim.heal(self._node(rest))
            await self.servers[rest[0]].set_reachable(True)
            return f"demo: {rest[0]} healed"
        return self._apply_resource(verb, rest)

    def _apply_resource(self, verb: str, rest: tuple[str, ...]) -> str:
        actions = {"fail": lambda: self.sim.fail(rest[0], rest[1] if len(rest) > 1 else None),
                   "break": lambda: self.sim.break_resource(rest[0]),
                   "repair": lambda: self.sim.repair(rest[0]),
                   "desync": lambda: self.sim.desync(self._node(rest)),
                   "maintenance": lambda: self.sim.set_cluster_maintenance(rest[0] == "on")}
        if verb not in actions:
            raise ValueError(f"unknown demo action {verb!r}")
        if not rest:
            raise ValueError(f"{verb} needs an argument")
        actions[verb]()
        return f"demo: {verb} {' '.join(rest)} done"

    def _node(self, rest: tuple[str, ...]) -> str:
        if not rest or rest[0] not in self.servers:
            raise ValueError(f"name a node: {', '.join(self.servers)}")
        return rest[0]


def demo_approvers(configured: tuple[str, ...], *, slack: bool) -> tuple[tuple[str, ...], str]:
    """Who approves in the demo, and the line that says so at start.

    Configured approvers (CLUSTERBOT_APPROVERS or the config file) always apply; the console alone
    falls back to alice and bob, names nobody has in a real workspace."""
    if configured:
        return configured, f"demo: approvers are {', '.join(configured)}"
    if slack:
        return (), ("demo: nobody can approve: set CLUSTERBOT_APPROVERS to Slack user (U...) or "
                    "user-group (S...) ids, e.g. CLUSTERBOT_APPROVERS='[\"U0123ABCD\"]'")
    return DEMO_APPROVERS, "demo: approvers are alice and bob: /as alice, then /approve ID"
