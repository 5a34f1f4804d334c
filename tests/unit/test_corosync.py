"""Corosync parsers and health rules: every real capture (pacemaker-2.1.5 lab, lab-corosync-3),
hand-written samples from the documented formats (fixtures/corosync/hand), and property tests."""

from __future__ import annotations

import ipaddress
import json
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.corosync.health import evaluate
from bot.corosync.model import (
    LinkFormat,
    LinkStatus,
    NodeCorosync,
    PeerState,
    QdeviceFlags,
    QuorumStatus,
)
from bot.corosync.parse import parse_cfgtool, parse_quorum
from bot.errors import ParseError
from bot.pacemaker.health import Finding, Remedy, Severity
from tests.conftest import FIXTURES, NODES, PCMK, SCENARIOS

LAB = FIXTURES / "corosync" / "lab-corosync-3"
HAND = FIXTURES / "corosync" / "hand"

# Which nodes had corosync running in each real scenario (the others were power-cut).
PCMK_UP = {s: NODES for s in SCENARIOS} | {
    "c_node3_crashed": ("node1", "node2"),
    "d_two_nodes_down": ("node1",),
    "g1_node2_back": ("node1", "node2"),
}
LAB_UP = {"healthy": NODES, "node3_down": ("node1", "node2"), "node2_node3_down": ("node1",)}


def hand(name: str) -> str:
    return (HAND / name).read_text()


def pcmk_quorum(scenario: str, node: str) -> str:
    return (PCMK / scenario / f"{node}.quorumtool.txt").read_text()


@cache
def _meta_rc(meta: Path) -> dict[str, int]:
    outputs = json.loads(meta.read_text())["outputs"]
    return {o.get("file") or f"{o['node']}.{o['kind']}": o["rc"] for o in outputs}


def lab_files(kind: str) -> list[str]:
    return sorted(p.name for p in LAB.glob(f"*.{kind}.txt")) if LAB.is_dir() else []


def lab_parts(name: str) -> tuple[str, str]:
    scenario, node, _ = name.split(".", 2)
    return scenario, node


def keys(findings: tuple[Finding, ...]) -> dict[tuple[str, str], Finding]:
    return {f.key: f for f in findings}


def pcmk_views(scenario: str) -> dict[str, QuorumStatus | None]:
    return {n: parse_quorum(pcmk_quorum(scenario, n)) if n in PCMK_UP[scenario] else None for n in NODES}


def lab_views(scenario: str) -> dict[str, NodeCorosync | None]:
    def one(node: str) -> NodeCorosync | None:
        if node not in LAB_UP[scenario]:
            return None
        return NodeCorosync(parse_quorum((LAB / f"{scenario}.{node}.quorumtool.txt").read_text()),
                            parse_cfgtool((LAB / f"{scenario}.{node}.cfgtool.txt").read_text()))
    return {n: one(n) for n in NODES}


# ---------------------------------------------------------------- real quorumtool captures


@pytest.mark.parametrize(("scenario", "node"), [(s, n) for s in SCENARIOS for n in NODES])
def test_every_real_pacemaker_quorumtool_capture(scenario: str, node: str) -> None:
    rc = _meta_rc(PCMK / scenario / "meta.json")[f"{node}.quorumtool.txt"]
    text = pcmk_quorum(scenario, node)
    up = PCMK_UP[scenario]
    if node not in up:
        assert rc == 1 and text == ""
        for data in (text, (PCMK / scenario / f"{node}.quorumtool.txt.stderr").read_text()):
            with pytest.raises(ParseError):
                parse_quorum(data)
        return
    q = parse_quorum(text)
    quorate = len(up) >= 2
    assert rc == (0 if quorate else 2)  # corosync-quorumtool -s exits 2 when not quorate
    assert q.quorate is quorate and q.nodes == len(up)
    assert q.local_nodeid == int(node[-1]) and q.local is not None and q.local.name == node
    assert [(m.nodeid, m.name, m.votes) for m in q.members] == [(int(n[-1]), n, 1) for n in up]
    assert sum(m.local for m in q.members) == 1 and not q.hex_ids
    assert q.provider == "corosync_votequorum" and q.ring_id and q.ring_id.startswith("1.")
    assert q.cluster is None and q.qdevice is None and q.date is not None
    vq = q.votequorum
    assert vq is not None
    assert (vq.expected_votes, vq.highest_expected, vq.total_votes, vq.quorum) == (3, 3, len(up), 2)
    assert vq.activity_blocked is not quorate
    assert vq.flags == (("Quorate",) if quorate else ())


