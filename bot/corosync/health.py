"""Corosync health rules: every node's quorum (and link) view -> findings, worst first.

Not quorate, votes missing, a node whose membership disagrees with the rest (the runbook's
out-of-sync node), a link down to a live peer, qdevice trouble, expected votes lowered by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from bot.corosync.model import LinkFormat, LinkStatus, NodeCorosync, QuorumStatus
from bot.pacemaker.health import Finding, Remedy, Severity
from bot.watch.codes import FindingCode

Views = Mapping[str, NodeCorosync | QuorumStatus | None]


@dataclass(frozen=True, slots=True)
class _Cluster:
    polled: tuple[str, ...]  # every node asked, answered or not
    quorum: tuple[tuple[str, QuorumStatus], ...]  # by node name, sorted
    links: tuple[tuple[str, LinkStatus], ...]
    configured_votes: int

    def quorum_of(self, node: str) -> QuorumStatus | None:
        return next((q for n, q in self.quorum if n == node), None)


def evaluate(views: Views, *, expected_votes: int | None = None) -> tuple[Finding, ...]:
    """All findings for one cluster, worst first. `views` holds every configured node, None (or
    an empty NodeCorosync) for one that gave no answer. `expected_votes` is the configured
    total; by default one vote per node in `views`."""
    cluster = _cluster(views, expected_votes)
    findings = [f for rule in _RULES for f in rule(cluster)]
    return tuple(sorted(findings, key=lambda f: -f.severity))


def _cluster(views: Views, expected_votes: int | None) -> _Cluster:
    nodes = {name: v if isinstance(v, NodeCorosync) else NodeCorosync(quorum=v)
             for name, v in sorted(views.items())}
    return _Cluster(
        polled=tuple(nodes),
        quorum=tuple((n, v.quorum) for n, v in nodes.items() if v.quorum is not None),
        links=tuple((n, v.links) for n, v in nodes.items() if v.links is not None),
        configured_votes=expected_votes if expected_votes is not None else len(nodes),
    )


def _names(labels: Iterable[str]) -> str:
    return ", ".join(sorted(labels)) or "none"


# ---------------------------------------------------------------- quorum


def _not_quorate(c: _Cluster) -> Iterable[Finding]:
    for node, q in c.quorum:
        if q.quorate:
            continue
        vq = q.votequorum
        votes = (f" ({vq.total_votes} of {vq.expected_votes} expected votes, {vq.quorum} needed)"
                 if vq else "")
        yield Finding(Severity.CRITICAL, FindingCode.COROSYNC_NOT_QUORATE, node,
                      f"{node} is in a Corosync partition WITHOUT quorum{votes}, members: "
                      f"{_names(m.label for m in q.members)}; activity is blocked there")


def _reference(c: _Cluster) -> tuple[str, QuorumStatus] | None:
    """The view to judge the cluster by: a quorate one, then the one counting the most votes."""
    voting = [(n, q) for n, q in c.quorum if q.votequorum is not None]
    return max(voting, key=lambda nq: _weight(nq[1]), default=None)


def _weight(q: QuorumStatus) -> tuple[bool, int, int]:
    return (q.quorate, q.votequorum.total_votes if q.votequorum else 0, len(q.members))


def _votes_low(c: _Cluster) -> Iterable[Finding]:
    ref = _reference(c)
    if ref is None:
        return
    _, q = ref
    vq = q.votequorum
    if vq is None or vq.total_votes >= vq.expected_votes:
        return
    missing = _missing(c, q)
    text = f"Corosync counts {vq.total_votes} of {vq.expected_votes} expected votes"
    if missing:
        text += f"; not in the membership: {_names(missing)}"
    biggest = max((m.votes or 0 for m in q.members), default=0)
    if q.quorate and vq.total_votes - biggest < vq.quorum:
        text += f"; losing one more node loses quorum ({vq.quorum} needed)"
    yield Finding(Severity.WARNING, FindingCode.COROSYNC_VOTES_LOW, "cluster", text)


def _missing(c: _Cluster, ref: QuorumStatus) -> list[str]:
    """Polled nodes outside `ref`'s membership. A node that did not answer is only counted
    when every member is accounted for: names may be IPs (pvecm) that we cannot match."""
    own_ids = {n: q.local_nodeid for n, q in c.quorum}
    outside = [n for n, i in own_ids.items() if i not in ref.member_ids]
    accounted = {n for n, i in own_ids.items() if i in ref.member_ids}
    accounted |= {m.name for m in ref.members if m.name in c.polled}
    if len(accounted) < len(ref.members):
        return outside
    return [n for n in c.polled if n not in accounted]


def _expected_lowered(c: _Cluster) -> Iterable[Finding]:
    for node, q in c.quorum:
        vq = q.votequorum
        # LastManStanding and AllowDownscale lower expected votes themselves: that is by design.
        if vq is None or vq.auto_lowers_expected:
            continue
        floor = max(vq.highest_expected, c.configured_votes)
        if vq.expected_votes < floor:
            yield Finding(Severity.WARNING, FindingCode.EXPECTED_VOTES_LOWERED, node,
                          f"{node}: expected votes lowered to {vq.expected_votes} (cluster has "
                          f"{c.configured_votes} votes configured, highest expected "
                          f"{vq.highest_expected}), so {vq.quorum} vote(s) make quorum: set by hand "
                          "(`pvecm expected` / `corosync-quorumtool -e`)? A split partition "
                          "could become quorate")


# ---------------------------------------------------------------- membership


def _membership(c: _Cluster) -> Iterable[Finding]:
    """The runbook's out-of-sync node: its membership differs from the one most nodes agree on."""
    groups: dict[frozenset[int], list[str]] = {}
    for node, q in c.quorum:
        groups.setdefault(q.member_ids, []).append(node)
    if len(groups) < 2:
        return
    ref_ids, ref_nodes = max(groups.items(), key=lambda g: (
        any(_quorate(c, n) for n in g[1]), len(g[1]), len(g[0]), sorted(g[0])))
    views = dict(c.quorum)
    for ids, nodes in groups.items():
        if ids != ref_ids:
            yield from (_mismatch(node, views[node], views[ref_nodes[0]], ref_nodes) for node in nodes)


