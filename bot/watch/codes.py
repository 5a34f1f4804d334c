"""Finding codes, as one enum instead of strings repeated across modules.

A StrEnum so JSON output, stored keys and rendered text keep the exact strings they had: a
FindingCode encodes, formats and hashes as its value, and compares equal to it, so state written
before the enum (plain strings in the store and in snapshots) still matches.
"""

from __future__ import annotations

from enum import StrEnum


class FindingCode(StrEnum):
    # Pacemaker, cluster-wide (bot/pacemaker/health.py)
    PACEMAKER_DOWN = "pacemaker_down"
    NO_DC = "no_dc"
    NO_QUORUM = "no_quorum"
    FEW_HEALTHY = "few_healthy"
    CLUSTER_MAINTENANCE = "cluster_maintenance"
    STOP_ALL_RESOURCES = "stop_all_resources"
    FENCING_DISABLED = "fencing_disabled"
    FENCING_FAILED = "fencing_failed"
    FENCING_PENDING = "fencing_pending"
    # Pacemaker, per node; the node_<state> ones are built from the node's attribute name.
    NODE_OFFLINE = "node_offline"
    NODE_UNCLEAN = "node_unclean"
    NODE_PENDING = "node_pending"
    NODE_STANDBY = "node_standby"
    NODE_STANDBY_ONFAIL = "node_standby_onfail"
    NODE_MAINTENANCE = "node_maintenance"
    NODE_SHUTDOWN = "node_shutdown"
    NODE_HEALTH = "node_health"
    # Pacemaker, resources
    VIP_MISSING = "vip_missing"
    VIP_STOPPED = "vip_stopped"
    VIP_SPREAD = "vip_spread"
    CLONE_MISSING = "clone_missing"
    CLONE_GAP = "clone_gap"
    RESOURCE_STOPPED = "resource_stopped"
    RESOURCE_FAILED = "resource_failed"
    RESOURCE_BLOCKED = "resource_blocked"
    RESOURCE_UNMANAGED = "resource_unmanaged"
    MULTI_ACTIVE = "multi_active"
    FAILED_ACTION = "failed_action"
    MIGRATION_THRESHOLD = "migration_threshold"
    RESOURCE_DISABLED = "resource_disabled"
    RESOURCE_ORPHANED = "resource_orphaned"
    # Merging the nodes' views (bot/pacemaker/merge.py)
    NO_NODES = "no_nodes"
    NO_VIEW = "no_view"
    NODE_UNREACHABLE = "node_unreachable"
    COROSYNC_DOWN = "corosync_down"
    SPLIT_BRAIN = "split_brain"
    OUT_OF_SYNC = "out_of_sync"
    DAEMON_INACTIVE = "daemon_inactive"
    # Corosync (bot/corosync/health.py)
    COROSYNC_NOT_QUORATE = "corosync_not_quorate"
    COROSYNC_VOTES_LOW = "corosync_votes_low"
    EXPECTED_VOTES_LOWERED = "expected_votes_lowered"
    COROSYNC_MEMBERSHIP_MISMATCH = "corosync_membership_mismatch"
    COROSYNC_LINK_DOWN = "corosync_link_down"
    QDEVICE_DOWN = "qdevice_down"


# Nodes disagreeing: during a failover their views differ for a few seconds, which is no fault.
DISAGREEMENTS = frozenset({FindingCode.SPLIT_BRAIN, FindingCode.OUT_OF_SYNC,
                           FindingCode.COROSYNC_MEMBERSHIP_MISMATCH})
