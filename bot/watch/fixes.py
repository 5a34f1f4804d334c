"""Remediation-aware alerting: the changes an approved fix causes are its own effects, not news.

A cleanup re-probes its resource (the VIP shows stopped for a moment), a resync restarts a node's
Corosync (the node leaves and rejoins), a standby moves the node's VIPs away. While the fix runs
and for `settle_s` after, what it touches is reported in its request's thread (and the related
incident's), never paged and never opened as an incident.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.pacemaker.diff import IncidentDraft
from bot.watch.events import EventKind


@dataclass(frozen=True, slots=True)
class Fix:
    """An approved remediation as the watcher needs it."""

    request_id: str
    action: str
    args: tuple[str, ...]
    node: str  # where its command runs
    channel: str  # the request's channel and its root message
    message_ts: str | None
    ended_at: datetime | None  # None: still approved or running

    @property
    def label(self) -> str:
        return " ".join((self.action, *self.args))

    def acting(self, now: datetime, settle_s: float) -> bool:
        return self.ended_at is None or now - self.ended_at < timedelta(seconds=settle_s)

    @property
    def touches(self) -> frozenset[str]:
        """The names its effects show up under: its arguments (nodes, resources), else its node."""
        return frozenset(self.args or (self.node,))


# Fixes that bring things up: a node going down or quorum lost while one acts is not its doing
# (`pcs cluster stop` by hand just before an approved `start` is news of its own).
BRINGS_UP = frozenset({"start", "unstandby", "unmaintenance"})
_DOWN = frozenset({EventKind.NODE_OFFLINE, EventKind.MEMBER_LOST, EventKind.NODE_UNCLEAN,
                   EventKind.QUORUM_LOST, EventKind.COROSYNC_QUORUM_LOST, EventKind.CLUSTER_UNREACHABLE})


def explaining(fixes: Iterable[Fix], draft: IncidentDraft, now: datetime, settle_s: float) -> Fix | None:
    """The acting fix whose effects the draft shows, if any. A fencing is never a fix's effect."""
    if any(e.one_shot for e in draft.events):
        return None
    for fix in fixes:
        if not fix.acting(now, settle_s):
            continue
        if fix.action in BRINGS_UP and any(e.kind in _DOWN for e in draft.events):
            continue
        if any(_touched(fix.touches, e.subject, e.nodes) or e.kind is EventKind.NODE_BOUNCED
               for e in draft.events):  # which node bounced is a guess; a fix at work is not
            return fix
    return None


def _touched(names: frozenset[str], subject: str, nodes: tuple[str, ...]) -> bool:
    """`loadbalancer-clone@node2`, `link 0 node1↔node2` and `vips` name things in their own ways."""
    parts = set(nodes) | {subject} | set(subject.replace("↔", " ").replace("@", " ").split())
    return bool(names & parts)
