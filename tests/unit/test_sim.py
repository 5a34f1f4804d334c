"""The cluster simulator against the real Pacemaker 2.1.5 captures, plus its command surface.

The lab's own story (meta.json actions, in capture order) is replayed on a Simulator; at each
scenario every node's crm_mon XML and corosync-quorumtool output is compared with the capture.
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from bot.demo.sim import Completed, Simulator
from tests.conftest import NODES, PCMK, capture

CRM_MON = ["crm_mon", "-1", "--output-as=xml"]  # exactly what the lab ran
BOT_CRM_MON = ["crm_mon", "--one-shot", "--inactive", "--output-as=xml"]
QUORUM = ["corosync-quorumtool", "-s"]
VIPS = ("virtual_ip_1", "virtual_ip_2", "virtual_ip_3")


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float = 1.0) -> None:
        self.now += timedelta(seconds=seconds)


def new_sim() -> tuple[Simulator, Clock]:
    clock = Clock(datetime(2026, 11, 25, 21, 20, 5, tzinfo=UTC))
    return Simulator(clock=clock), clock


def meta(scenario: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PCMK / scenario / "meta.json").read_text())
    return data


def meta_rc(scenario: str, node: str, kind: str) -> int:
    return next(o["rc"] for o in meta(scenario)["outputs"]
                if o["node"] == node and o["kind"] == kind)


# ---------------------------------------------------------------- replaying the lab

# The lab's out-of-band faults (nsenter), mapped to the simulator's mutators.
LAB_FAULTS: dict[str, Callable[[Simulator, str], None]] = {
    "lab/nodectl.sh crash": lambda sim, node: sim.crash(node),
    "rm -v /run/Dummy-loadbalancer.state": lambda sim, node: sim.fail("loadbalancer", node),
    "ip addr del 10.224.77.101/24 dev eth0": lambda sim, node: sim.fail("virtual_ip_1", node),
}
# Between f2 and c the lab switched maintenance off again; only c's last_change records it.
UNRECORDED = {"c_node3_crashed": [("node1", "pcs property set maintenance-mode=false")]}


@dataclass(frozen=True)
class Step:
    actions: list[tuple[dict[str, Any], Completed]]
    crm_mon: dict[str, Completed]
    quorum: dict[str, Completed]


def replay() -> dict[str, Step]:
    sim, clock = new_sim()
    scenarios = sorted((m["captured_at"], m["scenario"])
                       for m in (meta(p.name) for p in PCMK.iterdir() if p.is_dir()))
    steps = {}
    for _, name in scenarios:
        for node, line in UNRECORDED.get(name, []):
            assert sim.handle_line(node, line).exit_status == 0
        actions = [(a, run_action(sim, a)) for a in meta(name)["actions"]]
        clock.tick(5)
        steps[name] = Step(actions, {n: sim.handle(n, CRM_MON) for n in NODES},
                           {n: sim.handle(n, QUORUM) for n in NODES})
    return steps


def run_action(sim: Simulator, action: dict[str, Any]) -> Completed:
    how, _, command = action["cmd"].partition(": ")
    if how == "ssh":
        return sim.handle_line(action["node"], command)
    LAB_FAULTS[command](sim, action["node"])
    return Completed(0, "", "")


@pytest.fixture(scope="module")
def lab() -> dict[str, Step]:
    return replay()


CASES = [(s, n) for s in sorted(p.name for p in PCMK.iterdir() if p.is_dir()) for n in NODES]


# ---------------------------------------------------------------- comparing documents


def shape(xml: bytes) -> set[tuple[str, frozenset[str]]]:
    """Every element as (path without indexes, its attribute names): values ignored."""
    root = etree.fromstring(xml)
    tree = root.getroottree()
    return {(re.sub(r"\[\d+\]", "", tree.getpath(el)), frozenset(el.attrib)) for el in root.iter()}


def semantics(xml: bytes) -> dict[str, Any]:
    """What a scenario means, with no time values and no operation call ids."""
    root = etree.fromstring(xml)
    summary = root.find("summary")
    assert summary is not None
    last_change = dict(summary.find("last_change").attrib)  # type: ignore[union-attr]
    del last_change["time"]
    return {
        "current_dc": dict(summary.find("current_dc").attrib),  # type: ignore[union-attr]
        "last_change": last_change,
        "counts": [dict(summary.find(t).attrib)  # type: ignore[union-attr]
                   for t in ("nodes_configured", "resources_configured", "cluster_options")],
        "nodes": [dict(n.attrib) for n in root.iterfind("nodes/node")],
        "resources": [(el.tag, dict(el.attrib)) for el in root.find("resources").iter()],  # type: ignore[union-attr]
        "fail_counts": sorted((node.get("name"), rh.get("id"), rh.get("fail-count"))
                              for node in root.iterfind("node_history/node")
                              for rh in node.iterfind("resource_history[@fail-count]")),
        "failures": sorted(tuple(sorted((k, v) for k, v in f.attrib.items()
                                        if k not in ("call", "last-rc-change", "exec")))
                           for f in root.iterfind("failures/failure")),
        "status": dict(root.find("status").attrib),  # type: ignore[union-attr]
    }


def variable_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith(("Date:", "Ring ID:"))]


# ---------------------------------------------------------------- crm_mon vs the captures


@pytest.mark.parametrize(("scenario", "node"), CASES)
def test_crm_mon_exit_status_matches_capture(lab: dict[str, Step], scenario: str,
                                             node: str) -> None:
    got = lab[scenario].crm_mon[node]
    assert got.exit_status == meta_rc(scenario, node, "crm_mon.xml")
    assert got.stderr == ""  # XML mode reports errors inside the document


@pytest.mark.parametrize(("scenario", "node"), CASES)
def test_crm_mon_shape_matches_capture(lab: dict[str, Step], scenario: str, node: str) -> None:
    got = lab[scenario].crm_mon[node].stdout.encode()
    assert shape(got) == shape(capture(scenario, node))


@pytest.mark.parametrize(("scenario", "node"), CASES)
def test_crm_mon_meaning_matches_capture(lab: dict[str, Step], scenario: str, node: str) -> None:
    real = capture(scenario, node)
    got = lab[scenario].crm_mon[node].stdout.encode()
    if etree.fromstring(real).find("summary") is None:
        assert got == real  # the 102 "Not connected" document has nothing time-dependent
    else:
        assert semantics(got) == semantics(real)


def test_fixture_scenarios_are_all_replayed(lab: dict[str, Step]) -> None:
    assert set(lab) == {s for s, _ in CASES}


def test_ssh_actions_answer_like_the_lab(lab: dict[str, Step]) -> None:
    for step in lab.values():
        for action, got in step.actions:
            if not action["cmd"].startswith("ssh: "):
                continue  # lab-level faults (nsenter) have no simulated output
            assert got.exit_status == action["rc"], action["cmd"]
            # pcs lists the nodes in its own order; the set of lines is what matters.
            assert sorted(got.stdout.splitlines()) == sorted(action["output"].splitlines())


def test_clone_cleanup_output_is_verbatim(lab: dict[str, Step]) -> None:
    action, got = lab["e2_after_cleanup"].actions[0]
    assert action["cmd"] == "ssh: crm_resource --cleanup --resource loadbalancer"
    assert got.stdout == action["output"] + "\n"


# ---------------------------------------------------------------- corosync-quorumtool


@pytest.mark.parametrize(("scenario", "node"), CASES)
def test_quorumtool_matches_capture(lab: dict[str, Step], scenario: str, node: str) -> None:
    got = lab[scenario].quorum[node]
    assert got.exit_status == meta_rc(scenario, node, "quorumtool.txt")
    stderr = PCMK / scenario / f"{node}.quorumtool.txt.stderr"
    assert got.stderr == (stderr.read_text() if stderr.exists() else "")
    real = capture(scenario, node, "quorumtool.txt").decode()
    assert variable_lines(got.stdout) == variable_lines(real)
    assert got.stdout.endswith("\n") == real.endswith("\n")


def test_quorumtool_variable_lines_have_the_real_format(lab: dict[str, Step]) -> None:
    out = lab["c_node3_crashed"].quorum["node1"].stdout
    assert re.search(r"^Date:             \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}$", out, re.M)
    assert re.search(r"^Ring ID:          1\.[0-9a-f]+$", out, re.M)


# ---------------------------------------------------------------- direct shape checks


def test_healthy_shape_equals_a_healthy() -> None:
    sim, _ = new_sim()
    got = sim.handle("node1", CRM_MON).stdout.encode()
    assert shape(got) == shape(capture("a_healthy", "node1"))
    assert got.startswith(b'<pacemaker-result api-version="2.25" request="crm_mon -1 --output')


def test_crashed_node_document_is_byte_identical() -> None:
    sim, _ = new_sim()
    sim.crash("node3")
    got = sim.handle("node3", CRM_MON)
    assert (got.exit_status, got.stderr) == (102, "")
    assert got.stdout.encode() == capture("c_node3_crashed", "node3")


def test_timestamps_follow_the_injected_clock() -> None:
    sim, clock = new_sim()
    clock.now = datetime(2026, 3, 5, 7, 8, 9)  # naive: read as UTC
    root = etree.fromstring(sim.handle("node1", CRM_MON).stdout.encode())
    assert root.find("summary/last_update").get("time") == "Thu Mar  5 07:08:09 2026"  # type: ignore[union-attr]
    assert root.find("pacemakerd").get("last_updated") == "2026-03-05 07:08:09Z"  # type: ignore[union-attr]


# ---------------------------------------------------------------- crm_mon invocations


@pytest.mark.parametrize("argv", [
    BOT_CRM_MON,
    ["crm_mon", "-1", "-r", "--output-as=xml"],
    ["crm_mon", "-1r", "--output-as", "xml"],
    ["sudo", "-n", *BOT_CRM_MON],
])
def test_crm_mon_accepted_forms(argv: list[str]) -> None:
    sim, _ = new_sim()
    got = sim.handle("node2", argv)
    assert got.exit_status == 0
    request = etree.fromstring(got.stdout.encode()).get("request")
    assert request == " ".join(a for a in argv if a not in ("sudo", "-n"))


def test_legacy_x_flag_answers_legacy_xml() -> None:
    sim, _ = new_sim()
    modern = etree.fromstring(sim.handle("node1", CRM_MON).stdout.encode())
    got = sim.handle("node1", ["crm_mon", "-1", "-r", "-X"])
    legacy = etree.fromstring(got.stdout.encode())
    assert (got.exit_status, legacy.tag, legacy.get("version")) == (0, "crm_mon", "2.1.5")
    assert [c.tag for c in legacy] == [c.tag for c in modern if c.tag != "status"]


def test_legacy_x_flag_on_crashed_node() -> None:
    sim, _ = new_sim()
    sim.crash("node1")
    got = sim.handle("node1", ["crm_mon", "-1", "-r", "-X"])
    assert got.exit_status == 102
    assert got.stdout == '<crm_mon version="2.1.5"/>\n'
    assert got.stderr.splitlines()[0] == "Not connected"


@pytest.mark.parametrize("argv", [
    ["crm_mon"], ["crm_mon", "-1"], ["crm_mon", "-1", "--output-as=text"],
    ["crm_mon", "-1;", "--output-as=xml"],
])
def test_crm_mon_unmodelled_forms_are_refused(argv: list[str]) -> None:
    sim, _ = new_sim()
    got = sim.handle("node1", argv)
    assert (got.exit_status, got.stdout) == (64, "")
    assert "not simulated" in got.stderr


# ---------------------------------------------------------------- parsing and hostile input


def test_sudo_prefix_is_stripped() -> None:
    sim, _ = new_sim()
    assert sim.handle("node1", ["sudo", "-n", *QUORUM]) == sim.handle("node1", QUORUM)


def test_bot_command_line_round_trips() -> None:
    sim, _ = new_sim()
    line = "sudo -n " + shlex.join(BOT_CRM_MON)  # how bot.ssh.build_command sends it
    assert sim.handle_line("node1", line) == sim.handle("node1", BOT_CRM_MON)


@pytest.mark.parametrize("argv", [["ls"], ["sudo", "-n", "reboot"], ["rm", "-rf", "/"]])
def test_unknown_command_is_127(argv: list[str]) -> None:
    sim, _ = new_sim()
    got = sim.handle("node1", argv)
    assert got == Completed(127, "", f"bash: {argv[-1] if argv[0] == 'sudo' else argv[0]}: "
                                     "command not found\n")


@pytest.mark.parametrize("line", [
    "crm_mon -1 --output-as=xml; reboot",
    "pcs node standby 'node2; systemctl stop corosync'",
    "pcs node standby $(hostname)",
    "systemctl stop corosync && systemctl stop pcsd",
    "echo `systemctl stop pacemaker`",
    "pcs resource cleanup 'virtual_ip_1 | crm_resource --cleanup'",
    "corosync-quorumtool -s > /tmp/x",
    "pcs 'node standby node2'",
])
def test_hostile_lines_are_never_interpreted(line: str) -> None:
    sim, _ = new_sim()
    before = sim.snapshot()
    got = sim.handle_line("node1", line)
    assert got.exit_status != 0
    assert sim.snapshot() == before
    assert all(sim.handle("node1", ["systemctl", "is-active", u]).exit_status == 0
               for u in ("corosync", "pacemaker", "pcsd"))


def test_unbalanced_quotes_are_a_shell_syntax_error() -> None:
    sim, _ = new_sim()
    assert sim.handle_line("node1", "pcs node standby 'node2").exit_status == 2


def test_unknown_node_is_a_programming_error() -> None:
    sim, _ = new_sim()
    with pytest.raises(ValueError):
        sim.handle("node9", QUORUM)
    with pytest.raises(ValueError):
        sim.crash("node9")


# ---------------------------------------------------------------- systemctl


def test_systemctl_is_active() -> None:
    sim, _ = new_sim()
    argv = ["systemctl", "is-active", "corosync", "pacemaker", "pcsd"]
    assert sim.handle("node1", argv) == Completed(0, "active\nactive\nactive\n", "")
    sim.crash("node1")
    assert sim.handle("node1", argv) == Completed(3, "failed\nfailed\nactive\n", "")
    sim.handle("node2", ["systemctl", "stop", "pacemaker"])
    assert sim.handle("node2", argv) == Completed(3, "active\ninactive\nactive\n", "")
    assert sim.handle("node2", [*argv[:2], "--quiet", "pcsd"]) == Completed(0, "", "")


def test_systemctl_unknown_unit() -> None:
    sim, _ = new_sim()
    got = sim.handle("node1", ["systemctl", "restart", "haproxy"])
    assert got == Completed(5, "", "Failed to restart haproxy.service: "
                                   "Unit haproxy.service not found.\n")


def test_stopping_pacemaker_keeps_the_corosync_vote() -> None:
    sim, _ = new_sim()
    sim.handle("node2", ["systemctl", "stop", "pacemaker"])
    sim.handle("node3", ["systemctl", "stop", "pacemaker"])
    snap = sim.snapshot()
    assert snap.quorate and snap.online == ("node1",)  # 3 corosync votes, 1 pacemaker
    assert snap.vips == dict.fromkeys(VIPS, "node1")
    assert sim.handle("node2", CRM_MON).exit_status == 102
    assert sim.handle("node2", QUORUM).exit_status == 0


def test_restart_pcsd_and_cluster_stop_start() -> None:
    sim, _ = new_sim()
    assert sim.handle("node3", ["systemctl", "stop", "pcsd"]).exit_status == 0
    assert sim.handle("node3", ["systemctl", "restart", "pcsd.service"]).exit_status == 0
    got = sim.handle("node3", ["pcs", "cluster", "stop"])
    assert got.exit_status == 0 and "corosync" in got.stdout
    assert sim.snapshot().online == ("node1", "node2")
    assert sim.handle("node3", ["pcs", "cluster", "start"]).exit_status == 0
    assert sim.snapshot().vips == dict(zip(VIPS, NODES, strict=True))


# ---------------------------------------------------------------- pcs and crm_resource


def test_pcs_on_a_crashed_node_fails() -> None:
    sim, _ = new_sim()
    sim.crash("node2")
    for line in ("pcs node standby node1", "pcs resource cleanup",
                 "pcs property set maintenance-mode=true", "pcs resource move virtual_ip_1 node3"):
        assert sim.handle_line("node2", line) == Completed(1, "", "Error: unable to get cib\n")
    assert sim.handle_line("node2", "crm_resource --cleanup").exit_status == 102


@pytest.mark.parametrize(("line", "stderr"), [
    ("pcs node standby node9",
     "Error: Node 'node9' does not appear to exist in configuration\n"),
    ("pcs resource move virtual_ip_1 node9",
     "Error: Node 'node9' does not appear to exist in configuration\n"),
    ("pcs resource move nope node1", "Error: Resource 'nope' does not exist\n"),
    ("pcs resource move loadbalancer-clone node1", "Error: cannot move cloned resources\n"),
    ("pcs resource clear nope", "Error: Resource 'nope' does not exist\n"),
    ("pcs property set maintenance-mode=maybe",
     "Error: invalid value of property: 'maintenance-mode=maybe', (use --force to override)\n"),
    ("pcs property set stonith-enabled=true",
     "Error: unknown cluster property: 'stonith-enabled', (use --force to override)\n"),
    ("pcs resource cleanup nope",
     "Error: Unable to forget failed operations of resource: nope\n"
     "crm_resource: Resource 'nope' not found\n"),
])
def test_pcs_errors(line: str, stderr: str) -> None:
    sim, _ = new_sim()
    assert sim.handle_line("node1", line) == Completed(1, "", stderr)


def test_crm_resource_unknown_resource() -> None:
    sim, _ = new_sim()
    got = sim.handle_line("node1", "crm_resource --cleanup --resource=nope")
    assert got == Completed(105, "", "crm_resource: Resource 'nope' not found\n")


def test_move_and_clear() -> None:
    sim, _ = new_sim()
    got = sim.handle_line("node1", "pcs resource move-with-constraint virtual_ip_1 node3")
    assert got.exit_status == 0 and got.stderr.startswith("Warning: A move constraint has been created")
    assert sim.snapshot().vips["virtual_ip_1"] == "node3"
    sim.handle_line("node1", "pcs node standby node3")  # a move only prefers; it never pins
    assert sim.snapshot().vips["virtual_ip_1"] == "node1"
    sim.handle_line("node1", "pcs node unstandby node3")
    got = sim.handle_line("node1", "pcs resource clear virtual_ip_1")
    assert got.stdout == "Removing constraint: cli-prefer-virtual_ip_1\n"
    assert sim.snapshot().vips == dict(zip(VIPS, NODES, strict=True))


def test_pcs_0_11_refuses_the_plain_move_of_a_resource_with_a_location_preference() -> None:
    """What the lab's pcs 0.11.5 answered (issue 17), and the cluster is left as it was."""
    sim, _ = new_sim()
    assert sim.handle_line("node1", "pcs --version") == Completed(0, "0.11.5\n", "")
    got = sim.handle_line("node1", "pcs resource move virtual_ip_1 node3")
    assert got == Completed(1, "", "Error: Unable to ensure that moved resource 'virtual_ip_1' will stay "
                                   "on the same node after a constraint used for moving it is removed.\n")
    assert sim.snapshot().vips == dict(zip(VIPS, NODES, strict=True))
    assert "cli-prefer" not in sim.handle_line("node1", "cibadmin --query").stdout


