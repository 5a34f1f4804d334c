"""`/cluster standby CLUSTER NODE`: move resources off a node (`pcs node standby`)."""

from bot.remedies import (
    Action,
    Step,
    keeps_two_healthy,
    needs_node,
    no_fencing,
    not_standby,
    standby_target,
    verify_standby,
)
from commands.common import NODE, remediation

ACTION = Action(
    "standby",
    steps=(Step("standby", ("pcs", "node", "standby", "{node}")),),
    runs_on="dc",
    checks=(needs_node, no_fencing, not_standby, keeps_two_healthy),
    verify=verify_standby,
    undo="unstandby",
    whatif=standby_target,
)
SPEC = remediation(ACTION, "Put a node in standby: its resources move away. Refused when fewer than "
                   "two healthy nodes would remain.", NODE)
