"""Causal grouping across polls: which incident a change belongs to.

`incidents()` (bot/pacemaker/diff.py) groups one poll's events by cause. A node's failure shows
over several polls though: its links go down first, then it leaves the membership, then its VIP
moves, then at its return the VIPs are uneven and its clone instance starts late. Each of those
drafts names the node among its events' nodes; this module hands the draft to that node's
incident when one is open or just ended, so the failure stays one incident whichever symptom
showed first.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from bot.pacemaker.diff import IncidentDraft

NODE = "node:"
LINK = "link:"
# Whole-cluster changes that belong to a node's incident open or just ended: quorum is lost
# because nodes left; cluster maintenance follows node maintenance in one maintenance window.
CLUSTER_CAUSES = ("quorum", "maintenance")


def owner(draft: IncidentDraft, *, nodes: Sequence[str], members: Collection[str],
          incidents: Sequence[str]) -> str:
    """The incident key `draft` belongs to.

    `nodes`: the cluster's nodes; `members`: those in the membership now; `incidents`: the keys of
    incidents open or just ended, oldest first (a node key among them owns what involves it).
    """
    key = draft.key
    if key.startswith(NODE):
        return key
    involved = _involved(draft, nodes)
    owned = [k.removeprefix(NODE) for k in incidents if k.startswith(NODE)]
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
