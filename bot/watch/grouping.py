"""Causal grouping across polls: which incident a change belongs to.

`incidents()` (bot/pacemaker/diff.py) groups one poll's events by cause. A node's failure shows
over several polls though: its links go down first, then it leaves the membership, then its VIP
moves, then at its return the VIPs are uneven and its clone instance starts late. Each of those
drafts names the node among its events' nodes; this module hands the draft to that node's
incident when one is open or just ended, so the failure stays one incident whichever symptom
showed first.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from bot.pacemaker.diff import IncidentDraft
from bot.watch.events import EventKind

NODE = "node:"
LINK = "link:"
# Whole-cluster changes that belong to a node's incident open or just ended: quorum is lost
# because nodes left; cluster maintenance follows node maintenance in one maintenance window.
CLUSTER_CAUSES = ("quorum", "maintenance")


def owner(draft: IncidentDraft, *, nodes: Sequence[str], members: Collection[str],
          incidents: Sequence[str], absorbing: str | None = None) -> str:
    """The incident key `draft` belongs to.

    `nodes`: the cluster's nodes; `members`: those in the membership now; `incidents`: the keys of
    incidents open or just ended, oldest first (a node key among them owns what involves it);
    `absorbing`: the open incident of a whole-cluster loss (quorum, the view), which owns all.
    """
    key = draft.key
    if absorbing is not None:
        return absorbing  # without quorum every stop, election and node state is its consequence
    owned = [k.removeprefix(NODE) for k in incidents if k.startswith(NODE)]
    if draft.cause[0].kind is EventKind.NODE_BOUNCED and owned and key.removeprefix(NODE) not in owned:
        # Which node bounced is a guess; a node's incident open or just ended (its rejoin's tail)
        # is not. The guessed node's own incident, if it opens later, leaves the bounce there.
        return f"{NODE}{owned[-1]}"
    if key.startswith(NODE):
        return key
    involved = _involved(draft, nodes)
    if key in CLUSTER_CAUSES:
        return f"{NODE}{owned[-1]}" if owned else key
    mine = [n for n in reversed(owned) if n in involved]
    if mine:
        return f"{NODE}{mine[0]}"
    if key.startswith(LINK):
        # Links go down before the membership says a node is gone: the link's node outside
        # the membership, else its far end, is the suspect.
        out = [n for n in involved if n not in members]
        return f"{NODE}{(out or involved[-1:] or [key])[0]}" if involved else key
    return key


def _involved(draft: IncidentDraft, nodes: Sequence[str]) -> list[str]:
    """The cluster's nodes the draft's events involve, in event order."""
    seen = [n for e in draft.events for n in e.nodes if n in nodes]
    return list(dict.fromkeys(seen))


def coalesce(drafts: Sequence[IncidentDraft],
             opening: Callable[[IncidentDraft], bool]) -> list[IncidentDraft]:
    """New problems of one poll that would each open an incident are one event when a node or the
    whole cluster is among them (two nodes lost at once, a VIP stopping because of it): one
    incident, keyed on the worst node loss (its severity is the worst of all). `opening`: whether
    a draft would open a new incident."""
    new = [d for d in drafts if d.is_problem and opening(d)]
    if len(new) < 2 or not any(d.key.startswith(NODE) or d.key in CLUSTER_CAUSES for d in new):
        return list(drafts)
    first, *rest = sorted(new, key=lambda d: (not d.key.startswith(NODE), -d.severity))
    merged = first
    for d in rest:
        merged = IncidentDraft(first.key, merged.cause, merged.effects + d.events)
    return [merged] + [d for d in drafts if d not in new]
