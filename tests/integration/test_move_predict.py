"""`move` and `clear` by pcs version, and predictions that are Pacemaker's (crm_simulate on the CIB
with the change), end to end: signed Slack requests, the fake Slack, the simulated cluster over
real SSH. The simulator behaves like the pcs it claims: 0.11 refuses the plain move of a VIP."""

from __future__ import annotations

import json
from typing import Any

from bot.approvals import State
from bot.demo.sim import Completed, Simulator
from tests.fakes.botharness import Harness, running_bot
from tests.integration.test_approvals import ask, settle, state, text_of

BOSS = "U0BOSS"


def shown(call: Any) -> str:
    """What a reader sees of a message (arrows and all)."""
    return json.dumps(call.params.get("blocks", []), ensure_ascii=False)


def root_of(h: Harness, req: Any) -> Any:
    return next(c for c in h.slack.calls if c.method == "chat.postMessage" and c.ok
                and req.id in text_of(c) and "requested by" in text_of(c))


async def approve(h: Harness, req: Any) -> None:
    await h.click("clusterbot:approve", req.id, BOSS, message_ts=root_of(h, req).response["ts"])
    await h.slack.wait_for("chat.postMessage", lambda c: "verified" in text_of(c)
                           and c.params.get("thread_ts") == root_of(h, req).response["ts"], timeout=30)
    await settle(h)


async def test_move_then_clear_on_pcs_0_11_with_pacemakers_predictions() -> None:
    async with running_bot(cluster={"approvers": (BOSS,)}) as h:
        req = await ask(h, "move prod-haproxy virtual_ip_1 node3")
        assert req.argv == ("pcs", "resource", "move-with-constraint", "virtual_ip_1", "node3")
        assert req.prediction == ("Pacemaker predicts (crm_simulate with this change): "
                                  "virtual_ip_1 would move node1 → node3")
        assert "virtual_ip_1 would move node1 → node3" in shown(root_of(h, req))
        # pcs --version unprivileged; the prediction's two commands exactly as sudoers allows them.
        assert h.node_commands("pcs --version") == ["pcs --version"]
        assert h.node_commands("cibadmin") == ["sudo -n cibadmin --query"]
        assert h.node_commands("crm_simulate") == ["sudo -n crm_simulate --xml-pipe --simulate"]
        await approve(h, req)
        assert await state(h, req.id) is State.SUCCEEDED
        assert h.demo.sim.snapshot().vips["virtual_ip_1"] == "node3"

        clear = await ask(h, "clear prod-haproxy virtual_ip_1")
        assert clear.argv == ("pcs", "resource", "clear", "virtual_ip_1")
        assert clear.prediction is not None
        assert clear.prediction.endswith("virtual_ip_1 would move node3 → node1")
        await approve(h, clear)
        assert h.demo.sim.snapshot().vips["virtual_ip_1"] == "node1"


async def test_move_on_pcs_0_10_is_the_plain_move() -> None:
    async with running_bot(cluster={"approvers": (BOSS,)}, sim=Simulator(pcs_version="0.10.8")) as h:
        req = await ask(h, "move prod-haproxy virtual_ip_2 node3")
        assert req.argv == ("pcs", "resource", "move", "virtual_ip_2", "node3")
        await approve(h, req)
        assert await state(h, req.id) is State.SUCCEEDED
        assert h.demo.sim.snapshot().vips["virtual_ip_2"] == "node3"


async def test_standby_prediction_and_actions_that_never_predict_say_why() -> None:
    async with running_bot(cluster={"approvers": (BOSS,)}) as h:
        req = await ask(h, "standby prod-haproxy node2")
        assert req.prediction is not None and "virtual_ip_2 would move node2 → " in req.prediction
        assert "loadbalancer:1 would stop on node2" in req.prediction
        await h.demo.demo_command(("fail", "virtual_ip_3"))
        cleanup = await ask(h, "cleanup prod-haproxy virtual_ip_3")
        assert cleanup.prediction is not None
        assert cleanup.prediction.startswith("no prediction for cleanup: Pacemaker re-probes")
        assert "*Prediction:* no prediction for cleanup" in shown(root_of(h, cleanup))


class _BrokenSimulate(Simulator):
    """A node whose crm_simulate fails (as one with a CIB newer than its tools would)."""

    def handle(self, node: str, argv: Any, stdin: str = "") -> Completed:
        if "crm_simulate" in argv:
            return Completed(65, "", "crm_simulate: Update does not conform to the configured schema\n")
        return super().handle(node, argv, stdin)


async def test_a_failed_simulation_is_said_as_such() -> None:
    async with running_bot(cluster={"approvers": (BOSS,)}, sim=_BrokenSimulate()) as h:
        req = await ask(h, "move prod-haproxy virtual_ip_1 node3")
        assert req.prediction == ("crm_simulate failed on node1: exited 65: "
                                  "crm_simulate: Update does not conform to the configured schema")


class _NoPcs(Simulator):
    """A node without pcs (Proxmox VE ships none)."""

    def handle(self, node: str, argv: Any, stdin: str = "") -> Completed:
        if list(argv)[:2] == ["pcs", "--version"]:
            return Completed(127, "", "bash: pcs: command not found\n")
        return super().handle(node, argv, stdin)


async def test_move_without_pcs_is_refused_up_front() -> None:
    async with running_bot(cluster={"approvers": (BOSS,)}, sim=_NoPcs()) as h:
        await h.slash("move prod-haproxy virtual_ip_1 node3")
        await h.slack.wait_for("response_url", lambda c: "pcs is not installed on node1" in str(c.params),
                               timeout=10)
        assert await h.bot.runtime.store.pending_requests() == []
        assert h.node_commands("resource move") == []


class _NoCibQuery(Simulator):
    """A node whose sudoers lacks `cibadmin --query` (sudo says so, status 1)."""

    def handle(self, node: str, argv: Any, stdin: str = "") -> Completed:
        if "cibadmin" in argv:
            return Completed(1, "", "sudo: a password is required\n")
        return super().handle(node, argv, stdin)


async def test_a_cib_that_cannot_be_read_is_said_as_such() -> None:
    async with running_bot(cluster={"approvers": (BOSS,)}, sim=_NoCibQuery()) as h:
        req = await ask(h, "clear prod-haproxy virtual_ip_1")
        assert req.prediction is not None
        assert req.prediction.startswith("cibadmin --query failed on node1: ")
        assert "sudo refused `cibadmin`" in req.prediction and h.node_commands("crm_simulate") == []