def test_two_nodes_down_node1_alone_is_not_quorate() -> None:
    q = parse_quorum(pcmk_quorum("d_two_nodes_down", "node1"))
    assert not q.quorate and q.votequorum is not None
    assert (q.votequorum.total_votes, q.votequorum.expected_votes, q.votequorum.quorum) == (1, 3, 2)
    assert q.votequorum.activity_blocked and q.votequorum.flags == ()
    assert [m.name for m in q.members] == ["node1"] and q.ring_id == "1.1a"


def test_corosync_not_running_is_a_clear_parse_error() -> None:
    stderr = (PCMK / "c_node3_crashed" / "node3.quorumtool.txt.stderr").read_text()
    with pytest.raises(ParseError, match="not running"):
        parse_quorum(stderr)


# ---------------------------------------------------------------- real lab captures (Corosync 3.1.7)


@pytest.mark.parametrize("name", lab_files("quorumtool"))
def test_every_lab_quorumtool_capture(name: str) -> None:
    scenario, node = lab_parts(name)
    rc = _meta_rc(LAB / "meta.json")[name]
    if rc == 1:
        with pytest.raises(ParseError):
            parse_quorum((LAB / name).read_text())
        return
    q = parse_quorum((LAB / name).read_text())
    assert q.quorate is (rc == 0) and q.local is not None and q.local.name == node
    if scenario in LAB_UP:
        assert [m.name for m in q.members] == list(LAB_UP[scenario])


@pytest.mark.parametrize("name", lab_files("cfgtool"))
def test_every_lab_cfgtool_capture(name: str) -> None:
    scenario, node = lab_parts(name)
    text = (LAB / name).read_text()
    if _meta_rc(LAB / "meta.json")[name] == 1:
        with pytest.raises(ParseError):
            parse_cfgtool(text)
        return
    ls = parse_cfgtool(text)
    assert ls.format is LinkFormat.KNET and ls.transport == "knet" and ls.local_nodeid == int(node[-1])
    assert [(lk.id, lk.transport) for lk in ls.links] == [(0, "udp")]
    link = ls.links[0]
    ipaddress.ip_address(link.address or "")
    assert not link.faulty and link.status is None
    if scenario in LAB_UP:
        expected = {int(n[-1]): PeerState.CONNECTED if n in LAB_UP[scenario] else PeerState.DISCONNECTED
                    for n in NODES} | {int(node[-1]): PeerState.LOCALHOST}
        assert {p.nodeid: p.state for p in link.peers} == expected


# ---------------------------------------------------------------- hand-written samples (documented formats)


def test_corosync2_hex_ids_and_ip_names() -> None:
    q = parse_quorum(hand("corosync2-hex-ips.quorumtool.txt"))
    assert q.hex_ids and q.local_nodeid == 1 and q.ring_id == "1/8"
    assert [(m.nodeid, m.name, m.local) for m in q.members] == [
        (1, "10.24.0.11", True), (2, "10.24.0.12", False)]
    assert q.votequorum is not None and q.votequorum.flags == ("2Node", "Quorate", "WaitForAll")
    assert q.votequorum.quorum == 1 and not q.votequorum.activity_blocked


def test_qdevice_column_and_row() -> None:
    q = parse_quorum(hand("qdevice.quorumtool.txt"))
    assert q.votequorum is not None and q.votequorum.qdevice_registered
    assert [m.qdevice for m in q.members] == [QdeviceFlags(True, True, True, False)] * 2
    assert q.qdevice is not None and (q.qdevice.name, q.qdevice.votes, q.qdevice.configured_votes) == (
        "Qdevice", 1, None)
    assert q.nodes == 2 and q.votequorum.total_votes == 3


def test_qdevice_not_alive_not_registered() -> None:
    q = parse_quorum(hand("qdevice-lost.quorumtool.txt"))
    flags = {m.name: m.qdevice for m in q.members}
    assert flags == {"node1": QdeviceFlags(True, False, False, False), "node2": QdeviceFlags(False)}
    assert str(flags["node1"]) == "NA,NV,NMW" and str(flags["node2"]) == "NR"
    assert q.qdevice is not None and (q.qdevice.votes, q.qdevice.configured_votes) == (0, 1)


