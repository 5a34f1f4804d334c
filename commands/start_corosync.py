"""`/cluster start-corosync CLUSTER NODE`: a corosync-only cluster's fix for a node whose Corosync
is down (`systemctl start corosync`, then on Proxmox VE `systemctl start pve-cluster`)."""

from bot.remedies import Action, Step, corosync_member, corosync_stopped, needs_node, reachable
from commands.common import NODE, remediation

ACTION = Action(
    "start-corosync",
    steps=(Step("start_corosync", ("systemctl", "start", "corosync")),
           # Proxmox's cluster filesystem (pmxcfs): only where the unit is installed.
           Step("start_pve_cluster", ("systemctl", "start", "pve-cluster"), unit="pve-cluster")),
    runs_on="target",
    checks=(needs_node, reachable, corosync_stopped),
    verify=corosync_member,
    kinds=("corosync",),
)
SPEC = remediation(ACTION, "Corosync-only clusters (Proxmox VE): start corosync, and pve-cluster where it "
                   "is installed, on a node whose Corosync is down but that answers over SSH.", NODE)
