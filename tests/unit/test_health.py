"""One test per health rule, on real captures where they show the case, else on the schema-written
complex document, else on a real capture changed through the model (dataclasses.replace)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot.pacemaker.health import Expectations, Finding, Severity, evaluate
from bot.pacemaker.model import ClusterOptions, NodeView
from bot.pacemaker.parse import parse
from tests.conftest import FIXTURES, capture

PROD = Expectations(vips=("virtual_ip_1", "virtual_ip_2", "virtual_ip_3"),
                    everywhere=("loadbalancer-clone",))


def view_of(scenario: str, node: str = "node1") -> NodeView:
    return parse(capture(scenario, node))


def complex_view() -> NodeView:
    return parse((FIXTURES / "crm_mon" / "complex-2.x.xml").read_bytes())


def codes(findings: tuple[Finding, ...]) -> dict[tuple[str, str], Finding]:
    return {f.key: f for f in findings}


def with_node(view: NodeView, name: str, **changes: object) -> NodeView:
    nodes = tuple(replace(n, **changes) if n.name == name else n for n in view.nodes)  # type: ignore[arg-type]
    return replace(view, nodes=nodes)


def test_healthy_cluster_has_only_the_fencing_note() -> None:
    found = evaluate(view_of("a_healthy"), PROD)
    assert [(f.severity, f.code) for f in found] == [(Severity.INFO, "fencing_disabled")]


def test_no_quorum_is_critical_and_first() -> None:
    found = evaluate(view_of("d_two_nodes_down"), PROD)
    assert found[0].code == "no_quorum" and found[0].severity is Severity.CRITICAL
    assert "no-quorum-policy=stop" in found[0].message
    c = codes(found)
    assert c[("few_healthy", "cluster")].severity is Severity.CRITICAL
    assert {k[1] for k in c if k[0] == "vip_stopped"} == {"virtual_ip_1", "virtual_ip_2", "virtual_ip_3"}
    # Without quorum, clone gaps and VIP spread are consequences, not separate problems.
    assert not [k for k in c if k[0] in ("clone_gap", "vip_spread")]


def test_no_dc() -> None:
    view = view_of("a_healthy")
    view = replace(view, summary=replace(view.summary, dc_present=False, dc_name=None))
    assert codes(evaluate(view, PROD))[("no_dc", "cluster")].severity is Severity.CRITICAL


def test_fewer_than_two_healthy_nodes() -> None:
    view = with_node(view_of("b_standby"), "node3", standby=True)
    f = codes(evaluate(view, PROD))[("few_healthy", "cluster")]
    assert f.severity is Severity.CRITICAL and "only 1 of 3" in f.message


def test_node_offline_suggests_start() -> None:
    f = codes(evaluate(view_of("c_node3_crashed"), PROD))[("node_offline", "node3")]
    assert f.severity is Severity.WARNING and str(f.remedy) == "start node3"


def test_standby_suggests_unstandby_and_names_the_node() -> None:
    f = codes(evaluate(view_of("b_standby"), PROD))[("node_standby", "node2")]
    assert "node2" in f.message and str(f.remedy) == "unstandby node2"


@pytest.mark.parametrize("attr,code,severity", [
    ("unclean", "node_unclean", Severity.CRITICAL),
    ("pending", "node_pending", Severity.WARNING),
    ("maintenance", "node_maintenance", Severity.WARNING),
    ("standby_onfail", "node_standby_onfail", Severity.WARNING),
])
def test_node_states(attr: str, code: str, severity: Severity) -> None:
    view = with_node(view_of("a_healthy"), "node2", **{attr: True})
    assert codes(evaluate(view, PROD))[(code, "node2")].severity is severity


def test_unclean_and_pending_on_the_complex_cluster() -> None:
    c = codes(evaluate(complex_view()))
    assert ("node_offline", "core3") in c  # unclean but offline: offline is what we report
    assert c[("node_pending", "core4")].severity is Severity.WARNING


@pytest.mark.parametrize("health,severity", [("yellow", Severity.WARNING), ("red", Severity.CRITICAL)])
def test_node_health(health: str, severity: Severity) -> None:
    view = with_node(view_of("a_healthy"), "node3", health=health)
    assert codes(evaluate(view, PROD))[("node_health", "node3")].severity is severity


def test_vip_stopped_suggests_cleanup_when_it_failed() -> None:
    view = view_of("d_two_nodes_down")
    f = codes(evaluate(view, PROD))[("vip_stopped", "virtual_ip_2")]
    assert f.remedy is None  # nothing failed: it is stopped for lack of quorum
    failed = replace(view, failures=view_of("e_failed_actions").failures)
    f = codes(evaluate(failed, PROD))[("vip_stopped", "virtual_ip_1")]
    assert str(f.remedy) == "cleanup virtual_ip_1"


def test_vips_not_one_per_node() -> None:
    # b_standby has two VIPs on node3; with node2 back online (standby cleared) node2 is idle.
    view = with_node(view_of("b_standby"), "node2", standby=False)
    f = codes(evaluate(view, PROD))[("vip_spread", "cluster")]
    assert "node3 serves virtual_ip_2, virtual_ip_3 while node2 serves none" in f.message
    assert str(f.remedy) == "move virtual_ip_3 node2"


def test_stacked_vips_on_fewer_nodes_is_not_a_spread_problem() -> None:
    assert ("vip_spread", "cluster") not in codes(evaluate(view_of("c_node3_crashed"), PROD))


def test_clone_not_on_an_online_node() -> None:
    view = with_node(view_of("b_standby"), "node2", standby=False)
    f = codes(evaluate(view, PROD))[("clone_gap", "loadbalancer-clone@node2")]
    assert str(f.remedy) == "cleanup loadbalancer-clone node2"


def test_standby_node_without_clone_is_no_gap() -> None:
    assert not [f for f in evaluate(view_of("b_standby"), PROD) if f.code == "clone_gap"]


def test_resource_failed_blocked_unmanaged_multi_active() -> None:
    c = codes(evaluate(complex_view()))
    assert c[("resource_failed", "web-group")].severity is Severity.WARNING
    assert str(c[("resource_failed", "web-group")].remedy) == "cleanup web-group"
    assert c[("resource_blocked", "web-group")].severity is Severity.CRITICAL
    assert ("resource_unmanaged", "web-group") in c
    multi = c[("multi_active", "legacy-app")]
    assert multi.severity is Severity.CRITICAL and "core1, core2" in multi.message


def test_failed_vip_is_critical() -> None:
    view = parse((FIXTURES / "crm_mon" / "complex-2.x.xml").read_bytes())
    c = codes(evaluate(view, Expectations(vips=("web-group",))))
    assert c[("resource_failed", "web-group")].severity is Severity.CRITICAL


def test_failed_actions_not_cleaned_up_name_the_clone() -> None:
    c = codes(evaluate(view_of("e_failed_actions"), PROD))
    assert str(c[("failed_action", "virtual_ip_1@node1")].remedy) == "cleanup virtual_ip_1 node1"
    lb = c[("failed_action", "loadbalancer-clone@node2")]
    assert str(lb.remedy) == "cleanup loadbalancer-clone node2"
    assert "not running" in lb.message
    assert not [f for f in evaluate(view_of("e2_after_cleanup"), PROD) if f.code == "failed_action"]


def test_fail_count_at_migration_threshold() -> None:
    f = codes(evaluate(complex_view()))[("migration_threshold", "web-group@core2")]
    assert f.severity is Severity.CRITICAL and "migration-threshold 3" in f.message


def test_real_fail_count_below_threshold_is_quiet() -> None:
    assert not [f for f in evaluate(view_of("e_failed_actions"), PROD) if f.code == "migration_threshold"]


def test_cluster_maintenance_mode() -> None:
    c = codes(evaluate(view_of("f2_cluster_maintenance"), PROD))
    assert c[("cluster_maintenance", "cluster")].severity is Severity.WARNING
    assert not [k for k in c if k[0] == "resource_unmanaged"]  # expected under maintenance-mode


def test_stop_all_resources() -> None:
    view = view_of("a_healthy")
    opts = ClusterOptions(stop_all_resources=True, fencing_enabled=True)
    view = replace(view, summary=replace(view.summary, options=opts))
    c = codes(evaluate(view, PROD))
    assert c[("stop_all_resources", "cluster")].severity is Severity.CRITICAL
    assert ("fencing_disabled", "cluster") not in c


def test_fencing_failed_and_pending() -> None:
    c = codes(evaluate(complex_view()))
    assert c[("fencing_failed", "core3")].severity is Severity.CRITICAL
    assert "timed out" in c[("fencing_failed", "core3")].message
    assert c[("fencing_pending", "core4")].severity is Severity.WARNING
    assert ("fencing_failed", "core2") not in c  # a successful fence is history, not a problem


def test_disabled_and_orphaned_are_info() -> None:
    c = codes(evaluate(complex_view()))
    assert c[("resource_disabled", "batch")].severity is Severity.INFO
    orphan = codes(evaluate(parse((FIXTURES / "crm_mon" / "pacemaker-3.xml").read_bytes())))
    assert orphan[("resource_orphaned", "old-vip")].severity is Severity.INFO


def test_disconnected_view() -> None:
    found = evaluate(view_of("c_node3_crashed", "node3"))
    assert [f.code for f in found] == ["pacemaker_down"]
    assert "Connection refused" in found[0].message


def test_expected_but_missing_resources() -> None:
    c = codes(evaluate(view_of("a_healthy"), Expectations(vips=("virtual_ip_9",),
                                                          everywhere=("nope-clone",))))
    assert ("vip_missing", "virtual_ip_9") in c and ("clone_missing", "nope-clone") in c


def test_inferred_expectations_match_prod() -> None:
    """With no config, IPaddr2 primitives are VIPs and anonymous clones run everywhere."""
    for scenario in ("a_healthy", "b_standby", "d_two_nodes_down", "e_failed_actions"):
        view = view_of(scenario)
        assert evaluate(view) == evaluate(view, PROD)


def test_stopped_primitive_outside_clones() -> None:
    from tests.gen_crm_mon import generate

    c = codes(evaluate(parse(generate(nodes=3, resources=6, stopped=2))))
    assert {k[1] for k in c if k[0] == "resource_stopped"} == {"rsc_0004", "rsc_0005"}
    assert str(c[("resource_stopped", "rsc_0005")].remedy) == "cleanup rsc_0005"
    # A clone instance Stopped on a standby node is not a stopped resource.
    assert not [f for f in evaluate(view_of("b_standby"), PROD) if f.code == "resource_stopped"]