def test_pcs_0_10_moves_with_a_constraint_and_knows_no_move_with_constraint() -> None:
    sim = Simulator(pcs_version="0.10.8")
    assert sim.handle_line("node1", "pcs --version").stdout == "0.10.8\n"
    assert sim.handle_line("node1", "pcs resource move virtual_ip_1 node3") == Completed(0, "", "")
    assert sim.snapshot().vips["virtual_ip_1"] == "node3"
    assert 'id="cli-prefer-virtual_ip_1"' in sim.handle_line("node1", "cibadmin --query").stdout
    got = sim.handle_line("node1", "pcs resource move-with-constraint virtual_ip_2 node3")
    assert got.exit_status == 1 and "Usage: pcs resource" in got.stderr
    assert sim.snapshot().vips["virtual_ip_2"] == "node2"


def test_crm_simulate_places_the_cib_it_is_given() -> None:
    """cibadmin --query, changed as a move would change it, piped into crm_simulate."""
    sim, _ = new_sim()
    cib = sim.handle_line("node1", "sudo -n cibadmin --query").stdout
    moved = cib.replace("</constraints>", '<rsc_location id="cli-prefer-virtual_ip_1" rsc="virtual_ip_1" '
                        'role="Started" node="node3" score="INFINITY"/></constraints>')
    got = sim.handle_line("node1", "crm_simulate --xml-pipe --simulate", stdin=moved)
    assert got.exit_status == 0
    summary = got.stdout.split("Transition Summary:\n")[1].split("\n\n")[0]
    assert summary.split() == ["*", "Move", "virtual_ip_1", "(", "node1", "->", "node3", ")"]
    assert sim.snapshot().vips["virtual_ip_1"] == "node1"  # only simulated
    unchanged = sim.handle_line("node1", "crm_simulate --xml-pipe --simulate", stdin=cib)
    assert "Transition Summary:\n\n" in unchanged.stdout
    assert sim.handle_line("node1", "crm_simulate --xml-pipe --simulate", stdin="nope").exit_status == 65


