"""The typed change events one poll's diff yields: what changed, how bad, and which condition.

A problem and the recovery that ends it share `key`; `group` is the incident the event would be
on its own. Pure data: bot/pacemaker/diff.py makes them, the rest of the core decides what they mean.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bot.pacemaker.health import Remedy, Severity
from bot.pacemaker.snapshot import decode, encode


class EventKind(StrEnum):
    CLUSTER_UNREACHABLE = "cluster_unreachable"
    CLUSTER_REACHABLE = "cluster_reachable"
    QUORUM_LOST = "quorum_lost"
    QUORUM_REGAINED = "quorum_regained"
    NO_DC = "no_dc"
    DC_ELECTED = "dc_elected"
    DC_CHANGED = "dc_changed"
    MAINTENANCE_ON = "maintenance_on"
    MAINTENANCE_OFF = "maintenance_off"
    NODE_OFFLINE = "node_offline"
    NODE_ONLINE = "node_online"
    NODE_STANDBY = "node_standby"
    NODE_UNSTANDBY = "node_unstandby"
    NODE_MAINTENANCE = "node_maintenance"
    NODE_UNMAINTENANCE = "node_unmaintenance"
    NODE_UNCLEAN = "node_unclean"
    NODE_CLEAN = "node_clean"
    NODE_PENDING = "node_pending"
    NODE_JOINED = "node_joined"
    NODE_UNREACHABLE = "node_unreachable"
    NODE_REACHABLE = "node_reachable"
    NODES_DISAGREE = "nodes_disagree"
    NODES_AGREE = "nodes_agree"
    DAEMON_INACTIVE = "daemon_inactive"
    DAEMON_ACTIVE = "daemon_active"
    FENCE_SUCCEEDED = "fence_succeeded"
    FENCE_FAILED = "fence_failed"
    VIP_STOPPED = "vip_stopped"
    VIP_STARTED = "vip_started"
    VIP_MOVED = "vip_moved"
    VIPS_UNBALANCED = "vips_unbalanced"
    VIPS_BALANCED = "vips_balanced"
    CLONE_STOPPED = "clone_stopped"
    CLONE_STARTED = "clone_started"
    RESOURCE_STOPPED = "resource_stopped"
    RESOURCE_STARTED = "resource_started"
    RESOURCE_FAILED = "resource_failed"
    RESOURCE_RECOVERED = "resource_recovered"
    RESOURCE_BLOCKED = "resource_blocked"
    RESOURCE_UNBLOCKED = "resource_unblocked"
    RESOURCE_UNMANAGED = "resource_unmanaged"
    RESOURCE_MANAGED = "resource_managed"
    FAILED_ACTION = "failed_action"
    FAILED_ACTION_CLEARED = "failed_action_cleared"
    THRESHOLD_REACHED = "threshold_reached"
    THRESHOLD_CLEARED = "threshold_cleared"
    COROSYNC_QUORUM_LOST = "corosync_quorum_lost"
    COROSYNC_QUORUM_REGAINED = "corosync_quorum_regained"
    MEMBER_LOST = "member_lost"
    MEMBER_BACK = "member_back"
    LINK_DOWN = "link_down"
    LINK_UP = "link_up"
    # A node left the membership and rejoined between two polls: only Corosync's ring id and the
    # node's silence in the poll before say so. Nothing clears it but the cluster being healthy.
    NODE_BOUNCED = "node_bounced"


_K = EventKind
# recovery -> the problem it ends; they share Event.key.
CLEARS: Mapping[EventKind, EventKind] = {
    _K.CLUSTER_REACHABLE: _K.CLUSTER_UNREACHABLE, _K.QUORUM_REGAINED: _K.QUORUM_LOST,
    _K.DC_ELECTED: _K.NO_DC, _K.MAINTENANCE_OFF: _K.MAINTENANCE_ON, _K.NODE_ONLINE: _K.NODE_OFFLINE,
    _K.NODE_UNSTANDBY: _K.NODE_STANDBY, _K.NODE_UNMAINTENANCE: _K.NODE_MAINTENANCE,
    _K.NODE_CLEAN: _K.NODE_UNCLEAN, _K.NODE_JOINED: _K.NODE_PENDING,
    _K.NODE_REACHABLE: _K.NODE_UNREACHABLE, _K.NODES_AGREE: _K.NODES_DISAGREE,
    _K.DAEMON_ACTIVE: _K.DAEMON_INACTIVE, _K.VIP_STARTED: _K.VIP_STOPPED,
    _K.VIPS_BALANCED: _K.VIPS_UNBALANCED, _K.CLONE_STARTED: _K.CLONE_STOPPED,
    _K.RESOURCE_STARTED: _K.RESOURCE_STOPPED, _K.RESOURCE_RECOVERED: _K.RESOURCE_FAILED,
    _K.RESOURCE_UNBLOCKED: _K.RESOURCE_BLOCKED, _K.RESOURCE_MANAGED: _K.RESOURCE_UNMANAGED,
    _K.FAILED_ACTION_CLEARED: _K.FAILED_ACTION, _K.THRESHOLD_CLEARED: _K.THRESHOLD_REACHED,
    _K.COROSYNC_QUORUM_REGAINED: _K.COROSYNC_QUORUM_LOST, _K.MEMBER_BACK: _K.MEMBER_LOST,
    _K.LINK_UP: _K.LINK_DOWN,
}
# Changes that are neither a problem nor a recovery: the cluster did its job.
NEUTRAL = frozenset({_K.VIP_MOVED, _K.DC_CHANGED})
# Problems that open nothing a later event could close: they happened, once.
ONE_SHOT = frozenset({_K.FENCE_SUCCEEDED, _K.FENCE_FAILED})


@dataclass(frozen=True, slots=True)
class Event:
    kind: EventKind
    severity: Severity
    subject: str
    message: str  # one human line
    before: str | None = None
    after: str | None = None
    nodes: tuple[str, ...] = ()  # the nodes it involves
    remedy: Remedy | None = None
    key: str = ""  # the condition: a problem and the recovery that ends it share it
    group: str = ""  # the incident it would be on its own: "node:node3", "vip:virtual_ip_2", "quorum"

    @property
    def recovery(self) -> bool:
        return self.kind in CLEARS

    @property
    def clears(self) -> tuple[EventKind, ...]:
        return (CLEARS[self.kind],) if self.kind in CLEARS else ()

    @property
    def neutral(self) -> bool:
        return self.kind in NEUTRAL

    @property
    def problem(self) -> bool:
        return not (self.recovery or self.neutral)

    @property
    def one_shot(self) -> bool:
        return self.kind in ONE_SHOT

    @property
    def series(self) -> str:
        """What happened to whom, whatever the attempt: a fence device failing retry after retry
        is one series, which pages once per incident."""
        return f"{self.kind}:{self.subject}"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = encode(self)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Event:
        event: Event = decode(cls, data)
        return event


