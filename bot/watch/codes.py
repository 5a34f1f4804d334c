"""Finding codes the watcher diffs, as one enum instead of strings repeated across modules.

A StrEnum: health checks (bot/pacemaker/health.py, bot/corosync/health.py) still raise plain
strings, and a FindingCode compares equal to its string, so both sides meet without a rewrite.
"""

from __future__ import annotations

from enum import StrEnum


class FindingCode(StrEnum):
    VIP_SPREAD = "vip_spread"
    RESOURCE_STOPPED = "resource_stopped"
    SPLIT_BRAIN = "split_brain"
    OUT_OF_SYNC = "out_of_sync"
    DAEMON_INACTIVE = "daemon_inactive"
    COROSYNC_MEMBERSHIP_MISMATCH = "corosync_membership_mismatch"


# Nodes disagreeing: during a failover their views differ for a few seconds, which is no fault.
DISAGREEMENTS = frozenset({FindingCode.SPLIT_BRAIN, FindingCode.OUT_OF_SYNC,
                           FindingCode.COROSYNC_MEMBERSHIP_MISMATCH})