def test_cleanup_all_output() -> None:
    sim, _ = new_sim()
    got = sim.handle_line("node2", "sudo -n pcs resource cleanup")
    assert got.stdout.splitlines() == ["Cleaned up all resources on all nodes",
                                       "Waiting for 1 reply from the controller",
                                       "... got reply (done)"]
    got = sim.handle_line("node2", "pcs resource cleanup virtual_ip_2 node=node2")
    assert got.stdout.splitlines()[0] == "Cleaned up virtual_ip_2 on node2"


def test_cleanup_of_one_node_keeps_the_others_failures() -> None:
    sim, _ = new_sim()
    sim.fail("loadbalancer", "node1")
    sim.fail("loadbalancer", "node2")
    sim.handle_line("node3", "crm_resource --cleanup -r loadbalancer -N node1")
    assert [(f.node, f.fail_count) for f in sim.snapshot().failures] == [("node2", 1)]


def test_node_maintenance_leaves_resources_unmanaged_in_place() -> None:
    sim, _ = new_sim()
    sim.handle_line("node1", "pcs node maintenance node2")
    root = etree.fromstring(sim.handle("node1", CRM_MON).stdout.encode())
    node2 = root.find("nodes/node[@name='node2']")
    assert node2 is not None and node2.get("maintenance") == "true"
    managed = {(r.get("id"), r.find("node").get("name")): r.get("managed")  # type: ignore[union-attr]
               for r in root.iter("resource") if r.get("active") == "true"}
    assert managed[("virtual_ip_2", "node2")] == managed[("loadbalancer", "node2")] == "false"
    assert managed[("virtual_ip_1", "node1")] == "true"
    sim.handle_line("node1", "pcs node standby node2")  # maintenance wins: nothing moves
    assert sim.snapshot().vips["virtual_ip_2"] == "node2"
    sim.handle_line("node1", "pcs node unmaintenance node2")
    assert sim.snapshot().vips["virtual_ip_2"] == "node3"