def _quorate(c: _Cluster, node: str) -> bool:
    q = c.quorum_of(node)
    return q is not None and q.quorate


def _mismatch(node: str, q: QuorumStatus, ref: QuorumStatus, ref_nodes: list[str]) -> Finding:
    mine = _names(q.label(i) for i in q.member_ids)
    theirs = _names(ref.label(i) for i in ref.member_ids)
    return Finding(Severity.WARNING, FindingCode.COROSYNC_MEMBERSHIP_MISMATCH, node,
                   f"{node}'s Corosync membership ({mine}) differs from the one {_names(ref_nodes)} "
                   f"see ({theirs}): {node} is out of sync with the cluster", Remedy("resync", (node,)))


# ---------------------------------------------------------------- links and qdevice


def _links(c: _Cluster) -> Iterable[Finding]:
    for node, ls in c.links:
        q = c.quorum_of(node)
        kind = "ring" if ls.format is LinkFormat.RING else "link"
        for link in ls.links:
            if link.faulty:
                yield Finding(Severity.WARNING, FindingCode.COROSYNC_LINK_DOWN, f"{node} {kind} {link.id}",
                              f"{node}: Corosync {kind} {link.id} ({link.address}) is FAULTY: "
                              f"redundancy lost ({link.status})")
            if q is None:
                continue  # without the membership a down peer may simply be a down node
            for peer_id in link.down_peers:
                if peer_id in q.member_ids and peer_id != q.local_nodeid:
                    peer = q.label(peer_id)
                    yield Finding(Severity.WARNING, FindingCode.COROSYNC_LINK_DOWN,
                                  f"{node}->{peer} link {link.id}",
                                  f"knet link {link.id} ({link.address}) from {node} to {peer} is down "
                                  f"while {peer} is still a member: redundancy lost")


def _qdevice(c: _Cluster) -> Iterable[Finding]:
    by_id = {q.local_nodeid: node for node, q in c.quorum}
    seen: dict[str, str] = {}
    for _, q in c.quorum:
        # A node's own row first: it knows its qdevice best; others' rows are second-hand.
        for m in sorted(q.members, key=lambda m: not m.local):
            if m.qdevice is None or m.qdevice.healthy:
                continue
            subject = by_id.get(m.nodeid, m.label)
            if subject not in seen or m.local:
                seen[subject] = _qdevice_problem(m.qdevice.registered, m.qdevice.alive, m.qdevice.cast_vote)
    for subject, problem in sorted(seen.items()):
        yield Finding(Severity.WARNING, FindingCode.QDEVICE_DOWN, subject,
                      f"quorum device on {subject} {problem}: one less tie-breaker vote")


def _qdevice_problem(registered: bool, alive: bool, votes: bool) -> str:
    if not registered:
        return "is not registered (corosync-qdevice not running?)"
    return " and ".join(p for p, bad in (("is not alive", not alive), ("does not vote", not votes)) if bad)


_RULES: tuple[Callable[[_Cluster], Iterable[Finding]], ...] = (
    _not_quorate, _votes_low, _membership, _expected_lowered, _links, _qdevice,
)