def test_wait_for_all_last_man_standing() -> None:
    q = parse_quorum(hand("wfa-lms.quorumtool.txt"))
    assert q.votequorum is not None and q.votequorum.flags == ("Quorate", "WaitForAll", "LastManStanding")
    assert q.votequorum.has("WaitForAll") and q.votequorum.auto_lowers_expected


def test_pvecm_status() -> None:
    q = parse_quorum(hand("pvecm-status.txt"))
    assert q.cluster is not None
    assert (q.cluster.name, q.cluster.config_version, q.cluster.transport, q.cluster.secure_auth) == (
        "prod-pve", 7, "knet", True)
    assert q.hex_ids and q.quorate and [m.name for m in q.members] == [
        "192.168.10.11", "192.168.10.12", "192.168.10.13"]


def test_cfgtool_corosync2_ring_faulty() -> None:
    ls = parse_cfgtool(hand("corosync2-ring-faulty.cfgtool.txt"))
    assert ls.format is LinkFormat.RING and ls.local_nodeid == 1 and ls.transport is None
    assert [(lk.id, lk.address, lk.faulty) for lk in ls.links] == [
        (0, "10.24.0.11", False), (1, "192.168.50.11", True)]


def test_cfgtool_knet_link_disconnected() -> None:
    ls = parse_cfgtool(hand("knet-link-disconnected.cfgtool.txt"))
    assert [(lk.id, lk.down_peers) for lk in ls.links] == [(0, ()), (1, (3,))]
    assert ls.links[1].peers[0].state is PeerState.LOCALHOST


def test_cfgtool_corosync_3_0_format() -> None:
    ls = parse_cfgtool(hand("knet-3.0.cfgtool.txt"))
    assert ls.format is LinkFormat.KNET and ls.transport is None
    assert [(p.nodeid, p.state, p.enabled) for p in ls.links[0].peers] == [
        (1, PeerState.LOCALHOST, True), (2, PeerState.CONNECTED, True), (3, PeerState.DISCONNECTED, True)]


def test_cfgtool_nodes_listing() -> None:
    ls = parse_cfgtool(hand("knet-nodes.cfgtool-n.txt"))
    assert [(lk.id, lk.address, lk.down_peers) for lk in ls.links] == [
        (0, "10.0.0.1", ()), (1, "192.168.50.1", (3,))]
    assert {p.mtu for lk in ls.links for p in lk.peers} == {1397}


# ---------------------------------------------------------------- garbage -> one-line ParseError


GARBAGE: list[str | bytes] = [
    "", "   \n\n", b"\x00\x01\x02", b"\xff\xfe\xfa", "hello world\n", "Quorum information\n---\n",
    "Cannot initialize CMAP service\n", "Could not initialize corosync configuration API error 2\n",
    (PCMK / "a_healthy" / "node1.crm_mon.xml").read_text(),
    (PCMK / "a_healthy" / "node1.pcs_status.txt").read_text(),
    "Version: 6.2.0\nConfig Version: 35\nNodes: 7\nExpected votes: 7\n",  # cman-era pvecm status
    "x" * (2 * 1024 * 1024), "Quorum information\nNode ID: 1\x07\n",
]


@pytest.mark.parametrize("data", GARBAGE, ids=range(len(GARBAGE)))
def test_garbage_is_one_line_parse_error(data: str | bytes) -> None:
    for parser in (parse_quorum, parse_cfgtool):
        with pytest.raises(ParseError) as err:
            parser(data)
        assert "\n" not in str(err.value)


def test_each_parser_refuses_the_other_tool() -> None:
    with pytest.raises(ParseError):
        parse_quorum(hand("knet-link-disconnected.cfgtool.txt"))
    with pytest.raises(ParseError):
        parse_cfgtool(pcmk_quorum("a_healthy", "node1"))


def test_every_line_truncation_of_quorumtool_is_an_error() -> None:
    """quorumtool output ends with the membership rows, counted by 'Nodes:': any cut shows."""
    for text in (pcmk_quorum("a_healthy", "node1"), hand("qdevice.quorumtool.txt"), hand("pvecm-status.txt")):
        lines = text.splitlines(keepends=True)
        for n in range(len(lines) - 1):
            with pytest.raises(ParseError):
                parse_quorum("".join(lines[:n]))
        assert parse_quorum("".join(lines)).members