# ---------------------------------------------------------------- faults


def test_monitor_failure_restarts_in_place() -> None:
    sim, _ = new_sim()
    sim.fail("virtual_ip_3")
    sim.fail("virtual_ip_3")
    snap = sim.snapshot()
    assert snap.vips["virtual_ip_3"] == "node3"
    [failure] = snap.failures
    assert (failure.node, failure.exitcode, failure.task, failure.fail_count) == (
        "node3", 7, "monitor", 2)
    with pytest.raises(ValueError):
        sim.fail("virtual_ip_3", "node1")


def test_broken_resource_stays_stopped_until_repaired_and_cleaned() -> None:
    sim, _ = new_sim()
    sim.break_resource("virtual_ip_2")
    root = etree.fromstring(sim.handle("node1", CRM_MON).stdout.encode())
    vip2 = root.find("resources/resource[@id='virtual_ip_2']")
    assert vip2 is not None and vip2.get("role") == "Stopped" and vip2.get("failed") == "false"
    failure = root.find("failures/failure")
    assert failure is not None
    assert (failure.get("op_key"), failure.get("node"), failure.get("exitstatus"),
            failure.get("exitcode")) == ("virtual_ip_2_start_0", "node2", "not configured", "6")
    assert root.find("node_history/node/resource_history[@fail-count='1000000']") is not None
    sim.handle_line("node1", "pcs resource cleanup virtual_ip_2")
    assert sim.snapshot().vips["virtual_ip_2"] is None  # still broken: fails again
    sim.repair("virtual_ip_2")
    assert sim.snapshot().vips["virtual_ip_2"] is None  # repaired, but banned until cleanup
    sim.handle_line("node1", "pcs resource cleanup")
    assert sim.snapshot().vips["virtual_ip_2"] == "node2"
    assert sim.snapshot().failures == ()


