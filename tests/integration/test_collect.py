"""The collector against real loopback SSH servers that answer with real captures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.collect import Ask, Collector
from bot.pacemaker.health import Severity
from bot.pacemaker.merge import ClusterReport
from bot.render.status import status_doc
from bot.ssh import SshPool
from tests.fakes.nodes import FakeCluster, fake_cluster


async def collect(fc: FakeCluster, pool: SshPool | None = None) -> ClusterReport:
    async with SshPool() if pool is None else _borrowed(pool) as p:
        return await Collector(p, fc.settings).collect(fc.config)


class _borrowed:
    def __init__(self, pool: SshPool) -> None:
        self.pool = pool

    async def __aenter__(self) -> SshPool:
        return self.pool

    async def __aexit__(self, *exc: object) -> None:
        return None


def finding_keys(report: ClusterReport) -> set[tuple[str, str]]:
    return {f.key for f in report.findings}


async def test_all_healthy(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path) as fc:
        report = await collect(fc)
    assert report.healthy and report.reference is not None
    assert report.reference.dc == "node1" and report.reference.quorate is True
    assert all(r.ok for r in report.results)
    assert all(r.daemons is not None and not r.daemons.inactive for r in report.results)
    assert finding_keys(report) == {("fencing_disabled", "cluster")}
    # Every command went through sudo -n with the fixed template.
    for node in fc.nodes.values():
        assert node.server is not None
        assert "sudo -n crm_mon --one-shot --inactive --output-as=xml" in node.server.commands
        assert "sudo -n systemctl is-active corosync pacemaker pcsd" in node.server.commands


async def test_one_node_crashed_exit_102(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path, scenario="c_node3_crashed") as fc:
        report = await collect(fc)
    node3 = report.result("node3")
    assert node3 is not None and node3.view is not None and not node3.view.connected
    assert node3.view.status.code == 102
    keys = finding_keys(report)
    assert ("node_offline", "node3") in keys and ("pacemaker_down", "node3") not in keys
    assert "answers over SSH but Pacemaker is not running" in next(
        f.message for f in report.findings if f.key == ("node_offline", "node3"))
    assert report.reference is not None and report.reference.running_on("virtual_ip_3") == ("node1",)


async def test_slow_node_times_out_others_reported(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path, command_timeout_s=0.5) as fc:
        fc.nodes["node2"].mode = "slow"
        report = await collect(fc)
    node2 = report.result("node2")
    assert node2 is not None and node2.error_kind == "timeout" and node2.view is None
    assert "0.5" in (node2.error or "")
    assert report.result("node1").ok and report.result("node3").ok  # type: ignore[union-attr]
    f = next(f for f in report.findings if f.key == ("node_unreachable", "node2"))
    assert "although Pacemaker reports it online" in f.message and f.severity is Severity.WARNING


async def test_changed_host_key_is_refused_loudly(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path) as fc:
        server = fc.nodes["node3"].server
        assert server is not None
        server.rotate_host_key()
        report = await collect(fc)
        assert not any("crm_mon" in c for c in server.commands)  # nothing reached the node
    node3 = report.result("node3")
    assert node3 is not None and node3.error_kind == "host_key"
    assert "known_hosts" in (node3.error or "")
    assert report.result("node1").ok  # type: ignore[union-attr]


async def test_auth_failure(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path) as fc:
        from bot.demo.sshd import KeyMaterial

        other = KeyMaterial.create(tmp_path / "intruder", fc.servers())
        config = fc.config.model_copy(update={"ssh_key": other.client_key_path})
        settings = fc.settings.model_copy(update={"clusters": (config,)})
        async with SshPool() as pool:
            report = await Collector(pool, settings).collect(config)
    assert {r.error_kind for r in report.results} == {"auth"}
    assert "no_view" in {f.code for f in report.findings}


async def test_sudo_refused(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path) as fc:
        fc.nodes["node1"].mode = "sudo_refused"
        report = await collect(fc)
    node1 = report.result("node1")
    assert node1 is not None and node1.error_kind == "sudo"
    assert "password is required" in (node1.error or "")


async def test_garbage_output_is_a_parse_error(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path) as fc:
        fc.nodes["node2"].mode = "garbage"
        report = await collect(fc)
    node2 = report.result("node2")
    assert node2 is not None and node2.error_kind == "parse"
    assert "crm_mon exited 0 without XML" in (node2.error or "")


async def test_nodes_disagree(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path) as fc:
        # node3 answers with a lonely, quorum-less view while node1 and node2 agree.
        fc.nodes["node3"].scenario = "d_two_nodes_down"
        fc.nodes["node3"].as_node = "node1"
        report = await collect(fc)
    assert report.reference_node in ("node1", "node2")
    f = next(f for f in report.findings if f.code == "out_of_sync")
    assert f.subject == "node3" and str(f.remedy) == "resync node3"
    assert "lacks quorum" in f.message and "[node1]" in f.message


async def test_legacy_fallback_is_remembered(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path, names=("prod-haproxy01.estuary.tech",)) as fc:
        fc.nodes["prod-haproxy01.estuary.tech"].mode = "legacy"
        async with SshPool() as pool:
            collector = Collector(pool, fc.settings)
            first = await collector.collect(fc.config)
            await collector.collect(fc.config)
        server = fc.servers()[0]
    assert first.reference is not None and first.reference.format == "legacy"
    crm = [c for c in server.commands if "crm_mon" in c]
    assert crm == ["sudo -n crm_mon --one-shot --inactive --output-as=xml",
                   "sudo -n crm_mon -1 -r -X", "sudo -n crm_mon -1 -r -X"]


async def test_connection_reuse(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path) as fc:
        async with SshPool() as pool:
            collector = Collector(pool, fc.settings)
            for _ in range(5):
                assert (await collector.collect(fc.config)).healthy
        accepted = [s.connections_accepted for s in fc.servers()]
    assert accepted == [1, 1, 1]


async def test_reconnect_after_server_drops(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path) as fc:
        async with SshPool() as pool:
            collector = Collector(pool, fc.settings)
            assert (await collector.collect(fc.config)).healthy
            for server in fc.servers():
                await server.drop_connections()
            again = await collector.collect(fc.config)
        accepted = [s.connections_accepted for s in fc.servers()]
    assert again.healthy and accepted == [2, 2, 2]


async def test_unreachable_node(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path) as fc:
        server = fc.nodes["node2"].server
        assert server is not None
        await server.set_reachable(False)
        report = await collect(fc)
    node2 = report.result("node2")
    assert node2 is not None and node2.view is None and node2.error_kind in ("unreachable", "timeout")
    assert report.reference is not None


async def test_light_polls_ask_one_node_in_turn_and_notice_changes(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path) as fc:
        async with SshPool() as pool:
            collector = Collector(pool, fc.settings)
            first = await collector.collect(fc.config)
            def crm_mon_count() -> int:
                return sum(1 for s in fc.servers() for c in s.commands if "crm_mon" in c)
            before = crm_mon_count()
            for _ in range(6):
                assert await collector.collect(fc.config, ask=Ask.TURN) is first  # nothing new
            assert crm_mon_count() - before == 6  # one node per light poll
            assert len(collector.answer_times(fc.config.name)) == 1  # and only it has a time
            asked = [sum(1 for c in s.commands if "crm_mon" in c) for s in fc.servers()]
            assert asked == [3, 3, 3]  # the first full poll, then two turns each
            fc.set_scenario("c_node3_crashed")
            before = crm_mon_count()
            changed = await collector.collect(fc.config, ask=Ask.TURN)
            assert crm_mon_count() - before == 3  # a change: one crm_mon per node, none asked twice
        assert changed is not first
        assert ("node_offline", "node3") in {f.key for f in changed.findings}


async def test_light_polls_report_a_daemon_change_that_crm_mon_does_not_show(tmp_path: Path) -> None:
    # pcsd dying changes nothing in crm_mon: only a turn's detail refresh can see it, and the
    # full poll it triggers must keep that fresh answer rather than the node's old details.
    async with fake_cluster(tmp_path, detail_every=2) as fc, SshPool() as pool:
        collector = Collector(pool, fc.settings)
        first = await collector.collect(fc.config, ask=Ask.TURN)
        fc.nodes["node2"].inactive = frozenset({"pcsd"})
        reports = [await collector.collect(fc.config, ask=Ask.TURN) for _ in range(6)]
        asked = sum(1 for c in fc.nodes["node2"].server.commands if "systemctl" in c)  # type: ignore[union-attr]
    # node2's details come up on its second turn: poll 5 of 6 (turns go node1, node2, node3).
    seen = [("daemon_inactive", "node2") in finding_keys(r) for r in reports]
    assert seen == [False, False, False, False, True, True]
    assert reports[3] is first  # unchanged before
    # Once a daemon is seen inactive its node's details are asked every poll (its return would
    # show nowhere else): poll 6 asked them again and found the same.
    assert asked == 3 and finding_keys(reports[5]) == finding_keys(reports[4])


async def test_a_detail_turn_that_only_sees_a_new_quorumtool_clock_changes_nothing(tmp_path: Path) -> None:
    # corosync-quorumtool prints the node's clock: an unchanged cluster must still give the very
    # same report (no diff, no store write) when a turn asks a node's details again.
    clock = [datetime(2026, 11, 26, 3, 0)]
    async with fake_cluster(tmp_path, detail_every=1) as fc, SshPool() as pool:
        for node in fc.nodes.values():
            node.clock = lambda: clock[0]
        collector = Collector(pool, fc.settings)
        first = await collector.collect(fc.config, ask=Ask.TURN)
        assert first.results[0].corosync is not None and first.results[0].corosync.quorum is not None
        assert first.results[0].corosync.quorum.date is not None  # the captures carry the clock line
        polls = []
        for _ in range(6):
            clock[0] += timedelta(seconds=1)
            polls.append(await collector.collect(fc.config, ask=Ask.TURN))
        asked = sum(1 for s in fc.servers() for c in s.commands if "quorumtool" in c)
    assert all(p is first for p in polls)
    assert asked == 3 + 6  # each turn did ask its node's details


async def test_a_hung_crm_mon_costs_one_timeout_per_light_poll(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path, command_timeout_s=0.5) as fc, SshPool() as pool:
        collector = Collector(pool, fc.settings)
        await collector.collect(fc.config, ask=Ask.TURN)
        node1 = fc.nodes["node1"]
        node1.mode = "slow"
        asked = [c for c in node1.server.commands if "crm_mon" in c]  # type: ignore[union-attr]
        report = await collector.collect(fc.config, ask=Ask.TURN)  # node1's turn: crm_mon hangs
        hung = [c for c in node1.server.commands if "crm_mon" in c]  # type: ignore[union-attr]
        assert len(hung) - len(asked) == 1  # not asked again by the full poll it triggered
        assert report.result("node1").error_kind == "timeout"  # type: ignore[union-attr]
        node1.mode = "capture"
        node1.release.set()
        recovered = await collector.collect(fc.config, ask=Ask.TURN)
        assert recovered.result("node1").ok  # type: ignore[union-attr]


async def test_a_status_asks_a_hung_crm_mon_once(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path, command_timeout_s=0.5) as fc, SshPool() as pool:
        collector = Collector(pool, fc.settings)
        await collector.collect(fc.config)
        fc.nodes["node2"].mode = "slow"
        server = fc.nodes["node2"].server
        assert server is not None
        before = sum("crm_mon" in c for c in server.commands)
        report = await collector.collect(fc.config)
        assert sum("crm_mon" in c for c in server.commands) - before == 1
        assert report.result("node2").error_kind == "timeout"  # type: ignore[union-attr]
        fc.nodes["node2"].release.set()


async def test_status_reuses_an_unchanged_nodes_details_for_a_few_seconds(tmp_path: Path) -> None:
    clock = [datetime(2026, 11, 26, 3, 0, tzinfo=UTC)]

    def asked(word: str) -> int:
        return sum(1 for s in fc.servers() for c in s.commands if word in c)

    def counts() -> tuple[int, int, int, int]:
        return (asked("crm_mon"), asked("systemctl"), asked("quorumtool"), asked("cfgtool"))

    def later(seconds: float) -> None:
        clock[0] += timedelta(seconds=seconds)

    async with fake_cluster(tmp_path) as fc, SshPool() as pool:
        collector = Collector(pool, fc.settings, now=lambda: clock[0])
        await collector.collect(fc.config)
        assert counts() == (3, 3, 3, 3)
        later(4)
        report = await collector.collect(fc.config)
        assert counts() == (6, 3, 3, 3)  # crm_mon of every node, always; details reused
        assert set(collector.answer_times(fc.config.name)) == {"node1", "node2", "node3"}
        assert report.collected_at == clock[0]
        titles = [s.title for s in status_doc(report, fc.config.expectations).sections]
        assert "Daemons (as of 4s ago)" in titles and any(t.startswith("Corosync (as of 4s") for t in titles)
        later(7)  # 11 s after the details were asked: older than status_detail_max_age_s
        report = await collector.collect(fc.config)
        assert counts() == (9, 6, 6, 6)
        assert "Daemons" in [s.title for s in status_doc(report, fc.config.expectations).sections]
        await collector.collect(fc.config, ask=Ask.ALL)  # what remediation decides on
        assert counts() == (12, 9, 9, 9)
        later(1)
        fc.set_scenario("c_node3_crashed")  # every node's crm_mon answer changes...
        changed = await collector.collect(fc.config)
        assert counts() == (15, 12, 12, 12)  # ...so every node's details are asked with it
        assert ("node_offline", "node3") in finding_keys(changed)


async def test_status_detail_max_age_zero_always_asks_everything(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path) as fc, SshPool() as pool:
        settings = fc.settings.model_copy(update={"status_detail_max_age_s": 0.0})
        collector = Collector(pool, settings)
        for _ in range(3):
            await collector.collect(fc.config)
        assert sum(1 for s in fc.servers() for c in s.commands if "systemctl" in c) == 9


async def test_a_cold_status_asks_each_node_over_one_session(tmp_path: Path) -> None:
    """A cold `clusterbot status` (cron): each node's five questions (crm_mon, daemons, two
    Corosync tools, crmadmin) down one new read shell at once, not one session each; once warm,
    the open shells answer concurrently."""
    async with fake_cluster(tmp_path) as fc, SshPool() as pool:
        report = await collect(fc, pool)
        assert all(r.ok and r.daemons is not None and r.corosync is not None for r in report.results)
        assert all(r.controller is not None for r in report.results)
        for server in fc.servers():
            assert (server.connections_accepted, server.shells, len(server.commands)) == (1, 1, 5)
        assert (pool.stats.shells_opened, pool.stats.shell_commands, pool.stats.commands_run) == (3, 15, 15)
        again = await Collector(pool, fc.settings).collect(fc.config, ask=Ask.ALL)
        assert [r.ok for r in again.results] == [True] * 3
        assert all(s.connections_accepted == 1 and len(s.commands) == 10 for s in fc.servers())
