"""Whether Pacemaker is acting, as read (issue 14): crmadmin's controller state and crm_mon's
pending actions, over real answers from the lab (tests/fixtures/crmadmin-2.1.5, made by
deploy/lab/capture-controller.sh, and the recorded sequences)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.collect import controller_argv
from bot.demo.sim import Simulator
from bot.errors import ParseError
from bot.pacemaker.health import Expectations
from bot.pacemaker.merge import NodeResult, merge
from bot.pacemaker.model import ControllerStatus
from bot.pacemaker.parse import parse, parse_controller
from bot.pacemaker.snapshot import Snapshot, snapshot
from tests.conftest import FIXTURES, PCMK

CAPTURED = FIXTURES / "crmadmin-2.1.5"
HEALTHY = (PCMK / "a_healthy" / "node1.crm_mon.xml").read_text()
EXPECT = Expectations(vips=("virtual_ip_1", "virtual_ip_2", "virtual_ip_3"),
                      everywhere=("loadbalancer-clone",))


def _captured(name: str) -> str:
    return (CAPTURED / name).read_text()


def _rc(name: str) -> int:
    meta = json.loads((CAPTURED / "meta.json").read_text())
    return int(next(o["rc"] for o in meta["outputs"] if o["file"] == name))


@pytest.mark.parametrize(("name", "node", "state"), [
    ("node1.idle.xml", "node1", "S_IDLE"),
    ("node2.idle.xml", "node2", "S_NOT_DC"),
    ("node3.idle.xml", "node3", "S_NOT_DC"),
])
def test_a_controller_at_rest_is_read_from_crmadmin(name: str, node: str, state: str) -> None:
    status = parse_controller(_captured(name))
    assert status == ControllerStatus(node, state) and status.at_rest
    assert _rc(name) == 0


@pytest.mark.parametrize("name", ["node1.transition.xml", "node1.joining.xml"])
def test_the_dc_during_a_standby_or_a_rejoin_is_not_at_rest(name: str) -> None:
    """The first answer that was not S_IDLE (which state depends on the instant it was caught)."""
    status = parse_controller(_captured(name))
    assert status.node == "node1" and not status.at_rest
    assert status.state in ("S_POLICY_ENGINE", "S_TRANSITION_ENGINE", "S_INTEGRATION",
                            "S_FINALIZE_JOIN", "S_ELECTION")
    assert _rc(name) == 0


@pytest.mark.parametrize(("name", "says"), [
    ("node3.crashed.xml",
     "crmadmin answered 102: error: Could not connect to controller: Connection refused"),
    ("node1.denied.xml",
     "crmadmin answered 4: error: Could not connect to controller: Permission denied"),
])
def test_crmadmin_without_a_state_is_one_line(name: str, says: str) -> None:
    with pytest.raises(ParseError) as err:
        parse_controller(_captured(name))
    assert str(err.value) == says
    assert _rc(name) != 0


@pytest.mark.parametrize("text", [
    "", "S_IDLE", "<crmd node_name='n' state='S_IDLE'/>", HEALTHY,
    '<!DOCTYPE x [<!ENTITY e "S_IDLE">]>'
    '<pacemaker-result><crmd node_name="n" state="&e;"/></pacemaker-result>',
    '<pacemaker-result><crmd state="S_IDLE"/></pacemaker-result>',
])
def test_anything_else_is_refused_with_one_line(text: str) -> None:
    with pytest.raises(ParseError) as err:
        parse_controller(text)
    assert "\n" not in str(err.value)


def test_the_demo_cluster_answers_crmadmin_as_the_lab_did() -> None:
    sim = Simulator()
    for node in sim.nodes:
        done = sim.handle(node, ("sudo", "-n", *controller_argv(node)))
        assert (done.exit_status, done.stdout) == (0, _captured(f"{node}.idle.xml"))
    sim.crash("node3")
    done = sim.handle("node3", controller_argv("node3"))
    assert (done.exit_status, done.stdout) == (_rc("node3.crashed.xml"), _captured("node3.crashed.xml"))
    assert sim.handle("node1", ("crmadmin", "-D")).exit_status != 0  # not modelled: refused


def _snap(states: dict[str, str], crm_mon: str = HEALTHY) -> Snapshot:
    view = parse(crm_mon)
    results = tuple(NodeResult(n, view=view, controller=ControllerStatus(n, s) if s else None)
                    for n, s in states.items())
    return snapshot(merge("lab", results, EXPECT, None), EXPECT)


def test_the_dc_at_rest_and_nothing_pending_is_idle() -> None:
    snap = _snap({"node1": "S_IDLE", "node2": "S_NOT_DC", "node3": "S_NOT_DC"})
    assert snap.dc == "node1" and snap.pending == ()
    assert snap.controllers == (("node1", "S_IDLE"), ("node2", "S_NOT_DC"), ("node3", "S_NOT_DC"))
    assert snap.pacemaker_acting is False


def test_a_dc_in_a_transition_is_acting() -> None:
    assert _snap({"node1": "S_TRANSITION_ENGINE", "node2": "S_NOT_DC"}).pacemaker_acting is True
    assert _snap({"node1": "S_IDLE", "node2": "S_PENDING"}).pacemaker_acting is True  # node2 joins


def test_without_the_dcs_answer_it_cannot_be_read() -> None:
    # Older Pacemaker (no crmadmin XML), or the DC's crmadmin failed this poll: not "idle".
    assert _snap({"node1": "", "node2": "S_NOT_DC", "node3": "S_NOT_DC"}).pacemaker_acting is None
    assert _snap({"node1": "", "node2": "", "node3": ""}).pacemaker_acting is None
    # A non-DC saying S_IDLE is not the DC's word.
    assert _snap({"node1": "", "node2": "S_IDLE"}).pacemaker_acting is None


def test_a_pending_action_in_crm_mon_is_acting_even_without_crmadmin() -> None:
    """record-pending: a real start in progress, as recorded on the lab (role Starting)."""
    from tests.fakes.sequences import load

    seq = load("power_cut_rejoin")
    starting = next(s for s in seq.changes("node1", "crm_mon") if s.rc == 0 and 'role="Starting"' in s.out)
    snap = _snap({"node1": ""}, starting.out)
    assert snap.pending and all(what == "Starting" for _, what in snap.pending)
    assert snap.pacemaker_acting is True


def test_old_snapshots_without_the_new_fields_still_load() -> None:
    snap = _snap({"node1": "S_IDLE"})
    old = {k: v for k, v in snap.to_json().items() if k not in ("pending", "controllers")}
    back = Snapshot.from_json(old)
    assert back.pending == () and back.controllers == () and back.pacemaker_acting is None
    assert Snapshot.from_json(snap.to_json()) == snap


def test_fixtures_are_what_the_capture_script_wrote() -> None:
    meta = json.loads((CAPTURED / "meta.json").read_text())
    files = {o["file"] for o in meta["outputs"]}
    assert files == {p.name for p in Path(CAPTURED).glob("*.xml")}
    assert all(o["cmd"] == " ".join(controller_argv(o["node"])) for o in meta["outputs"])
