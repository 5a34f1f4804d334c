"""`/cluster start CLUSTER NODE`: start the cluster stack on an offline node (`pcs cluster start`)."""

from bot.remedies import Action, Step, is_offline, needs_node, reachable, verify_online
from commands.common import NODE, remediation

ACTION = Action(
    "start",
    steps=(Step("start", ("pcs", "cluster", "start")),),
    runs_on="target",
    checks=(needs_node, reachable, is_offline),
    verify=verify_online,
    without_pacemaker=True,  # Pacemaker stopped on every node: starting it is the fix
)
SPEC = remediation(ACTION, "Start corosync and pacemaker on a node that is OFFLINE but answers over SSH.",
                   NODE)
