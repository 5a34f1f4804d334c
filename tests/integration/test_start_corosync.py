"""`start-corosync` end to end on the demo simulator behind real loopback SSH: a corosync-only
cluster (Proxmox shape: pve-cluster installed; or plain Corosync without it) loses node3's
Corosync; the request, the approval, the run over SSH and the verification all go through the
bot's approval flow (bot/remediation.py), as they would from Slack."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.approvals import State
from bot.demo.cluster import DemoCluster
from bot.demo.sim import Simulator
from bot.errors import NotAllowed
from bot.poster import TextPoster
from bot.remediation import Remediation
from bot.runtime import Runtime, running
from bot.settings import Settings
from commands import lookup
from commands.spec import Invocation, Source

ASKER, APPROVER = "U0ASKER", "U0APPROVER"


@dataclass
class Rig:
    demo: DemoCluster
    rt: Runtime
    rem: Remediation
    out: io.StringIO

    def sent(self, node: str) -> list[str]:
        return [c for c in self.demo.servers[node].commands if "systemctl" in c and "is-active" not in c]

    async def request(self, *words: str) -> str:
        spec = lookup(words[0])
        assert spec is not None
        reply = await self.rem.request(Invocation(words[0], words[1:], user=ASKER, channel="C0PVE",
                                                  source=Source.CONSOLE), spec)
        assert reply.request_id is not None
        return reply.request_id

    async def approve(self, request_id: str) -> State:
        assert await self.rem.decide(request_id, APPROVER, "approve") is None
        await self.rem.wait_idle()
        req = await self.rt.store.get_request(request_id)
        assert req is not None
        return req.state


@asynccontextmanager
async def corosync_only(tmp: Path, *, proxmox: bool) -> AsyncIterator[Rig]:
    sim = Simulator(proxmox=proxmox, cluster_name="pve")
    if not proxmox:  # plain Corosync: the lab's shape with Pacemaker stopped everywhere
        for node in sim.nodes:
            sim.stop(node, "pacemaker")
    async with DemoCluster(name="pve", sim=sim) as demo:
        cluster = demo.config(kind="corosync", approvers=(APPROVER,), vips=(), everywhere=())
        settings = Settings(clusters=(cluster,), state_dir=tmp / "state", connect_timeout_s=3,
                            command_timeout_s=3)
        async with running(settings) as rt:
            out = io.StringIO()
            rem = await rt.approvals(TextPoster(out), default_channel="C0PVE")
            rem.verify_timeout_s = 10.0
            yield Rig(demo, rt, rem, out)


async def audit_verified(rig: Rig, request_id: str) -> bool:
    entries = [e for e in await rig.rt.store.audit_tail(50) if e.request_id == request_id]
    return any(e.event == "verify" and e.detail.get("verified") for e in entries)


async def test_proxmox_node_gets_corosync_and_pve_cluster_started(tmp_path: Path) -> None:
    async with corosync_only(tmp_path, proxmox=True) as rig:
        rig.demo.sim.stop("node3", "corosync")
        rig.demo.sim.stop("node3", "pve-cluster")
        rid = await rig.request("start-corosync", "pve", "node3")
        req = await rig.rt.store.get_request(rid)
        assert req is not None and req.node == "node3"
        assert "systemctl start corosync" in rig.out.getvalue()
        assert "systemctl start pve-cluster" in rig.out.getvalue()
        assert await rig.approve(rid) is State.SUCCEEDED
        assert await audit_verified(rig, rid), rig.out.getvalue()
        assert rig.sent("node3") == ["sudo -n systemctl is-enabled pve-cluster"] * 2 + [
            "sudo -n systemctl start corosync", "sudo -n systemctl start pve-cluster"]
        assert rig.demo.sim.snapshot().partitions == (("node1", "node2", "node3"),)
        assert rig.sent("node1") == rig.sent("node2") == []
        assert "pcs" not in "".join(c for s in rig.demo.servers.values() for c in s.commands)


async def test_plain_corosync_node_gets_corosync_only(tmp_path: Path) -> None:
    # No pve-cluster unit on the node (systemctl is-enabled says "No such file"): no second step.
    async with corosync_only(tmp_path, proxmox=False) as rig:
        rig.demo.sim.stop("node3", "corosync")
        rid = await rig.request("start-corosync", "pve", "node3")
        assert "pve-cluster" not in rig.out.getvalue().split("is-enabled")[0]
        assert await rig.approve(rid) is State.SUCCEEDED
        assert await audit_verified(rig, rid), rig.out.getvalue()
        assert [c for c in rig.sent("node3") if "start" in c] == ["sudo -n systemctl start corosync"]


async def test_refused_where_it_is_not_the_fix(tmp_path: Path) -> None:
    async with corosync_only(tmp_path, proxmox=True) as rig:
        with pytest.raises(NotAllowed, match="corosync is running on node2: nothing to start"):
            await rig.request("start-corosync", "pve", "node2")
        rig.demo.sim.stop("node3", "corosync")
        with pytest.raises(NotAllowed, match="`start` is not a fix for a corosync cluster"):
            await rig.request("start", "pve", "node3")
        with pytest.raises(NotAllowed, match="`resync` is not a fix for a corosync cluster"):
            await rig.request("resync", "pve", "node3")
        assert await rig.rt.store.pending_requests() == []
        assert not any("start" in c for s in rig.demo.servers.values() for c in s.commands)


async def test_corosync_back_before_the_approval_is_refused_not_run(tmp_path: Path) -> None:
    async with corosync_only(tmp_path, proxmox=True) as rig:
        rig.demo.sim.stop("node3", "corosync")
        rid = await rig.request("start-corosync", "pve", "node3")
        rig.demo.sim.handle("node3", ("systemctl", "start", "corosync"))  # by hand, meanwhile
        assert await rig.approve(rid) is State.REFUSED
        assert "nothing to start" in rig.out.getvalue()
        assert not any("start corosync" in c for c in rig.sent("node3"))
