"""`/cluster resync CLUSTER NODE`: the runbook's fix for a node out of sync with the cluster."""

from bot.remedies import Action, Step, keeps_quorum, needs_node, no_fencing, node_in_sync, reachable
from commands.common import NODE, remediation

ACTION = Action(
    "resync",
    steps=(Step("restart_corosync", ("systemctl", "restart", "corosync")),
           Step("restart_pcsd", ("systemctl", "restart", "pcsd"))),
    runs_on="target",
    checks=(needs_node, no_fencing, reachable, keeps_quorum),
    verify=node_in_sync,
    no_prediction="restarting corosync and pcsd changes no configuration; the node rejoins as it was",
)
SPEC = remediation(ACTION, "Restart corosync, then pcsd, on a node that is out of sync with the rest "
                   "of the cluster. Refused when it would cost quorum.", NODE)
