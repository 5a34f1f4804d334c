"""Pure parsers: `corosync-quorumtool -s` / `pvecm status` and `corosync-cfgtool -s` (or `-n`) text.

Every bad input (empty, binary, truncated, not this tool) raises ParseError with one line;
no other exception escapes. Unknown lines and extra whitespace are tolerated.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import NoReturn

from bot.corosync.model import (
    QDEVICE_NODEID,
    ClusterInfo,
    Link,
    LinkFormat,
    LinkStatus,
    Member,
    PeerLink,
    PeerState,
    QdeviceFlags,
    QdeviceRow,
    QuorumStatus,
    Votequorum,
)
from bot.errors import ParseError

MAX_CHARS = 1024 * 1024  # a 32-node cluster prints a few KiB; anything this big is not the tool
QUORUMTOOL = "corosync-quorumtool"
CFGTOOL = "corosync-cfgtool"

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_NOT_RUNNING = ("Cannot initialize CMAP service", "Cannot initialize QUORUM service",
                "Cannot initialise CFG service", "Could not initialize corosync")
_KV = re.compile(r"\s*([A-Za-z][A-Za-z ]*?)\s*:\s*(.*?)\s*")
_SECTIONS = {
    "cluster information": "cluster",  # pvecm status only
    "quorum information": "quorum",
    "votequorum information": "votequorum",
    "membership information": "members",
}
_QUORUM = re.compile(r"(\d+)\s*(Activity blocked)?")
_FLAG = re.compile(r"[A-Za-z0-9]+")
_QDEV_FLAGS = re.compile(r"(N?A),(N?V),(N?MW)")
_QDEV_ROW = re.compile(r"(.*?)\s*(?:\(votes (\d+)\))?")
_LOCAL = "(local)"
_DEC = re.compile(r"\d+")
_HEX = re.compile(r"0x[0-9a-fA-F]+")
_YES = {"yes": True, "no": False, "on": True, "off": False, "1": True, "0": False}


def _fail(tool: str, message: str) -> NoReturn:
    raise ParseError(f"{tool}: {message}")


def _snip(text: str) -> str:
    """A bounded, escaped excerpt: repr() keeps the error message on one line."""
    return repr(text[:60])


def _lines(data: str | bytes, tool: str) -> list[str]:
    if len(data) > MAX_CHARS:
        _fail(tool, f"output too large ({len(data)} bytes)")
    if isinstance(data, bytes):
        if b"\x00" in data:
            _fail(tool, "binary output, not text")
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            _fail(tool, f"output is not UTF-8 text (byte {exc.start})")
    if _CONTROL.search(data):
        _fail(tool, "binary output: control characters in the text")
    if not data.strip():
        _fail(tool, "empty output")
    for marker in _NOT_RUNNING:
        if marker in data:
            _fail(tool, f"corosync is not running or not reachable ({marker})")
    # split("\n"), not splitlines(): the latter also breaks on \x85 and \u2028 inside names.
    return [line.rstrip("\r") for line in data.split("\n")]


def _int(tool: str, key: str, value: str | None) -> int:
    if value is None:
        _fail(tool, f"no '{key}' line (truncated?)")
    if not _DEC.fullmatch(value):
        _fail(tool, f"'{key}' is not a number: {_snip(value)}")
    return int(value)


def _opt_int(tool: str, key: str, value: str | None) -> int | None:
    return None if value is None else _int(tool, key, value)


def _nodeid(text: str) -> int | None:
    """Decimal as Corosync prints by default, or 0x%08x with `-H` (pvecm passes it)."""
    if _DEC.fullmatch(text):
        return int(text)
    if _HEX.fullmatch(text):
        return int(text, 16)
    return None


def _date(text: str | None) -> datetime | None:
    # ctime() format, day space-padded: "Mon Jan  8 10:00:00 2024". Informational only.
    if not text:
        return None
    try:
        return datetime.strptime(" ".join(text.split()), "%a %b %d %H:%M:%S %Y")
    except ValueError:
        return None


# ---------------------------------------------------------------- corosync-quorumtool / pvecm


@dataclass
class _Sections:
    seen: list[str] = field(default_factory=list)
    fields: dict[str, dict[str, str]] = field(default_factory=dict)
    rows: list[str] = field(default_factory=list)


def _split_sections(lines: Iterable[str]) -> _Sections:
    out = _Sections()
    section: str | None = None
    for line in lines:
        text = line.strip()
        if not text or set(text) == {"-"}:
            continue
        if text.lower() in _SECTIONS:
            section = _SECTIONS[text.lower()]
            out.seen.append(section)
            continue
        if section == "members":
            out.rows.append(text)
        elif section is not None and (m := _KV.fullmatch(line)):
            # First value wins: a repeated key is a second (monitor) frame, not a correction.
            out.fields.setdefault(section, {}).setdefault(m.group(1).lower(), m.group(2))
    return out


def parse_quorum(data: str | bytes) -> QuorumStatus:
    """`corosync-quorumtool -s` (Corosync 2 and 3, decimal or `-H` hex ids, names or `-i` IPs)
    or `pvecm status` (the same with a leading Cluster information block)."""
    tool = QUORUMTOOL
    sec = _split_sections(_lines(data, tool))
    if "quorum" not in sec.seen:
        _fail(tool, "no 'Quorum information' section: not corosync-quorumtool output")
    q = sec.fields.get("quorum", {})
    local_text = q.get("node id")
    if local_text is None:
        _fail(tool, "no 'Node ID' line (truncated?)")
    local_id = _nodeid(local_text)
    if local_id is None:
        _fail(tool, f"bad Node ID {_snip(local_text)}")
    quorate = _yes_no(tool, "Quorate", q.get("quorate"))
    nodes = _int(tool, "Nodes", q.get("nodes"))
    provider = q.get("quorum provider")
    vq = _votequorum(tool, sec)
    if vq is None and provider == "corosync_votequorum":
        _fail(tool, "votequorum provider but no 'Votequorum information' section (truncated?)")
    if "members" not in sec.seen:
        _fail(tool, "no 'Membership information' section (truncated?)")
    members, qdev = _members(tool, sec.rows, has_votes=vq is not None)
    if len(members) != nodes:
        _fail(tool, f"{len(members)} membership rows for 'Nodes: {nodes}' (truncated?)")
    return QuorumStatus(
        quorate=quorate, nodes=nodes, local_nodeid=local_id,
        members=_mark_local(tool, members, local_id),
        provider=provider, ring_id=q.get("ring id") or None, date=_date(q.get("date")),
        votequorum=vq, qdevice=qdev, cluster=_cluster(tool, sec),
        hex_ids=local_text.startswith("0x"),
    )


def _yes_no(tool: str, key: str, value: str | None) -> bool:
    if value is None:
        _fail(tool, f"no '{key}' line (truncated?)")
    if value.lower() not in _YES:
        _fail(tool, f"'{key}' is neither Yes nor No: {_snip(value)}")
    return _YES[value.lower()]


def _votequorum(tool: str, sec: _Sections) -> Votequorum | None:
    if "votequorum" not in sec.seen:
        return None
    v = sec.fields.get("votequorum", {})
    quorum_text = v.get("quorum")
    if quorum_text is None:
        _fail(tool, "no 'Quorum' line (truncated?)")
    m = _QUORUM.fullmatch(quorum_text)
    if not m:
        _fail(tool, f"bad 'Quorum' line {_snip(quorum_text)}")
    flags_text = v.get("flags")
    if flags_text is None:
        # The Flags line is the section's last: without it the output was cut short.
        _fail(tool, "no 'Flags' line (truncated?)")
    flags = tuple(flags_text.split())
    if any(not _FLAG.fullmatch(f) for f in flags):
        _fail(tool, f"bad 'Flags' line {_snip(flags_text)}")
    return Votequorum(
        expected_votes=_int(tool, "Expected votes", v.get("expected votes")),
        highest_expected=_int(tool, "Highest expected", v.get("highest expected")),
        total_votes=_int(tool, "Total votes", v.get("total votes")),
        quorum=int(m.group(1)),
        activity_blocked=m.group(2) is not None,
        flags=flags,
    )


def _cluster(tool: str, sec: _Sections) -> ClusterInfo | None:
    if "cluster" not in sec.seen:
        return None
    c = sec.fields.get("cluster", {})
    auth = c.get("secure auth")
    return ClusterInfo(
        name=c.get("name") or None,
        config_version=_opt_int(tool, "Config Version", c.get("config version")),
        transport=c.get("transport") or None,
        secure_auth=None if auth is None else _yes_no(tool, "Secure auth", auth),
    )


def _members(tool: str, rows: list[str], has_votes: bool) -> tuple[list[Member], QdeviceRow | None]:
    if not rows:
        _fail(tool, "empty membership table (truncated?)")
    header = rows[0].split()
    expected = ["Nodeid", *(["Votes"] if has_votes else []), "Name"]
    has_qdev = header == ["Nodeid", "Votes", "Qdevice", "Name"]
    if header != expected and not (has_votes and has_qdev):
        _fail(tool, f"unexpected membership header {_snip(rows[0])}")
    members: list[Member] = []
    qdev: QdeviceRow | None = None
    for row in rows[1:]:
        parsed = _member_row(row.split(), has_votes, has_qdev)
        if isinstance(parsed, QdeviceRow):
            qdev = parsed
        elif parsed is not None:
            members.append(parsed)
    ids = [m.nodeid for m in members]
    if len(set(ids)) != len(ids):
        _fail(tool, "the same nodeid appears twice in the membership table")
    return members, qdev


def _member_row(tokens: list[str], has_votes: bool, has_qdev: bool) -> Member | QdeviceRow | None:
    """One table row, or None for a line that is not one (e.g. 'Unable to get node 3 info')."""
    nodeid = _nodeid(tokens[0]) if tokens else None
    if nodeid is None:
        return None
    votes: int | None = None
    rest = tokens[1:]
    if has_votes:
        if not rest or not _DEC.fullmatch(rest[0]):
            return None
        votes, rest = int(rest[0]), rest[1:]
        if nodeid == QDEVICE_NODEID:
            return _qdevice_row(" ".join(rest), votes)
    flags: QdeviceFlags | None = None
    if has_qdev:
        flags = _qdevice_flags(rest[0]) if rest else None
        if flags is None:
            return None
        rest = rest[1:]
    local = bool(rest) and rest[-1] == _LOCAL
    name = " ".join(rest[:-1] if local else rest)
    return Member(nodeid=nodeid, name=name, votes=votes, local=local, qdevice=flags)


def _qdevice_flags(token: str) -> QdeviceFlags | None:
    if token == "NR":
        return QdeviceFlags(registered=False)
    m = _QDEV_FLAGS.fullmatch(token)
    if not m:
        return None
    return QdeviceFlags(registered=True, alive=m.group(1) == "A", cast_vote=m.group(2) == "V",
                        master_wins=m.group(3) == "MW")


def _qdevice_row(text: str, votes: int) -> QdeviceRow | None:
    m = _QDEV_ROW.fullmatch(text)
    if not m or not m.group(1):
        return None
    configured = int(m.group(2)) if m.group(2) else None
    return QdeviceRow(name=m.group(1), votes=votes, configured_votes=configured)


def _mark_local(tool: str, members: list[Member], local_id: int) -> tuple[Member, ...]:
    """Trust `(local)` only where it agrees with Node ID; without votequorum it is not printed."""
    marked = [m for m in members if m.local]
    if len(marked) > 1 or (marked and marked[0].nodeid != local_id):
        _fail(tool, "the '(local)' membership row disagrees with 'Node ID'")
    return tuple(replace(m, local=True) if m.nodeid == local_id else m for m in members)


# ---------------------------------------------------------------- corosync-cfgtool


@dataclass
class _LinkDraft:
    id: int
    ring: bool
    transport: str | None = None
    address: str | None = None
    status: str | None = None
    peers: list[PeerLink] = field(default_factory=list)


@dataclass
class _CfgState:
    local_id: int | None = None
    transport: str | None = None
    header: bool = False
    ring_header: bool = False
    links: list[_LinkDraft] = field(default_factory=list)
    node: int | None = None  # `-n`: the reachable node whose LINK lines follow
    errors: list[str] = field(default_factory=list)

    @property
    def current(self) -> _LinkDraft | None:
        return self.links[-1] if self.links else None

    def link(self, link_id: int, ring: bool = False) -> _LinkDraft:
        found = next((lk for lk in self.links if lk.id == link_id), None)
        if found is None:
            found = _LinkDraft(link_id, ring)
            self.links.append(found)
        return found


_PRINTING = re.compile(r"Printing (ring|link) status\.?")
_LOCAL_ID = re.compile(r"Local node ID (\S+?)(?:, transport (\S+))?")
_LINK_HEAD = re.compile(r"(RING|LINK) ID (\d+)(?:\s+(\S+))?")
_ADDR = re.compile(r"(id|addr)\s*=\s*(.*)")
_STATUS = re.compile(r"status\s*=\s*(.*)")
_PEER_31 = re.compile(r"nodeid:\s*(\d+):\s*(localhost|connected|disconnected)")
_PEER_30 = re.compile(r"(nodeid|node)\s+(\d+):\s*link enabled:\s*([01])\s+link connected:\s*([01])")
_NODE_N = re.compile(r"nodeid:?\s*(\d+)\s+reachable\b.*")
_LINK_N = re.compile(r"LINK:\s*(\d+)\s*(\w*)\s*\(([^)]*)\)\s*((?:[a-z]+\s+)*)mtu:\s*(\d+)")


def parse_cfgtool(data: str | bytes) -> LinkStatus:
    """`corosync-cfgtool -s`: Corosync 2 rings, Corosync 3.0 (`link enabled:1 link connected:1`)
    and 3.1+ (`nodeid: 2: connected`) knet links; also the `-n` per-node listing."""
    tool = CFGTOOL
    state = _CfgState()
    for line in _lines(data, tool):
        text = line.strip()
        if text:
            _cfg_line(tool, state, text)
    return _build_links(tool, state)


def _cfg_line(tool: str, st: _CfgState, text: str) -> None:
    for pattern, handler in _CFG_HANDLERS:
        m = pattern.fullmatch(text)
        if m:
            handler(tool, st, m)
            return
    if text.startswith(("Could not", "No nodes found")):
        st.errors.append(text)


def _on_printing(tool: str, st: _CfgState, m: re.Match[str]) -> None:
    st.header = True
    st.ring_header = st.ring_header or m.group(1) == "ring"


def _on_local(tool: str, st: _CfgState, m: re.Match[str]) -> None:
    if not _DEC.fullmatch(m.group(1)):
        _fail(tool, f"bad local node ID {_snip(m.group(1))}")
    st.local_id, st.transport, st.header = int(m.group(1)), m.group(2), True


def _on_link_head(tool: str, st: _CfgState, m: re.Match[str]) -> None:
    link_id = int(m.group(2))
    if any(lk.id == link_id for lk in st.links):
        _fail(tool, f"{m.group(1)} ID {link_id} listed twice")
    st.links.append(_LinkDraft(link_id, m.group(1) == "RING", transport=m.group(3)))


def _current(tool: str, st: _CfgState, what: str) -> _LinkDraft:
    if st.current is None:
        _fail(tool, f"{what} before any RING/LINK ID line")
    return st.current


def _on_addr(tool: str, st: _CfgState, m: re.Match[str]) -> None:
    _current(tool, st, "address").address = m.group(2).strip() or None


def _on_status(tool: str, st: _CfgState, m: re.Match[str]) -> None:
    _current(tool, st, "status").status = m.group(1).strip()


def _on_status_block(tool: str, st: _CfgState, m: re.Match[str]) -> None:
    _current(tool, st, "status")  # the per-node lines follow; a link without them is checked later


def _on_peer_31(tool: str, st: _CfgState, m: re.Match[str]) -> None:
    link = _current(tool, st, "node status")
    link.peers.append(PeerLink(int(m.group(1)), PeerState(m.group(2))))


def _on_peer_30(tool: str, st: _CfgState, m: re.Match[str]) -> None:
    link = _current(tool, st, "node status")
    # Corosync 3.0.0 printed `node <position>`, later 3.0.x `nodeid <id>`.
    nodeid = int(m.group(2)) if m.group(1) == "nodeid" else None
    connected = m.group(4) == "1"
    link.peers.append(PeerLink(nodeid, PeerState.CONNECTED if connected else PeerState.DISCONNECTED,
                               enabled=m.group(3) == "1"))


def _on_node_n(tool: str, st: _CfgState, m: re.Match[str]) -> None:
    st.node = int(m.group(1))


def _on_link_n(tool: str, st: _CfgState, m: re.Match[str]) -> None:
    if st.node is None:
        _fail(tool, "LINK line before any 'nodeid: N reachable' line")
    link = st.link(int(m.group(1)))
    link.transport = link.transport or m.group(2) or None
    link.address = link.address or m.group(3).split("->")[0].strip() or None
    words = m.group(4).split()
    state = PeerState.CONNECTED if "connected" in words else PeerState.DISCONNECTED
    link.peers.append(PeerLink(st.node, state, enabled="enabled" in words, mtu=int(m.group(5))))


_CfgHandler = Callable[[str, _CfgState, re.Match[str]], None]
_CFG_HANDLERS: tuple[tuple[re.Pattern[str], _CfgHandler], ...] = (
    (_PRINTING, _on_printing),
    (_LOCAL_ID, _on_local),
    (_LINK_HEAD, _on_link_head),
    (_ADDR, _on_addr),
    (_STATUS, _on_status),
    (re.compile(r"status:"), _on_status_block),
    (_PEER_31, _on_peer_31),
    (_PEER_30, _on_peer_30),
    (_NODE_N, _on_node_n),
    (_LINK_N, _on_link_n),
)


def _build_links(tool: str, st: _CfgState) -> LinkStatus:
    if not st.header and not st.links:
        _fail(tool, st.errors[0] if st.errors else "no 'Local node ID' line: not corosync-cfgtool output")
    if not st.links:
        _fail(tool, st.errors[0] if st.errors else "no ring or link listed (truncated?)")
    ring = st.ring_header or any(lk.ring for lk in st.links)
    if ring and not all(lk.ring for lk in st.links):
        _fail(tool, "mixes RING and LINK sections")
    return LinkStatus(
        format=LinkFormat.RING if ring else LinkFormat.KNET,
        local_nodeid=st.local_id,
        links=tuple(_finish_link(tool, lk, st.local_id) for lk in st.links),
        transport=st.transport,
    )


def _finish_link(tool: str, lk: _LinkDraft, local_id: int | None) -> Link:
    if lk.address is None:
        _fail(tool, f"link {lk.id} has no address (truncated?)")
    if lk.status is None and not lk.peers:
        _fail(tool, f"link {lk.id} has no status (truncated?)")
    ids = [p.nodeid for p in lk.peers if p.nodeid is not None]
    if len(set(ids)) != len(ids):
        _fail(tool, f"link {lk.id} lists a node twice")
    # 3.0.x printed the local node like any peer; 3.1+ says `localhost`. Normalise to that.
    peers = tuple(replace(p, state=PeerState.LOCALHOST) if p.nodeid is not None and p.nodeid == local_id
                  else p for p in lk.peers)
    return Link(id=lk.id, address=lk.address, transport=lk.transport, status=lk.status, peers=peers)
