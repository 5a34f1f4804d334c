"""Fake nodes that answer exactly what the lab's nodes answered: tests/fixtures/lab-2.1.5.

Each scenario's meta.json records every command as the bot sent it (`ssh nodeN ARGV`), its exit
code and stderr; the file `<node>.<kind>` holds its stdout. A node here answers a command it
recorded with that recording, anything else with "command not found". Real loopback SSH, so the
bot's collector, parsers, merge and renderers run on the real output, untouched.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from bot.demo.sshd import KeyMaterial, LoopbackSshServer
from bot.settings import Settings
from tests.conftest import FIXTURES
from tests.fakes.nodes import USER, FakeCluster, FakeNode, cluster_config

LAB2 = FIXTURES / "lab-2.1.5"
SCENARIOS = sorted(p.name for p in LAB2.iterdir() if p.is_dir())
Answer = tuple[int, str, str]


def recorded(scenario: str, node: str) -> dict[tuple[str, ...], Answer]:
    """What `node` answered in `scenario`, by argv."""
    meta = json.loads((LAB2 / scenario / "meta.json").read_text())
    out: dict[tuple[str, ...], Answer] = {}
    for o in meta["outputs"]:
        if o["node"] == node:
            argv = tuple(shlex.split(o["cmd"])[2:])  # "ssh node1 crm_mon ..." -> crm_mon ...
            out[argv] = (o["rc"], (LAB2 / scenario / f"{node}.{o['kind']}").read_text(), o["stderr"])
    return out


@dataclass
class CapturedNode:
    name: str
    answers: dict[tuple[str, ...], Answer]

    async def handle(self, command: str, username: str) -> Answer:
        argv = tuple(shlex.split(command))
        if argv[:2] == ("sudo", "-n"):
            argv = argv[2:]
        return self.answers.get(argv, (127, "", f"bash: {argv[0]}: command not found\n"))


@asynccontextmanager
async def captured_cluster(tmp: Path, scenario: str, *, kind: str = "pacemaker",
                           name: str = "pcmklab", **settings: object) -> AsyncIterator[FakeCluster]:
    """The three lab nodes of `scenario` behind loopback SSH servers, as a configured cluster."""
    keys = KeyMaterial.create(tmp / name)
    nodes = {n: CapturedNode(n, recorded(scenario, n)) for n in ("node1", "node2", "node3")}
    async with AsyncExitStack() as stack:
        servers = {n: await stack.enter_async_context(LoopbackSshServer(
            node.handle, authorized_key=keys.public_key, username=USER, name=n))
            for n, node in nodes.items()}
        keys.write_known_hosts(servers.values())
        config = cluster_config(name, servers, keys, kind=kind)
        opts = {"connect_timeout_s": 2.0, "command_timeout_s": 2.0, **settings}
        fakes = {n: FakeNode(n, server=servers[n]) for n in nodes}  # for .servers() and commands
        yield FakeCluster(fakes, keys, config, Settings(clusters=(config,), **opts))