def test_tolerates_whitespace_crlf_and_unknown_lines() -> None:
    text = pcmk_quorum("a_healthy", "node2").replace("Quorate:  ", "Quorate:\t ")
    text = "Warning: something odd\n" + text.replace("\n", "  \r\n").replace(
        "Membership information", "Some new field: 1\r\nMembership information")
    q = parse_quorum(text)
    assert q.quorate and q.local_nodeid == 2 and len(q.members) == 3


# ---------------------------------------------------------------- findings: one test per rule


def test_healthy_clusters_have_no_findings() -> None:
    assert evaluate(pcmk_views("a_healthy")) == ()
    if LAB.is_dir():
        assert evaluate(lab_views("healthy")) == ()


def test_not_quorate_is_critical() -> None:
    found = keys(evaluate(pcmk_views("d_two_nodes_down")))
    f = found[("corosync_not_quorate", "node1")]
    assert f.severity is Severity.CRITICAL and "1 of 3" in f.message and "2 needed" in f.message
    assert evaluate(pcmk_views("d_two_nodes_down"))[0] == f  # worst first


def test_votes_below_expected_is_a_warning_naming_the_missing_node() -> None:
    f = keys(evaluate(pcmk_views("c_node3_crashed")))[("corosync_votes_low", "cluster")]
    assert f.severity is Severity.WARNING and "2 of 3" in f.message and "node3" in f.message
    assert "losing one more node loses quorum" in f.message
    assert set(keys(evaluate(pcmk_views("c_node3_crashed")))) == {("corosync_votes_low", "cluster")}


def test_votes_low_names_only_nodes_known_to_be_outside() -> None:
    # node2 did not answer but is a member: the missing vote is the qdevice's, not node2's.
    qdev = evaluate({"node1": parse_quorum(hand("qdevice-lost.quorumtool.txt")), "node2": None})
    assert "not in the membership" not in keys(qdev)[("corosync_votes_low", "cluster")].message
    # pvecm names members by IP: a silent node cannot be matched, so it is not named.
    q = parse_quorum(hand("pvecm-status.txt").replace("Total votes:      3", "Total votes:      2"))
    found = keys(evaluate({"pve1": q, "pve2": None, "pve3": None}))
    assert "not in the membership" not in found[("corosync_votes_low", "cluster")].message


def test_out_of_sync_node_gets_the_resync_remedy() -> None:
    views = pcmk_views("c_node3_crashed") | {"node3": parse_quorum(hand("node3-isolated.quorumtool.txt"))}
    found = keys(evaluate(views))
    f = found[("corosync_membership_mismatch", "node3")]
    assert f.remedy == Remedy("resync", ("node3",)) and f.severity is Severity.WARNING
    assert "node1" in f.message and "node2" in f.message
    assert ("corosync_membership_mismatch", "node1") not in found
    assert ("corosync_not_quorate", "node3") in found


def test_link_down_to_a_live_member_is_redundancy_lost() -> None:
    views = {n: NodeCorosync(parse_quorum(pcmk_quorum("a_healthy", n))) for n in NODES}
    cfg = parse_cfgtool(hand("knet-link-disconnected.cfgtool.txt"))  # link 1 down to node3
    views["node1"] = NodeCorosync(views["node1"].quorum, cfg)
    f = keys(evaluate(views))[("corosync_link_down", "node1->node3 link 1")]
    assert f.severity is Severity.WARNING and "redundancy lost" in f.message


def test_link_down_to_a_dead_node_is_not_a_link_finding() -> None:
    views: dict[str, NodeCorosync | None] = {
        n: NodeCorosync(parse_quorum(pcmk_quorum("c_node3_crashed", n))) for n in ("node1", "node2")}
    cfg = parse_cfgtool(hand("knet-3.0.cfgtool.txt"))  # node3 disconnected, and not a member
    views["node1"] = NodeCorosync(parse_quorum(pcmk_quorum("c_node3_crashed", "node1")), cfg)
    views["node3"] = None
    assert {f.code for f in evaluate(views)} == {"corosync_votes_low"}
    if LAB.is_dir():
        assert {f.code for f in evaluate(lab_views("node3_down"))} == {"corosync_votes_low"}


def test_faulty_ring_is_redundancy_lost() -> None:
    q = parse_quorum(hand("corosync2-hex-ips.quorumtool.txt"))
    ring = parse_cfgtool(hand("corosync2-ring-faulty.cfgtool.txt"))
    f = keys(evaluate({"lb1": NodeCorosync(q, ring), "lb2": None}))[("corosync_link_down", "lb1 ring 1")]
    assert "FAULTY" in f.message and "192.168.50.11" in f.message


