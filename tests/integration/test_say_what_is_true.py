"""Issue 17 items 1-3 over the lab's own answers (tests/fixtures/lab-2.1.5): the captures served by
loopback SSH nodes, then the real collector, parsers, merge, health rules and renderers.

* Pacemaker stopped everywhere, Corosync up: the headline says exactly that, like the footer.
* A corosync-only cluster losing a member: the fix starts Corosync, never `pcs cluster start`.
* A partitioned node that answers and runs Pacemaker: one out-of-sync finding, no "start" fix.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.collect import Collector
from bot.pacemaker.diff import EventKind, step
from bot.pacemaker.health import Expectations, Remedy, Severity
from bot.pacemaker.merge import ClusterReport, single
from bot.pacemaker.parse import parse
from bot.remedies import Refused, plan
from bot.render.blocks import to_blocks
from bot.render.json import report_json
from bot.render.status import status_doc
from bot.render.text import to_text
from bot.ssh import SshPool
from commands import lookup
from tests.fakes.captured import LAB2, SCENARIOS, captured_cluster
from tests.fakes.nodes import FakeCluster


async def collected(tmp: Path, scenario: str, kind: str = "pacemaker") -> tuple[ClusterReport, FakeCluster]:
    async with captured_cluster(tmp, scenario, kind=kind) as fc, SshPool() as pool:
        return await Collector(pool, fc.settings).collect(fc.config), fc


def text_of(report: ClusterReport, fc: FakeCluster) -> str:
    return to_text(status_doc(report, fc.config.expectations))


def catalogue_plan(report: ClusterReport, words: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    spec = lookup(words[0])
    assert spec is not None and spec.action is not None
    return plan(spec.action, words[1:], report).commands


def test_the_captures_are_what_their_meta_says() -> None:
    assert SCENARIOS == ["h_pacemaker_stopped", "i_corosync_only_node3_down", "j_node3_partitioned"]


# ---------------------------------------------------------------- 1. Pacemaker stopped everywhere

PCMK_DOWN = "Pacemaker is not running on any node (3/3 nodes answered)"
COROSYNC_UP = "Corosync is up and quorate (3/3 members)"


async def test_pacemaker_stopped_everywhere_headline_matches_the_footer(tmp_path: Path) -> None:
    report, fc = await collected(tmp_path, "h_pacemaker_stopped")
    assert report.reference is None and all(r.answered for r in report.results)
    first = report.findings[0]
    assert (first.code, first.severity) == ("no_view", Severity.CRITICAL)
    assert first.message == f"{PCMK_DOWN}; {COROSYNC_UP}"
    text = text_of(report, fc)
    verdict, footer = text.splitlines()[0], text.splitlines()[-1]
    assert verdict.startswith(f"🔴 pcmklab: 4 criticals · {PCMK_DOWN}; {COROSYNC_UP} · Corosync quorate")
    assert "no node could report" not in text
    assert footer == "3/3 nodes answered"
    assert "🟢 quorate · 3/3 votes (2 needed) · members: node1, node2, node3" in text
    # Each node's own finding says the same, with the catalogue's fix for it.
    for node in ("node1", "node2", "node3"):
        assert f"{node}: Pacemaker is not running there (crm_mon: Connection to cluster failed: " \
               f"Connection refused) → `/cluster start pcmklab {node}`" in text


async def test_pacemaker_stopped_everywhere_blocks_and_json(tmp_path: Path) -> None:
    report, fc = await collected(tmp_path, "h_pacemaker_stopped")
    blocks = str(to_blocks(status_doc(report, fc.config.expectations)))
    assert PCMK_DOWN in blocks and COROSYNC_UP in blocks and "no node could report" not in blocks
    data = report_json(report)
    assert data["findings"][0]["message"] == f"{PCMK_DOWN}; {COROSYNC_UP}"
    assert data["corosync"]["quorate"] is True and data["corosync"]["members"] == ["node1", "node2", "node3"]
    assert [f["remedy"] for f in data["findings"][1:]] == ["start node1", "start node2", "start node3"]
    assert [v["ok"] for v in data["views"]] == [False, False, False]


async def test_pacemaker_stopped_everywhere_start_is_a_plan_not_a_refusal(tmp_path: Path) -> None:
    # The fix each node's finding offers must be one the catalogue can file: before, `plan`
    # refused every action once no node had a Pacemaker view.
    report, _ = await collected(tmp_path, "h_pacemaker_stopped")
    assert catalogue_plan(report, ("start", "node2")) == (("pcs", "cluster", "start"),)
    # Only what can be judged safe without Pacemaker's view: starting it.
    for words in (("cleanup",), ("resync", "node2"), ("standby", "node2")):
        with pytest.raises(Refused, match="Pacemaker runs on no node that answered"):
            catalogue_plan(report, words)
    with pytest.raises(Refused, match="not a fix for a pacemaker cluster"):
        catalogue_plan(report, ("start-corosync", "node2"))


# ---------------------------------------------------------------- 2. corosync-only member loss


async def test_corosync_only_member_down_gets_start_corosync(tmp_path: Path) -> None:
    report, fc = await collected(tmp_path, "i_corosync_only_node3_down", kind="corosync")
    down = next(f for f in report.findings if f.subject == "node3")
    assert (down.code, down.remedy) == ("corosync_down", Remedy("start-corosync", ("node3",)))
    text = text_of(report, fc)
    assert "`/cluster start-corosync pcmklab node3`" in text
    assert "/cluster start pcmklab" not in text
    # The catalogue: corosync only (no pve-cluster probe answered here: the plan has every step,
    # the bot's Remediation drops the ones whose unit is missing), never pcs.
    assert catalogue_plan(report, ("start-corosync", "node3"))[0] == ("systemctl", "start", "corosync")
    with pytest.raises(Refused, match=r"not a fix for a corosync cluster; .*`start-corosync`"):
        catalogue_plan(report, ("start", "node3"))
    with pytest.raises(Refused, match="corosync is running on node1: nothing to start"):
        catalogue_plan(report, ("start-corosync", "node1"))


async def test_corosync_only_member_down_asks_what_a_corosync_cluster_asks(tmp_path: Path) -> None:
    async with captured_cluster(tmp_path, "i_corosync_only_node3_down", kind="corosync") as fc, \
            SshPool() as pool:
        report = await Collector(pool, fc.settings).collect(fc.config)
        asked = [c for n in fc.nodes.values() if n.server for c in n.server.commands]
    assert not any("crm_mon" in c or "pcs" in c for c in asked)
    node3 = report.result("node3")
    assert node3 is not None and node3.corosync_down
    assert node3.daemons is not None and node3.daemons.state("corosync") == "inactive"


# ---------------------------------------------------------------- 3. a partitioned node


async def test_partitioned_node_is_one_out_of_sync_finding(tmp_path: Path) -> None:
    report, fc = await collected(tmp_path, "j_node3_partitioned")
    about_node3 = [f for f in report.findings if f.subject == "node3"]
    assert [(f.code, f.remedy) for f in about_node3] == [("out_of_sync", Remedy("resync", ("node3",)))]
    assert about_node3[0].message.startswith(
        "node3 is out of sync with the cluster: it runs Pacemaker and answers over SSH, but the "
        "others see it OFFLINE; it sees DC node3, the others node1; it lacks quorum")
    text = text_of(report, fc)
    assert "/cluster start pcmklab node3" not in text
    assert "`/cluster resync pcmklab node3`" in text
    assert "node3 OFFLINE · yet it answers and runs Pacemaker: cut off from the others" in text
    assert [f["code"] for f in report_json(report)["findings"] if f["subject"] == "node3"] == ["out_of_sync"]


async def test_a_node_that_is_really_down_still_gets_start(tmp_path: Path) -> None:
    # The generalisation is "answers, runs Pacemaker, disagrees": a node whose Pacemaker is down
    # keeps its OFFLINE finding and the start fix (i: node3's corosync and pacemaker stopped).
    report, _ = await collected(tmp_path, "i_corosync_only_node3_down")
    assert report.reference is None  # Pacemaker stopped everywhere there
    node3 = [f for f in report.findings if f.subject == "node3"]
    assert [(f.code, f.remedy) for f in node3] == [("pacemaker_down", Remedy("start", ("node3",)))]
    assert report.findings[0].message == ("Pacemaker is not running on any node (3/3 nodes answered); "
                                          "Corosync is up and quorate (2/3 members)")


def test_a_saved_answer_from_a_node_without_pacemaker_speaks_for_that_node_only() -> None:
    # `clusterbot render FILE`: one node's word. Not "any node", and no node name to start.
    xml = (LAB2 / "h_pacemaker_stopped" / "node1.crm_mon.xml").read_bytes()
    report = single(parse(xml), cluster="pcmklab")
    assert [(f.code, f.message, f.remedy) for f in report.findings] == [(
        "pacemaker_down", "Pacemaker was not running where this output was taken (crm_mon: "
        "Connection to cluster failed: Connection refused)", None)]
    text = to_text(status_doc(report))
    assert text.splitlines()[0].startswith("🔴 pcmklab: 1 critical · Pacemaker was not running where")
    assert "/cluster start" not in text and "any node" not in text


# ---------------------------------------------------------------- the same care in alerts


async def test_alert_when_pacemaker_stops_everywhere_says_so(tmp_path: Path) -> None:
    healthy, _ = await collected(tmp_path / "j", "j_node3_partitioned")
    stopped, _ = await collected(tmp_path / "h", "h_pacemaker_stopped")
    state, _ = step(None, healthy, Expectations(), unreachable_after=3)
    _, events = step(state, stopped, Expectations(), unreachable_after=3)
    [gone] = [e for e in events if e.kind is EventKind.CLUSTER_UNREACHABLE]
    assert gone.message.startswith("Pacemaker is not running on any node of pcmklab (node1: Pacemaker")
    assert "no node could report" not in gone.message


async def test_alert_for_a_corosync_member_lost_offers_start_corosync(tmp_path: Path) -> None:
    before, _ = await collected(tmp_path / "h", "h_pacemaker_stopped", kind="corosync")
    after, _ = await collected(tmp_path / "i", "i_corosync_only_node3_down", kind="corosync")
    state, _ = step(None, before, Expectations(), unreachable_after=3)
    _, events = step(state, after, Expectations(), unreachable_after=3)
    [lost] = [e for e in events if e.kind is EventKind.MEMBER_LOST]
    assert lost.remedy == Remedy("start-corosync", ("node3",))
    assert all(e.remedy is None or e.remedy.action != "start" for e in events)
