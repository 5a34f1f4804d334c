"""Renderers: the facts an SRE needs, and Slack's hard limits on any cluster size."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.pacemaker.health import Expectations
from bot.pacemaker.merge import NodeResult, merge, single
from bot.pacemaker.parse import parse
from bot.render.blocks import MAX_BLOCKS, to_blocks
from bot.render.doc import Doc, Section
from bot.render.json import report_json
from bot.render.status import status_doc
from bot.render.text import plain, to_text
from tests.conftest import NODES, SCENARIOS, capture
from tests.gen_crm_mon import generate

PROD = Expectations(vips=("virtual_ip_1", "virtual_ip_2", "virtual_ip_3"),
                    everywhere=("loadbalancer-clone",))


def assert_slack_limits(blocks: list[dict[str, Any]]) -> None:
    assert len(blocks) <= 50
    for b in blocks:
        if b["type"] == "section":
            assert len(b["text"]["text"]) <= 3000
        if b["type"] == "header":
            assert len(b["text"]["text"]) <= 150
        if b["type"] == "context":
            assert len(b["elements"]) <= 10


def blocks_text(blocks: list[dict[str, Any]]) -> str:
    return json.dumps(blocks)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_capture_renders_within_limits(scenario: str) -> None:
    results = [NodeResult(n, parse(capture(scenario, n))) for n in NODES]
    doc = status_doc(merge("prod-haproxy", results, PROD), PROD)
    assert_slack_limits(to_blocks(doc))
    assert to_text(doc)


def test_healthy_text_is_short_and_complete() -> None:
    report = merge("prod-haproxy", [NodeResult(n, parse(capture("a_healthy", n))) for n in NODES], PROD)
    text = to_text(status_doc(report, PROD))
    first = text.splitlines()[0]
    assert first.startswith("🟢") and "prod-haproxy is healthy" in first
    assert "quorum · DC node1 · 3/3 nodes online" in first
    for vip, node in (("virtual_ip_1", "node1"), ("virtual_ip_2", "node2"), ("virtual_ip_3", "node3")):
        assert f"`{vip}` → {node}" in text
    assert "`loadbalancer-clone` on 3/3 eligible nodes: node1 node2 node3" in text
    assert len(text.splitlines()) < len(capture("a_healthy", "node1", "pcs_status.txt").splitlines()) + 10


def test_crash_names_the_problem_and_the_fix() -> None:
    results = [NodeResult(n, parse(capture("c_node3_crashed", n))) for n in NODES]
    doc = status_doc(merge("prod-haproxy", results, PROD), PROD)
    verdict = doc.verdict
    assert verdict.startswith(":large_yellow_circle:") and "node3 is OFFLINE" in verdict
    text = to_text(doc)
    assert "`virtual_ip_3` → node1" in text
    assert "/cluster start prod-haproxy node3" in text
    assert "node3 is OFFLINE: it answers over SSH but Pacemaker is not running there" in text
    assert text.count("/cluster start prod-haproxy node3") == 1


def test_unreachable_nodes_are_named() -> None:
    results = [NodeResult("node1", parse(capture("a_healthy", "node1"))),
               NodeResult("node2", error="connection refused", error_kind="unreachable"),
               NodeResult("node3", parse(capture("a_healthy", "node3")))]
    text = to_text(status_doc(merge("prod-haproxy", results, PROD), PROD))
    assert "node2 online · ssh: connection refused" in text
    assert "2/3 nodes answered" in text


def test_no_answer_at_all() -> None:
    results = [NodeResult(n, error="timed out after 5s", error_kind="timeout") for n in NODES]
    doc = status_doc(merge("prod-haproxy", results, PROD), PROD)
    assert doc.verdict.startswith(":red_circle:") and "no node could report" in doc.verdict
    assert to_text(doc).count("timed out after 5s") == 3


def test_big_cluster_fits_and_summarises() -> None:
    view = parse(generate(nodes=32, resources=1000))
    doc = status_doc(single(view, cluster="big"))
    blocks = to_blocks(doc)
    assert_slack_limits(blocks)
    dump = blocks_text(blocks)
    assert "and 960 more resources, all started" in dump
    assert "and 8 more nodes, all online" in dump


def test_big_broken_cluster_shows_problems_first() -> None:
    view = parse(generate(nodes=32, resources=1000, stopped=50, offline=3))
    doc = status_doc(single(view, cluster="big"))
    blocks = to_blocks(doc)
    assert_slack_limits(blocks)
    dump = blocks_text(blocks)
    assert "node32 *OFFLINE*" in dump  # offline nodes sort before the healthy ones
    assert "`rsc_0950` Stopped" in dump  # stopped resources before the started ones
    assert "`rsc_0000` Started" not in dump
    assert "and 960 more resources, 10 not started" in dump


def test_packer_never_exceeds_limits_on_absurd_docs() -> None:
    long_lines = tuple("x" * 5000 for _ in range(30))
    sections = tuple(Section(f"s{i}", long_lines) for i in range(80))
    doc = Doc(verdict="v" * 4000, fallback="f", header="h" * 400, sections=sections,
              context=tuple("c" for _ in range(20)))
    blocks = to_blocks(doc)
    assert len(blocks) == MAX_BLOCKS
    assert_slack_limits(blocks)


def test_fallback_text_is_plain() -> None:
    doc = status_doc(single(parse(capture("b_standby", "node1")), PROD, cluster="prod-haproxy"), PROD)
    assert not doc.fallback.startswith(":") and "*" not in doc.fallback
    assert "node2 is in standby" in doc.fallback


def test_plain_converts_mrkdwn() -> None:
    assert plain(":red_circle: *prod* <http://x|link> :unknown_code:") == "🔴 prod link :unknown_code:"


def test_json_shape() -> None:
    data = report_json(single(parse(capture("c_node3_crashed", "node1")), PROD))
    assert data["dc"] == "node1" and data["quorum"] is True and data["stack"] == "corosync"
    assert {"name": "node3", "online": False}.items() <= next(
        n for n in data["nodes"] if n["name"] == "node3").items()
    vip3 = next(r for r in data["resources"] if r["id"] == "virtual_ip_3")
    assert vip3["nodes"] == ["node1"] and vip3["agent"] == "ocf:heartbeat:IPaddr2"
    lb = [r for r in data["resources"] if r["id"] == "loadbalancer"]
    assert all(r["parents"] == ["loadbalancer-clone"] for r in lb)
    assert {"severity": "warning", "remedy": "start node3"}.items() <= next(
        f for f in data["findings"] if f["code"] == "node_offline").items()
    json.dumps(data)  # serialisable


def test_a_flapping_incident_names_what_flaps_as_the_on_call_says_it() -> None:
    from bot.render.alerts import flapping_doc

    doc = flapping_doc("prod-haproxy", "node:node2", 5, 120.0)
    assert "node2 is flapping: 5 changes in 2 min" in doc.verdict and "node:node2" not in doc.verdict
    assert "the VIP placement is flapping" in flapping_doc("prod-haproxy", "vips", 4, 120.0).verdict
