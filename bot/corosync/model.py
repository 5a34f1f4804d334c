"""Typed, immutable model of what one node's Corosync tools say: quorum, membership, links.

Node ids are ints whatever the printed base (decimal, or hex with `-H` as pvecm uses).
Fields a format does not print are None, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

QDEVICE_NODEID = 0  # votequorum's pseudo node id for the quorum device row


@dataclass(frozen=True, slots=True)
class QdeviceFlags:
    """One member's Qdevice column: `A,V,NMW`, or `NR` (not registered on that node)."""

    registered: bool
    alive: bool = False
    cast_vote: bool = False
    master_wins: bool = False

    @property
    def healthy(self) -> bool:
        return self.registered and self.alive and self.cast_vote

    def __str__(self) -> str:
        if not self.registered:
            return "NR"
        return ",".join(("A" if self.alive else "NA", "V" if self.cast_vote else "NV",
                         "MW" if self.master_wins else "NMW"))


@dataclass(frozen=True, slots=True)
class Member:
    nodeid: int
    name: str  # resolved name, or the ring0 address; "" when Corosync could not resolve it
    votes: int | None = None  # None when the quorum provider is not votequorum
    local: bool = False
    qdevice: QdeviceFlags | None = None  # None when no Qdevice column is printed

    @property
    def label(self) -> str:
        return self.name or f"nodeid {self.nodeid}"


@dataclass(frozen=True, slots=True)
class QdeviceRow:
    """The `0 ... Qdevice` membership row: the device's votes as this node counts them."""

    name: str
    votes: int  # 0 when this node's qdevice does not cast a vote
    configured_votes: int | None = None  # the `(votes N)` note printed when not voting


@dataclass(frozen=True, slots=True)
class Votequorum:
    expected_votes: int
    highest_expected: int
    total_votes: int
    quorum: int
    activity_blocked: bool
    flags: tuple[str, ...]  # as printed: Quorate, 2Node, WaitForAll, LastManStanding, ...

    def has(self, flag: str) -> bool:
        return flag in self.flags

    @property
    def qdevice_registered(self) -> bool:
        return self.has("Qdevice")

    @property
    def auto_lowers_expected(self) -> bool:
        """LastManStanding and AllowDownscale lower expected votes by design, not by hand."""
        return self.has("LastManStanding") or self.has("AllowDownscale")


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    """`pvecm status`'s leading block (Proxmox)."""

    name: str | None = None
    config_version: int | None = None
    transport: str | None = None
    secure_auth: bool | None = None


@dataclass(frozen=True, slots=True)
class QuorumStatus:
    """`corosync-quorumtool -s` (Corosync 2 or 3) or `pvecm status` from one node."""

    quorate: bool
    nodes: int
    local_nodeid: int
    members: tuple[Member, ...]
    provider: str | None = None
    ring_id: str | None = None  # "1.12" (Corosync 3), "1/8" or "8" (Corosync 2): opaque
    date: datetime | None = None  # naive: quorumtool prints the node's local time
    votequorum: Votequorum | None = None  # None when the provider is not votequorum
    qdevice: QdeviceRow | None = None
    cluster: ClusterInfo | None = None  # only pvecm status prints it
    hex_ids: bool = False

    @property
    def local(self) -> Member | None:
        return next((m for m in self.members if m.local), None)

    @property
    def member_ids(self) -> frozenset[int]:
        return frozenset(m.nodeid for m in self.members)

    def member(self, nodeid: int) -> Member | None:
        return next((m for m in self.members if m.nodeid == nodeid), None)

    def label(self, nodeid: int) -> str:
        m = self.member(nodeid)
        return m.label if m else f"nodeid {nodeid}"


class LinkFormat(StrEnum):
    RING = "ring"  # Corosync 2 totem rings: `RING ID 0` / `status = ring 0 active with no faults`
    KNET = "knet"  # Corosync 3 links: `LINK ID 0 udp` / per-node status


class PeerState(StrEnum):
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    LOCALHOST = "localhost"


@dataclass(frozen=True, slots=True)
class PeerLink:
    # None when Corosync 3.0.0 printed a position (`node 0:`) rather than a node id.
    nodeid: int | None
    state: PeerState
    enabled: bool | None = None  # printed by Corosync 3.0.x and `cfgtool -n` only
    mtu: int | None = None  # `cfgtool -n` only


@dataclass(frozen=True, slots=True)
class Link:
    id: int
    address: str | None
    transport: str | None = None  # knet link transport ("udp", "sctp") when printed
    status: str | None = None  # the `status = ...` text (rings, Corosync 3 udp/udpu, brief)
    peers: tuple[PeerLink, ...] = ()

    @property
    def faulty(self) -> bool:
        return self.status is not None and "FAULTY" in self.status.upper()

    @property
    def down_peers(self) -> tuple[int, ...]:
        return tuple(p.nodeid for p in self.peers
                     if p.state is PeerState.DISCONNECTED and p.nodeid is not None)


@dataclass(frozen=True, slots=True)
class LinkStatus:
    """`corosync-cfgtool -s` (or `-n`) from one node."""

    format: LinkFormat
    local_nodeid: int | None
    links: tuple[Link, ...]
    transport: str | None = None  # "knet", "udpu", "udp" when Corosync 3.1+ prints it

    def link(self, link_id: int) -> Link | None:
        return next((lk for lk in self.links if lk.id == link_id), None)


@dataclass(frozen=True, slots=True)
class NodeCorosync:
    """What one node answered; None fields mean that command gave no usable answer."""

    quorum: QuorumStatus | None = None
    links: LinkStatus | None = None