def test_broken_clone_stops_everywhere() -> None:
    sim, _ = new_sim()
    sim.break_resource("loadbalancer-clone")
    snap = sim.snapshot()
    assert snap.clone_nodes == ()
    assert sorted(f.node for f in snap.failures) == list(NODES)
    assert snap.vips == dict(zip(VIPS, NODES, strict=True))


def test_power_off_makes_the_node_unreachable() -> None:
    sim, _ = new_sim()
    sim.power_off("node3")
    assert not sim.reachable("node3")
    assert sim.handle("node3", QUORUM).exit_status == 255
    assert sim.snapshot().vips["virtual_ip_3"] == "node1"
    sim.heal("node3")
    assert sim.reachable("node3")
    assert sim.snapshot().vips["virtual_ip_3"] == "node3"


def test_dc_survives_while_alive_and_moves_when_it_dies() -> None:
    sim, _ = new_sim()
    sim.crash("node1")
    assert sim.snapshot().dc == "node2"
    sim.heal("node1")
    assert sim.snapshot().dc == "node2"
    assert sim.snapshot().vips == dict(zip(VIPS, NODES, strict=True))


def test_desync_and_the_runbook_fix() -> None:
    sim, _ = new_sim()
    sim.desync("node3")
    lonely = semantics(sim.handle("node3", CRM_MON).stdout.encode())
    assert (lonely["current_dc"]["name"], lonely["current_dc"]["with_quorum"]) == ("node3", "false")
    assert [n["online"] for n in lonely["nodes"]] == ["false", "false", "true"]
    assert all(attrs.get("role") != "Started" for _, attrs in lonely["resources"])
    majority = sim.snapshot()
    assert majority.online == ("node1", "node2") and majority.quorate
    assert majority.vips["virtual_ip_3"] == "node1"
    quorum = sim.handle("node3", QUORUM)
    assert quorum.exit_status == 2 and "Quorate:          No" in quorum.stdout
    assert re.search(r"^Ring ID:          3\.", quorum.stdout, re.M)
    sim.handle_line("node3", "sudo -n systemctl restart corosync")
    sim.handle_line("node3", "sudo -n systemctl restart pcsd")
    healed = sim.snapshot()
    assert healed.online == NODES and healed.vips == dict(zip(VIPS, NODES, strict=True))


