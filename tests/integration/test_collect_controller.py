"""The collector reads whether Pacemaker is acting (crmadmin, issue 14) from real loopback SSH
servers answering the lab's captures, and degrades to settling's approximations, logged once and
never failing the status, where crmadmin cannot answer."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from bot.collect import Ask, Collector
from bot.pacemaker.snapshot import snapshot
from bot.ssh import SshPool
from tests.fakes.nodes import fake_cluster

CRMADMIN = "crmadmin --status="


def _asked(fc: object, node: str) -> int:
    server = fc.nodes[node].server  # type: ignore[attr-defined]
    return sum(1 for c in server.commands if CRMADMIN in c)


async def test_each_node_is_asked_about_its_own_controller_and_the_dc_reads_idle(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path) as fc, SshPool() as pool:
        report = await Collector(pool, fc.settings).collect(fc.config, ask=Ask.ALL)
    assert report.healthy
    assert [(r.node, r.controller.state if r.controller else None) for r in report.results] == [
        ("node1", "S_IDLE"), ("node2", "S_NOT_DC"), ("node3", "S_NOT_DC")]
    for name, node in fc.nodes.items():
        assert node.server is not None
        assert f"sudo -n crmadmin --status={name} --output-as=xml --timeout=1s" in node.server.commands
    assert snapshot(report, fc.config.expectations).pacemaker_acting is False


@pytest.mark.parametrize(("mode", "why"), [
    ("refused", "sudo"),  # a sudoers file from before the bot asked crmadmin
    (None, "crmadmin exited 127 without XML: bash: crmadmin: command not found"),
    ("old", "crmadmin exited 64 without XML: crmadmin: unrecognized option '--output-as=xml'"),
])
async def test_a_node_that_cannot_answer_crmadmin_is_logged_once_and_not_asked_again(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: str | None, why: str) -> None:
    async with fake_cluster(tmp_path) as fc, SshPool() as pool:
        fc.nodes["node1"].controller = mode
        collector = Collector(pool, fc.settings)
        with caplog.at_level(logging.DEBUG, logger="bot.collect"):
            reports = [await collector.collect(fc.config, ask=Ask.ALL) for _ in range(3)]
        assert all(r.healthy and all(n.ok for n in r.results) for r in reports)  # the status is whole
        assert [_asked(fc, n) for n in ("node1", "node2", "node3")] == [1, 3, 3]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and warned[0].startswith("node1: cannot read whether Pacemaker is acting")
    assert why in warned[0]
    report = reports[-1]
    assert report.result("node1").controller is None  # type: ignore[union-attr]
    # Without the DC's word it is not "idle": settling keeps its approximations.
    assert snapshot(report, fc.config.expectations).pacemaker_acting is None


async def test_a_crashed_nodes_controller_is_unanswered_for_now_and_asked_again(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with fake_cluster(tmp_path, scenario="c_node3_crashed") as fc, SshPool() as pool:
        collector = Collector(pool, fc.settings)
        with caplog.at_level(logging.INFO, logger="bot.collect"):
            for _ in range(2):
                report = await collector.collect(fc.config, ask=Ask.ALL)
        assert _asked(fc, "node3") == 2
    assert report.result("node3").controller is None  # type: ignore[union-attr]
    assert report.result("node1").controller is not None  # type: ignore[union-attr]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert snapshot(report, fc.config.expectations).pacemaker_acting is False  # the DC answered


async def test_a_controller_too_busy_to_answer_does_not_delay_the_nodes_answer(tmp_path: Path) -> None:
    """Measured on the lab: during a transition the DC's crmadmin can take its whole 1 s timeout.
    The poll that shows a node lost must not wait for it."""
    async with fake_cluster(tmp_path) as fc, SshPool() as pool:
        collector = Collector(pool, fc.settings)
        await collector.collect(fc.config, ask=Ask.ALL)  # warm: open read shells
        fc.nodes["node1"].controller = "slow"
        started = time.perf_counter()
        report = await collector.collect(fc.config, ask=Ask.ALL)
        took = time.perf_counter() - started
        assert report.healthy and report.result("node1").controller is None  # type: ignore[union-attr]
        assert report.result("node2").controller is not None  # type: ignore[union-attr]
        assert took < fc.settings.command_timeout_s / 2  # it did not wait for crmadmin to time out
        assert snapshot(report, fc.config.expectations).pacemaker_acting is None  # not "idle"
        fc.nodes["node1"].release.set()  # the late answer finishes on its own, its shell is reused
        again = await collector.collect(fc.config, ask=Ask.ALL)
        assert again.result("node1").controller is not None  # type: ignore[union-attr]


async def test_a_daemon_said_inactive_is_asked_again_on_the_next_light_poll(tmp_path: Path) -> None:
    """Recorded resync: pcsd restarted in 8 s while crm_mon showed nothing; the kept "pcsd is not
    active on node2" outlived its recovery until node2's details came round again (6 turns)."""
    async with fake_cluster(tmp_path) as fc, SshPool() as pool:
        collector = Collector(pool, fc.settings)
        fc.nodes["node2"].inactive = frozenset({"pcsd"})
        first = await collector.collect(fc.config, ask=Ask.ALL)
        assert first.result("node2").daemons.inactive == ("pcsd",)  # type: ignore[union-attr]
        fc.nodes["node2"].inactive = frozenset()
        for ask in (Ask.TURN, Ask.STATUS):
            fc.nodes["node2"].inactive = frozenset({"pcsd"})
            await collector.collect(fc.config, ask=Ask.ALL)
            fc.nodes["node2"].inactive = frozenset()
            again = await collector.collect(fc.config, ask=ask)
            assert again.result("node2").daemons.inactive == (), ask  # type: ignore[union-attr]
            assert again.healthy


async def test_a_corosync_only_cluster_is_never_asked_crmadmin(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path, scenario="h_pacemaker_stopped", kind="corosync") as fc, \
            SshPool() as pool:
        await Collector(pool, fc.settings).collect(fc.config, ask=Ask.ALL)
        assert all(_asked(fc, n) == 0 for n in fc.nodes)
