"""Every node's Corosync answer -> one cluster-wide summary: the view to judge by, node names by
node id, the membership, and the links that are down. Pure.

Corosync speaks in node ids; people (and the config) in node names. A node's own answer says
which id it has, so its configured name is the best label for that id; Corosync's printed name
(a hostname, or an IP address under pvecm) is the fallback.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bot.corosync.model import LinkStatus, NodeCorosync, QuorumStatus


@dataclass(frozen=True, slots=True)
class LinkDown:
    """A knet link down between two nodes (`b` set), or a whole totem ring FAULTY on `a`."""

    link: int
    a: str
    b: str | None = None
    # Both ends are members: redundancy is lost. Otherwise the far end is simply gone, and the
    # membership change is the news, not its links.
    members: bool = True

    @property
    def label(self) -> str:
        return f"link {self.link} {self.a}↔{self.b}" if self.b else f"ring {self.link} on {self.a}"


@dataclass(frozen=True, slots=True)
class CorosyncSummary:
    reference_node: str | None  # whose quorum view the cluster is judged by
    quorum: QuorumStatus | None  # that view; None when no node gave one
    names: tuple[tuple[int, str], ...] = ()  # node id -> name, sorted by id
    links_down: tuple[LinkDown, ...] = ()  # every disconnected pair or faulty ring, sorted
    link_ids: tuple[int, ...] = ()  # every link (or ring) id any node reported
    transport: str | None = None

    def name(self, nodeid: int) -> str:
        return dict(self.names).get(nodeid, f"nodeid {nodeid}")

    @property
    def quorate(self) -> bool | None:
        return self.quorum.quorate if self.quorum else None

    @property
    def members(self) -> tuple[str, ...]:
        """The reference partition's members by name, sorted."""
        if self.quorum is None:
            return ()
        return tuple(sorted(self.name(m.nodeid) for m in self.quorum.members))

    @property
    def redundancy_lost(self) -> tuple[LinkDown, ...]:
        return tuple(lk for lk in self.links_down if lk.members)


def summarize(views: Mapping[str, NodeCorosync | None],
              known: Mapping[int, str] | None = None) -> CorosyncSummary:
    """`views` holds every polled node in configured order, None for one that gave no answer.
    `known`: names by node id from elsewhere (Pacemaker's node list), for nodes whose Corosync
    is down and so name themselves nowhere."""
    answers = {n: v for n, v in views.items() if v is not None}
    names = _names(answers, known or {})
    ref = _reference(answers)
    ref_node, quorum = ref if ref else (None, None)
    member_names = {names.get(m.nodeid) for m in quorum.members} if quorum else set()
    links = [(n, v.links) for n, v in answers.items() if v.links is not None]
    return CorosyncSummary(
        reference_node=ref_node,
        quorum=quorum,
        names=tuple(sorted(names.items())),
        links_down=_links_down(links, names, member_names),
        link_ids=tuple(sorted({lk.id for _, ls in links for lk in ls.links})),
        transport=next((ls.transport for _, ls in links if ls.transport), None),
    )


def _reference(answers: Mapping[str, NodeCorosync]) -> tuple[str, QuorumStatus] | None:
    """A quorate view first, then the one counting the most votes, then the most members;
    ties go to the first configured node (max() keeps the first of equals)."""
    views = [(n, v.quorum) for n, v in answers.items() if v.quorum is not None]
    def rank(item: tuple[str, QuorumStatus]) -> tuple[bool, int, int]:
        q = item[1]
        return (q.quorate, q.votequorum.total_votes if q.votequorum else 0, len(q.members))
    return max(views, key=rank, default=None)


def _names(answers: Mapping[str, NodeCorosync], known: Mapping[int, str]) -> dict[int, str]:
    # Weakest first: Corosync's labels, then the caller's, then each node's own answer (its id
    # under its configured name).
    names: dict[int, str] = {}
    for v in answers.values():
        for m in v.quorum.members if v.quorum else ():
            names.setdefault(m.nodeid, m.name or f"nodeid {m.nodeid}")
    names.update(known)
    for node, v in answers.items():
        own = v.quorum.local_nodeid if v.quorum else (v.links.local_nodeid if v.links else None)
        if own is not None:
            names[own] = node
    return names


def _links_down(links: list[tuple[str, LinkStatus]], names: Mapping[int, str],
                members: set[str | None]) -> tuple[LinkDown, ...]:
    found: set[LinkDown] = set()
    for node, ls in links:
        for link in ls.links:
            if link.faulty:
                found.add(LinkDown(link.id, node, None, node in members))
            for peer_id in link.down_peers:
                peer = names.get(peer_id, f"nodeid {peer_id}")
                a, b = sorted((node, peer))
                found.add(LinkDown(link.id, a, b, a in members and b in members))
    return tuple(sorted(found, key=lambda lk: (lk.link, lk.a, lk.b or "")))
