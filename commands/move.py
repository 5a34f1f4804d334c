"""`/cluster move CLUSTER RESOURCE NODE`: rebalance a VIP, leaving a location constraint.

Since pcs 0.11 `pcs resource move` removes its own constraint after the move, and refuses a
resource that would then go back (any VIP with a location preference): the old behaviour is
`pcs resource move-with-constraint`. The node's `pcs --version` picks the form.
"""

from bot.remedies import (
    Action,
    Step,
    movable,
    needs_node,
    needs_resource,
    no_fencing,
    prefer_target,
    verify_moved,
)
from commands.common import NODE, RESOURCE, remediation

PCS_0_11 = (0, 11)
MOVE_0_11 = ("pcs", "resource", "move-with-constraint", "{resource}", "{node}")

ACTION = Action(
    "move",
    steps=(Step("move", ("pcs", "resource", "move", "{resource}", "{node}"),
                since_pcs=((PCS_0_11, MOVE_0_11),)),),
    runs_on="dc",
    checks=(needs_resource, needs_node, no_fencing, movable),
    verify=verify_moved,
    undo="clear",
    whatif=prefer_target,
)
SPEC = remediation(ACTION, "Move a resource (a VIP) to a node. Leaves a location constraint "
                   "(`pcs resource move-with-constraint` on pcs 0.11+, `pcs resource move` before): "
                   "`clear` removes it.", RESOURCE, NODE)
