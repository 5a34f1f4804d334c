"""The change a remediation makes, applied to real CIBs from the lab, and crm_simulate's answer in
words. Where crm_simulate is installed (the lab machine), it runs on the changed copies too."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from lxml import etree

from bot.errors import ParseError
from bot.pacemaker.whatif import clear, prefer, standby, transition

CIB = Path(__file__).resolve().parents[1] / "fixtures" / "cib" / "lab-2.1.5"
HEALTHY = (CIB / "healthy.cib.xml").read_bytes()
MOVED = (CIB / "moved-vip1-node3.cib.xml").read_bytes()


def locations(cib: bytes) -> dict[str, dict[str, str]]:
    root = etree.fromstring(cib)
    return {el.get("id"): dict(el.attrib) for el in root.iterfind("configuration/constraints/rsc_location")}


def test_prefer_adds_exactly_the_constraint_pcs_added() -> None:
    mine = locations(prefer(HEALTHY, "virtual_ip_1", "node3"))
    assert mine == locations(MOVED)  # what `pcs resource move-with-constraint` wrote on the lab
    again = locations(prefer(prefer(HEALTHY, "virtual_ip_1", "node2"), "virtual_ip_1", "node3"))
    assert again == locations(MOVED)  # a second move replaces the first, as crm_resource does


def test_clear_removes_only_that_resources_move_and_ban_constraints() -> None:
    banned = MOVED.replace(b"</constraints>", b'<rsc_location id="cli-ban-virtual_ip_1-on-node2" '
                           b'rsc="virtual_ip_1" role="Started" node="node2" score="-INFINITY"/>'
                           b'<rsc_location id="cli-prefer-virtual_ip_2" rsc="virtual_ip_2" role="Started" '
                           b'node="node3" score="INFINITY"/></constraints>')
    left = locations(clear(banned, "virtual_ip_1"))
    assert set(left) == {*locations(HEALTHY), "cli-prefer-virtual_ip_2"}


def test_standby_sets_the_node_attribute_pcs_sets() -> None:
    root = etree.fromstring(standby(HEALTHY, "node2", on=True))
    (pair,) = root.xpath("configuration/nodes/node[@uname='node2']/instance_attributes/nvpair")
    assert (pair.get("name"), pair.get("value")) == ("standby", "on")
    back = etree.fromstring(standby(etree.tostring(root), "node2", on=False))
    assert back.xpath("string(configuration/nodes/node[@uname='node2']//nvpair/@value)") == "off"
    with pytest.raises(ParseError, match="no node node9"):
        standby(HEALTHY, "node9", on=True)


@pytest.mark.parametrize("bad", [b"", b"<cib", b"<crm_mon/>",
                                 b'<!DOCTYPE cib [<!ENTITY x "y">]><cib><configuration/></cib>'])
def test_anything_but_a_cib_is_one_clear_error(bad: bytes) -> None:
    with pytest.raises(ParseError):
        clear(bad, "virtual_ip_1")


def test_transition_in_words() -> None:
    assert transition((CIB / "healthy.crm_simulate.txt").read_text()) == ()
    out = ("Transition Summary:\n  * Move       virtual_ip_1     ( node3 -> node1 )\n"
           "  * Stop       loadbalancer:1     ( node2 )  due to node availability\n"
           "  * Start      virtual_ip_2     ( node3 )\n\nExecuting Cluster Transition:\n")
    assert transition(out) == ("virtual_ip_1 would move node3 → node1",
                               "loadbalancer:1 would stop on node2 due to node availability",
                               "virtual_ip_2 would start on node3")
    with pytest.raises(ParseError):
        transition("crm_simulate: error\n")


needs_crm_simulate = pytest.mark.skipif(shutil.which("crm_simulate") is None,
                                        reason="crm_simulate is not installed (the lab machine has it)")


def simulate(cib: bytes) -> tuple[str, ...]:
    done = subprocess.run(["crm_simulate", "--xml-pipe", "--simulate"], input=cib, capture_output=True,
                          timeout=60, check=True)
    return transition(done.stdout.decode())


@needs_crm_simulate
def test_real_crm_simulate_on_the_changed_copies() -> None:
    assert simulate(prefer(HEALTHY, "virtual_ip_1", "node3")) == ("virtual_ip_1 would move node1 → node3",)
    assert simulate(clear(MOVED, "virtual_ip_1")) == ("virtual_ip_1 would move node3 → node1",)
    assert simulate(MOVED) == ()  # the live CIB after the move: nothing left to do
    off = simulate(standby(HEALTHY, "node2", on=True))
    assert off[0].startswith("virtual_ip_2 would move node2 → ") and len(off) == 2
