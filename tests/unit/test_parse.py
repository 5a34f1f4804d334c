"""The crm_mon parser over every real capture, the legacy and Pacemaker 3 shapes, and hostile input."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.errors import ParseError
from bot.pacemaker.model import NodeType, ResourceKind, Role
from bot.pacemaker.parse import normalize_agent, normalize_role, parse, resource_of_op_key
from tests.conftest import FIXTURES, NODES, PCMK, SCENARIOS, capture

VIPS = ("virtual_ip_1", "virtual_ip_2", "virtual_ip_3")
HAND = FIXTURES / "crm_mon"

# What each real scenario shows from a connected node (README + meta.json of the captures).
EXPECTED = {
    "a_healthy": dict(quorum=True, offline=set(), standby=set(),
                      vips=("node1", "node2", "node3"), clone={"node1", "node2", "node3"}),
    "b_standby": dict(quorum=True, offline=set(), standby={"node2"},
                      vips=("node1", "node3", "node3"), clone={"node1", "node3"}),
    "b2_unstandby": dict(quorum=True, offline=set(), standby=set(),
                         vips=("node1", "node2", "node3"), clone={"node1", "node2", "node3"}),
    "c_node3_crashed": dict(quorum=True, offline={"node3"}, standby=set(),
                            vips=("node1", "node2", "node1"), clone={"node1", "node2"}),
    "d_two_nodes_down": dict(quorum=False, offline={"node2", "node3"}, standby=set(),
                             vips=(None, None, None), clone=set()),
    "e_failed_actions": dict(quorum=True, offline=set(), standby=set(),
                             vips=("node1", "node2", "node3"), clone={"node1", "node2", "node3"}),
    "e2_after_cleanup": dict(quorum=True, offline=set(), standby=set(),
                             vips=("node1", "node2", "node3"), clone={"node1", "node2", "node3"}),
    "f2_cluster_maintenance": dict(quorum=True, offline=set(), standby=set(),
                                   vips=("node1", "node2", "node3"),
                                   clone={"node1", "node2", "node3"}),
    "g1_node2_back": dict(quorum=True, offline={"node3"}, standby=set(),
                          vips=("node1", "node2", "node1"), clone={"node1", "node2"}),
}
DOWN = {("c_node3_crashed", "node3"), ("g1_node2_back", "node3"),
        ("d_two_nodes_down", "node2"), ("d_two_nodes_down", "node3")}


def test_every_scenario_is_covered() -> None:
    assert set(SCENARIOS) == set(EXPECTED)


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("node", NODES)
def test_real_capture(scenario: str, node: str) -> None:
    view = parse(capture(scenario, node))
    if (scenario, node) in DOWN:
        assert not view.connected
        assert view.status.code == 102
        assert "Connection refused" in view.status.errors[-1]
        return
    exp = EXPECTED[scenario]
    assert view.connected and view.format == "2" and view.api_version == "2.25"
    assert view.dc == "node1" and view.quorate is exp["quorum"]
    assert view.summary.stack == "corosync"
    assert view.summary.dc_version == "2.1.5-a3f44794f94"
    assert {n.name for n in view.nodes if not n.online} == exp["offline"]
    assert {n.name for n in view.nodes if n.standby} == exp["standby"]
    placed = tuple((view.running_on(v) or (None,))[0] for v in VIPS)
    assert placed == exp["vips"]
    assert set(view.running_on("loadbalancer-clone")) == exp["clone"]
    assert view.pacemakerd_state == "running"
    assert view.summary.options.fencing_enabled is False
    assert view.summary.options.maintenance_mode is (scenario == "f2_cluster_maintenance")


def test_failed_actions_and_fail_counts() -> None:
    view = parse(capture("e_failed_actions", "node3"))
    assert {(f.resource, f.node, f.task, f.exitcode) for f in view.failures} == {
        ("virtual_ip_1", "node1", "monitor", 7), ("loadbalancer", "node2", "monitor", 7)}
    failing = {(h.resource, h.node): h.fail_count for h in view.history if h.fail_count}
    assert failing == {("virtual_ip_1", "node1"): 1, ("loadbalancer", "node2"): 1}
    fa = view.failures[0]
    assert fa.last_rc_change == datetime(2026, 11, 25, 21, 20, 56, tzinfo=UTC)
    assert fa.interval_ms == 10000
    assert all(h.migration_threshold == 1_000_000 for h in view.history)
    assert not parse(capture("e2_after_cleanup", "node1")).failures


def test_clone_instances_share_an_id_and_know_their_parent() -> None:
    view = parse(capture("b_standby", "node1"))
    inst = view.instances_of("loadbalancer-clone")
    assert [i.id for i in inst] == ["loadbalancer"] * 3
    assert all(i.parents == ("loadbalancer-clone",) for i in inst)
    assert sorted(i.role for i in inst) == sorted([Role.STARTED, Role.STARTED, Role.STOPPED])
    clone = view.resource("loadbalancer-clone")
    assert clone is not None and clone.kind is ResourceKind.CLONE and len(clone.children) == 3


def test_timestamps_both_formats() -> None:
    view = parse(capture("a_healthy", "node1"))
    assert view.summary.last_update == datetime(2026, 11, 25, 21, 20, 5, tzinfo=UTC)
    assert view.summary.last_change is not None
    assert view.summary.last_change.origin == "node1"
    assert view.summary.last_change.client == "cibadmin"


def test_legacy_root() -> None:
    view = parse((HAND / "legacy-1.1.xml").read_bytes())
    assert view.format == "legacy" and view.api_version == "1.1.18"
    assert view.dc == "prod-haproxy02.estuary.tech" and view.quorate is True
    vip = view.resource("virtual_ip_1")
    assert vip is not None and vip.agent == "ocf:heartbeat:IPaddr2"  # ocf:: normalised
    roles = {i.role for i in view.instances_of("cache-master")}
    assert roles == {Role.PROMOTED, Role.UNPROMOTED}  # Master/Slave normalised
    assert view.failures[0].last_rc_change == datetime(2023, 7, 12, 10, 40, 2, tzinfo=UTC)
    assert view.bans[0].resource == "virtual_ip_1" and view.bans[0].promoted_only is False
    assert view.summary.options.fencing_enabled is False


def test_pacemaker_3_names() -> None:
    view = parse((HAND / "pacemaker-3.xml").read_bytes())
    old = view.resource("old-vip")
    assert old is not None and old.orphaned
    assert view.summary.options.fencing_enabled is True
    assert {i.role for i in view.instances_of("db-clone")} == {Role.PROMOTED, Role.UNPROMOTED}
    assert view.summary.last_change is not None and view.summary.last_change.origin == "beta"


def test_complex_document() -> None:
    view = parse((HAND / "complex-2.x.xml").read_bytes())
    types = {n.name: n.type for n in view.nodes}
    assert types["remote1"] is NodeType.REMOTE and types["guest1"] is NodeType.GUEST
    group = view.resource("web-group")
    assert group is not None and group.kind is ResourceKind.GROUP and group.blocked
    bundle = view.resource("httpd-bundle")
    assert bundle is not None and [c.kind for c in bundle.children] == [ResourceKind.REPLICA] * 2
    httpd = [i for i in view.instances if i.id == "httpd"]
    assert [i.parents for i in httpd] == [("httpd-bundle", "httpd-bundle-0"),
                                          ("httpd-bundle", "httpd-bundle-1")]
    assert view.resource("batch") is not None and view.resource("batch").disabled  # type: ignore[union-attr]
    assert view.resource("vm-guest1").locked_to == "core2"  # type: ignore[union-attr]
    assert [(f.target, f.status) for f in view.fence_history] == [
        ("core3", "failed"), ("core4", "pending"), ("core2", "success")]
    assert [(t.id, t.status) for t in view.tickets] == [("ticketA", "granted"), ("ticketB", "revoked")]
    assert ("core2", "#health-disk", "yellow") in {(a.node, a.name, a.value) for a in view.node_attributes}
    assert view.summary.mixed_version is True
    assert view.summary.resources_disabled == 1 and view.summary.resources_blocked == 1


def test_disconnected_element() -> None:
    view = parse((HAND / "disconnected-element.xml").read_bytes())
    assert not view.connected and view.pacemakerd_state == "shutting_down"
    assert view.quorate is None and view.dc is None


@pytest.mark.parametrize("raw,expected", [
    ("ocf::heartbeat:IPaddr2", "ocf:heartbeat:IPaddr2"),
    ("ocf:pacemaker:Dummy", "ocf:pacemaker:Dummy"),
    ("stonith:fence_xvm", "stonith:fence_xvm"),
])
def test_normalize_agent(raw: str, expected: str) -> None:
    assert normalize_agent(raw) == expected


@pytest.mark.parametrize("raw,expected", [
    ("Master", Role.PROMOTED), ("Slave", Role.UNPROMOTED), ("Promoted", Role.PROMOTED),
    ("stopped", Role.STOPPED), ("Weird", Role.UNKNOWN), (None, Role.UNKNOWN),
])
def test_normalize_role(raw: str | None, expected: Role) -> None:
    assert normalize_role(raw) is expected


@pytest.mark.parametrize("op_key,resource", [
    ("virtual_ip_1_monitor_10000", "virtual_ip_1"), ("loadbalancer_monitor_10000", "loadbalancer"),
    ("db_stop_monitor_0", "db_stop"), ("vm_migrate_to_0", "vm"), ("web-server_start_0", "web-server"),
    ("nonsense", "nonsense"),
])
def test_resource_of_op_key(op_key: str, resource: str) -> None:
    assert resource_of_op_key(op_key) == resource


# ---------------------------------------------------------------- hostile and broken input

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<pacemaker-result><summary><stack type="&xxe;"/></summary></pacemaker-result>"""
LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<crm_mon version="1.1"><summary><stack type="&lol3;"/></summary></crm_mon>"""


@pytest.mark.parametrize("data,needle", [
    (b"", "empty"),
    (b"   \n", "empty"),
    (b"<pacemaker-result><summary>", "not well-formed"),
    (b"Error: crm_mon not found", "not well-formed"),
    (b"<html><body>nope</body></html>", "unexpected root element <html>"),
    (XXE, "DOCTYPE"),
    (LAUGHS, "DOCTYPE"),
    (b'<pacemaker-result><status code="0" message="OK"/></pacemaker-result>', "no <summary>"),
    (b'<crm_mon version="1"><nodes/></crm_mon>', "no <summary>"),
    (b'<crm_mon><summary/><nodes><node online="true"/></nodes></crm_mon>', "no name"),
    (b'<crm_mon><summary/><nodes><node name="a" online="maybe"/></nodes></crm_mon>',
     "online='maybe' is not a boolean"),
    (b'<crm_mon><summary><nodes_configured number="x"/></summary></crm_mon>', "not an integer"),
])
def test_bad_input_is_one_line_parse_error(data: bytes, needle: str) -> None:
    with pytest.raises(ParseError) as err:
        parse(data)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_size_cap() -> None:
    data = capture("a_healthy", "node1")
    with pytest.raises(ParseError, match="over the 1000-byte cap"):
        parse(data, max_bytes=1000)


def test_deep_nesting_is_refused() -> None:
    inner = b'<resource id="r" resource_agent="a" role="Started" active="true"/>'
    deep = b"<group id='g'>" * 40 + inner + b"</group>" * 40
    with pytest.raises(ParseError, match="nest deeper"):
        parse(b"<crm_mon><summary/><resources>" + deep + b"</resources></crm_mon>")


def test_str_input_and_every_real_file_on_disk() -> None:
    files = sorted(PCMK.glob("*/*.crm_mon.xml"))
    assert len(files) == 27
    for f in files:
        assert parse(f.read_text()).format == "2"