def test_restarting_corosync_on_a_crashed_node_does_not_start_pacemaker() -> None:
    sim, _ = new_sim()
    sim.crash("node3")
    sim.handle_line("node3", "systemctl restart corosync")
    assert sim.handle("node3", CRM_MON).exit_status == 102
    assert sim.handle("node3", QUORUM).exit_status == 0
    sim.handle_line("node3", "systemctl start pacemaker")
    assert sim.snapshot().online == NODES


def test_fail_on_unmanaged_resource_is_refused() -> None:
    sim, _ = new_sim()
    sim.set_cluster_maintenance(True)
    with pytest.raises(ValueError):
        sim.fail("virtual_ip_1")


def test_last_change_records_who_changed_the_cib() -> None:
    sim, clock = new_sim()
    clock.tick(60)
    sim.handle_line("node3", "pcs node standby node2")
    lc = semantics(sim.handle("node1", CRM_MON).stdout.encode())["last_change"]
    assert lc == {"user": "root", "client": "cibadmin", "origin": "node3"}


# ---------------------------------------------------------------- invariants under any story

ACTIONS = st.sampled_from([
    ("crash", "node1"), ("crash", "node2"), ("crash", "node3"),
    ("power_off", "node2"), ("heal", "node1"), ("heal", "node2"), ("heal", "node3"),
    ("desync", "node1"), ("desync", "node3"), ("fail", "virtual_ip_2"),
    ("break_resource", "virtual_ip_1"), ("repair", "virtual_ip_1"),
    ("line", "pcs node standby node1"), ("line", "pcs node unstandby node1"),
    ("line", "pcs node maintenance node3"), ("line", "pcs node unmaintenance node3"),
    ("line", "pcs property set maintenance-mode=true"),
    ("line", "pcs property set maintenance-mode=false"),
    ("line", "pcs resource cleanup"), ("line", "pcs resource move virtual_ip_3 node2"),
    ("line", "pcs resource clear virtual_ip_3"), ("line", "systemctl restart corosync"),
    ("line", "systemctl stop pacemaker"), ("line", "pcs cluster start"),
])