def test_qdevice_not_alive_or_not_voting() -> None:
    found = keys(evaluate({"node1": parse_quorum(hand("qdevice-lost.quorumtool.txt")), "node2": None},
                          expected_votes=3))
    assert "not alive" in found[("qdevice_down", "node1")].message
    assert "does not vote" in found[("qdevice_down", "node1")].message
    assert "not registered" in found[("qdevice_down", "node2")].message
    assert not any(f.code == "qdevice_down" for f in evaluate(
        {"node1": parse_quorum(hand("qdevice.quorumtool.txt")), "node2": None}, expected_votes=3))


def test_expected_votes_lowered_by_hand() -> None:
    q = parse_quorum(hand("pvecm-expected-1.txt"))
    f = keys(evaluate({"pve1": q, "pve2": None, "pve3": None}))[("expected_votes_lowered", "pve1")]
    assert f.severity is Severity.WARNING and "lowered to 1" in f.message


def test_last_man_standing_lowers_expected_by_design() -> None:
    q = parse_quorum(hand("wfa-lms.quorumtool.txt"))
    views = {"node1": q, "node2": None, "node3": None, "node4": None, "node5": None}
    assert not any(f.code == "expected_votes_lowered" for f in evaluate(views))


# ---------------------------------------------------------------- properties: model or ParseError, never else


def _real_texts() -> list[tuple[str, str]]:
    quorum = [pcmk_quorum(s, n) for s in SCENARIOS for n in PCMK_UP[s]]
    quorum += [(LAB / f).read_text() for f in lab_files("quorumtool")]
    quorum += [p.read_text() for p in sorted(HAND.glob("*.txt")) if "cfgtool" not in p.name]
    cfg = [(LAB / f).read_text() for f in lab_files("cfgtool")]
    cfg += [p.read_text() for p in sorted(HAND.glob("*cfgtool*.txt"))]
    return [("quorum", t) for t in quorum if t] + [("cfgtool", t) for t in cfg if t]


REAL = _real_texts()


def _survives(kind: str, data: str | bytes) -> None:
    """Parse and judge; the only exception allowed is a one-line ParseError."""
    try:
        if kind == "quorum":
            q = parse_quorum(data)
            evaluate({"a": q, "b": None})
        else:
            ls = parse_cfgtool(data)
            assert isinstance(ls, LinkStatus)
            evaluate({"a": NodeCorosync(parse_quorum(REAL[0][1]), ls)})
    except ParseError as exc:
        assert "\n" not in str(exc) and str(exc)


_FAST = settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow], deadline=None)


@_FAST
@given(doc=st.sampled_from(REAL), cut=st.integers(min_value=0, max_value=1200))
def test_truncation(doc: tuple[str, str], cut: int) -> None:
    _survives(doc[0], doc[1][:cut])


_AT = st.integers(min_value=0, max_value=1 << 16)  # taken modulo the length: no dependent draws


@_FAST
@given(doc=st.sampled_from(REAL), edits=st.lists(st.tuples(_AT, st.integers(0, 255)), min_size=1, max_size=8))
def test_byte_mutations(doc: tuple[str, str], edits: list[tuple[int, int]]) -> None:
    buf = bytearray(doc[1].encode())
    for at, byte in edits:
        buf[at % len(buf)] = byte
    _survives(doc[0], bytes(buf))


_TOKENS = st.sampled_from(["\n", " ", "\t", ":", "0", "1", "9", "0x", "-", "(local)", "Yes", "No",
                           "NR", "A,V,MW", "=", "LINK ID 7", "nodeid: 2:", "Quorum information\n",
                           "Membership information\n", "Qdevice", "(votes 9)", "99999999999999999999"])


@_FAST
@given(doc=st.sampled_from(REAL), edits=st.lists(st.tuples(
    _AT, st.integers(0, 12), st.one_of(st.just(""), _TOKENS, st.text(max_size=5))), min_size=1, max_size=6))
def test_text_edits(doc: tuple[str, str], edits: list[tuple[int, int, str]]) -> None:
    """Structure-aware edits: insert, delete and replace tokens the parsers care about."""
    text = doc[1]
    for at, span, token in edits:
        at %= len(text) + 1
        text = text[:at] + token + text[at + span:]
    _survives(doc[0], text)
