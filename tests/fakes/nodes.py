"""Fake cluster nodes: real loopback SSH servers answering with the real captures.

Each node serves one scenario's capture for its own point of view (or a scripted misbehaviour),
so the collector runs against a genuine SSH handshake and genuine Pacemaker output.

Corosync: `corosync-quorumtool -s` answers with the scenario's own capture and exit code;
`corosync-cfgtool -s` with the lab-corosync-3 capture of the same situation (the Pacemaker lab
recorded no cfgtool output), picked by which nodes' corosync is down in the scenario.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from bot.demo.sshd import KeyMaterial, LoopbackSshServer
from bot.settings import ClusterConfig, NodeConfig, Settings
from tests.conftest import FIXTURES, PCMK

USER = "clusterbot"
LEGACY_XML = (PCMK.parent / "crm_mon" / "legacy-1.1.xml").read_text()
LAB = FIXTURES / "corosync" / "lab-corosync-3"
CRMADMIN = FIXTURES / "crmadmin-2.1.5"  # deploy/lab/capture-controller.sh
LAB_NODES = ("node1", "node2", "node3")
# Which lab-corosync-3 scenario shows the same corosync nodes down as a Pacemaker scenario.
LAB_BY_DOWN = {frozenset(): "healthy", frozenset({"node3"}): "node3_down",
               frozenset({"node2", "node3"}): "node2_node3_down"}


def _rc(scenario: str, node: str, kind: str) -> int:
    meta = json.loads((PCMK / scenario / "meta.json").read_text())
    return next(o["rc"] for o in meta["outputs"] if o["node"] == node and o["kind"] == kind)


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def quorumtool_answer(scenario: str, node: str, when: datetime | None = None) -> tuple[int, str, str]:
    """What `corosync-quorumtool -s` really answered on that node in that scenario; `when`: the
    time its "Date:" line shows instead (the real tool prints the node's clock at each call)."""
    base = PCMK / scenario / f"{node}.quorumtool.txt"
    text = _text(base)
    if when is not None:
        text = _DATE.sub(f"Date:             {when:%a %b %d %H:%M:%S %Y}", text)
    return (_rc(scenario, node, "quorumtool.txt"), text, _text(base.with_name(base.name + ".stderr")))


_DATE = re.compile(r"^Date:[^\n]*", re.M)


def corosync_down(scenario: str) -> frozenset[str]:
    meta = json.loads((PCMK / scenario / "meta.json").read_text())
    return frozenset(o["node"] for o in meta["outputs"]
                     if o["kind"] == "quorumtool.txt" and "CMAP" in o["stderr"])


def cfgtool_answer(scenario: str, node: str) -> tuple[int, str, str]:
    """`corosync-cfgtool -s` from the lab capture with the same corosync nodes down."""
    lab = LAB_BY_DOWN[corosync_down(scenario)]
    meta = json.loads((LAB / "meta.json").read_text())
    out = next(o for o in meta["outputs"]
               if o["scenario"] == lab and o["node"] == node and o["kind"] == "cfgtool")
    stderr = out["stderr"] + "\n" if out["stderr"] else ""
    return out["rc"], (LAB / out["file"]).read_text(), stderr


def capture_answer(scenario: str, node: str) -> tuple[int, str, str]:
    """What `crm_mon` really answered on that node in that scenario: rc, stdout, stderr."""
    base = PCMK / scenario
    err = base / f"{node}.crm_mon.txt.stderr"
    return (_rc(scenario, node, "crm_mon.xml"), (base / f"{node}.crm_mon.xml").read_text(),
            err.read_text() if err.exists() else "")


@dataclass
class FakeNode:
    name: str
    scenario: str = "a_healthy"
    # capture | garbage | legacy | sudo_refused | slow | exit102 | corosync_sudo_refused (sudoers
    # written for crm_mon and systemctl only)
    mode: str = "capture"
    release: asyncio.Event = field(default_factory=asyncio.Event)  # frees a "slow" node
    as_node: str | None = None  # serve another node's capture (a node that disagrees)
    server: LoopbackSshServer | None = None
    inactive: frozenset[str] = frozenset()  # units `systemctl is-active` reports inactive
    clock: Callable[[], datetime] | None = None  # quorumtool's "Date:" line; None: the capture's
    # crmadmin: None answers "command not found" (a node without it); "capture" the lab's answer
    # (CRMADMIN: <node>.idle.xml, or <node>.crashed.xml while its crm_mon says 102); "refused"
    # is a sudoers file written before the bot asked crmadmin; "slow" answers once `release` is set;
    # "old" is a crmadmin without --output-as.
    controller: str | None = "capture"

    async def handle(self, command: str, username: str) -> tuple[int, str, str]:
        argv = shlex.split(command)
        if argv[:2] == ["sudo", "-n"]:
            refused = argv[2:3] == ["crmadmin"] and self.controller == "refused"
            if self.mode == "sudo_refused" or refused or (
                    self.mode == "corosync_sudo_refused" and argv[2:3] and argv[2].startswith("corosync-")):
                return 1, "", "sudo: a password is required\n"
            argv = argv[2:]
        if argv[:2] == ["systemctl", "is-active"]:
            return self._is_active(argv[2:])
        if argv == ["pacemakerd", "--version"]:
            return 0, "Pacemaker 2.1.5\nWritten by Andrew Beekhof and the Pacemaker project\n", ""
        # Only the lab's node names have Corosync captures; other names lack the tools.
        if argv == ["corosync-quorumtool", "-s"] and self.name in LAB_NODES:
            return quorumtool_answer(self.scenario, self.name, self.clock() if self.clock else None)
        if argv == ["corosync-cfgtool", "-s"] and self.name in LAB_NODES:
            return cfgtool_answer(self.scenario, self.name)
        if argv[0] == "crmadmin" and self.controller == "old":  # Pacemaker 2.0: getopt's words
            return 64, "", "crmadmin: unrecognized option '--output-as=xml'\n"
        if argv[0] == "crmadmin" and self.controller in ("capture", "slow"):
            if self.controller == "slow":  # a controller too busy to answer until released
                await self.release.wait()
            return self._crmadmin()
        if argv[0] != "crm_mon":
            return 127, "", f"bash: {argv[0]}: command not found\n"
        return await self._crm_mon(argv)

    def _crmadmin(self) -> tuple[int, str, str]:
        down = capture_answer(self.scenario, self.as_node or self.name)[0] == 102
        name = f"{self.name}.crashed.xml" if down else f"{self.name}.idle.xml"
        meta = json.loads((CRMADMIN / "meta.json").read_text())
        rc = next((o["rc"] for o in meta["outputs"] if o["file"] == name), None)
        if rc is None:  # not captured: say so rather than make it up
            return 127, "", f"{name} was not captured\n"
        return rc, (CRMADMIN / name).read_text(), ""

    def _is_active(self, units: list[str]) -> tuple[int, str, str]:
        """Like systemctl: one state per unit asked, exit 3 when any is not active."""
        states = ["inactive" if u in self.inactive else "active" for u in units if not u.startswith("-")]
        return (3 if "inactive" in states else 0), "".join(f"{s}\n" for s in states), ""

    async def _crm_mon(self, argv: list[str]) -> tuple[int, str, str]:
        if self.mode == "slow":
            await self.release.wait()
        if self.mode == "garbage":
            return 0, "Segmentation fault <core dumped> \x00\x01", ""
        if self.mode == "legacy":
            if "--output-as=xml" in argv:
                return 64, "", "crm_mon: unrecognized option '--output-as=xml'\n"
            return 0, LEGACY_XML, ""
        return capture_answer(self.scenario, self.as_node or self.name)


@dataclass
class FakeCluster:
    nodes: dict[str, FakeNode]
    keys: KeyMaterial
    config: ClusterConfig
    settings: Settings

    def servers(self) -> list[LoopbackSshServer]:
        return [n.server for n in self.nodes.values() if n.server is not None]

    def set_scenario(self, scenario: str) -> None:
        for node in self.nodes.values():
            node.scenario = scenario


def cluster_config(name: str, servers: dict[str, LoopbackSshServer], keys: KeyMaterial,
                   **extra: object) -> ClusterConfig:
    nodes = tuple(NodeConfig(name=n, host="127.0.0.1", port=s.port) for n, s in servers.items())
    pacemaker = {"vips": ("virtual_ip_1", "virtual_ip_2", "virtual_ip_3"),
                 "everywhere": ("loadbalancer-clone",)} if extra.get("kind") != "corosync" else {}
    return ClusterConfig.model_validate({
        "name": name, "nodes": nodes, "ssh_user": USER, "ssh_key": keys.client_key_path,
        "known_hosts": keys.known_hosts, "sudo": True, **pacemaker, **extra})


@asynccontextmanager
async def fake_cluster(tmp: Path, scenario: str = "a_healthy", name: str = "prod-haproxy",
                       names: tuple[str, ...] = ("node1", "node2", "node3"),
                       kind: str = "pacemaker", **settings: object) -> AsyncIterator[FakeCluster]:
    keys = KeyMaterial.create(tmp / name)
    nodes = {n: FakeNode(n, scenario) for n in names}
    async with AsyncExitStack() as stack:
        for node in nodes.values():
            node.server = await stack.enter_async_context(LoopbackSshServer(
                node.handle, authorized_key=keys.public_key, username=USER, name=node.name))
        keys.write_known_hosts([n.server for n in nodes.values() if n.server])
        servers = {n: node.server for n, node in nodes.items() if node.server}
        config = cluster_config(name, servers, keys, kind=kind)
        opts = {"connect_timeout_s": 2.0, "command_timeout_s": 2.0, **settings}
        yield FakeCluster(nodes, keys, config, Settings(clusters=(config,), **opts))
        for node in nodes.values():
            node.release.set()