def apply(sim: Simulator, action: tuple[str, str], on: str) -> None:
    kind, arg = action
    if kind == "line":
        if sim.reachable(on):
            sim.handle_line(on, arg)
        return
    # ValueError: e.g. desync of a node whose corosync is down, fail of a stopped resource.
    with contextlib.suppress(ValueError):
        getattr(sim, kind)(arg)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(ACTIONS, st.sampled_from(NODES)), max_size=10))
def test_invariants_hold_for_any_story(story: list[tuple[tuple[str, str], str]]) -> None:
    sim, clock = new_sim()
    for action, on in story:
        apply(sim, action, on)
        clock.tick()
    snap = sim.snapshot()
    assert snap.quorate == any(len(p) >= 2 for p in snap.partitions)
    assert {n for n in snap.vips.values() if n} <= set(snap.online) >= set(snap.clone_nodes)
    assert snap.dc in snap.online or not snap.online
    for node in NODES:
        if sim.reachable(node):
            check_document(sim.handle(node, BOT_CRM_MON))


def check_document(got: Completed) -> None:
    assert got.exit_status in (0, 102)
    root = etree.fromstring(got.stdout.encode())
    # The simulator may only write element/attribute combinations some real capture shows.
    assert shape(got.stdout.encode()) <= real_shapes()
    for rsc in root.iter("resource"):
        assert int(rsc.get("nodes_running_on", "")) == len(rsc) == (rsc.get("active") == "true")


_REAL_SHAPES: set[tuple[str, frozenset[str]]] = set()


def real_shapes() -> set[tuple[str, frozenset[str]]]:
    if not _REAL_SHAPES:
        for scenario, node in CASES:
            _REAL_SHAPES.update(shape(capture(scenario, node)))
    return _REAL_SHAPES
