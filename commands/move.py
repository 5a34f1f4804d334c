"""`/cluster move CLUSTER RESOURCE NODE`: rebalance a VIP (`pcs resource move`)."""

from bot.remedies import Action, Step, movable, needs_node, needs_resource, no_fencing, verify_moved
from commands.common import NODE, RESOURCE, remediation

ACTION = Action(
    "move",
    steps=(Step("move", ("pcs", "resource", "move", "{resource}", "{node}")),),
    runs_on="dc",
    checks=(needs_resource, needs_node, no_fencing, movable),
    verify=verify_moved,
    undo="clear",
    predicts=True,
)
SPEC = remediation(ACTION, "Move a resource (a VIP) to a node. Leaves a location constraint: "
                   "`clear` removes it.", RESOURCE, NODE)
