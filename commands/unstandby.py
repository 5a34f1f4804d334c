"""`/cluster unstandby CLUSTER NODE`: let a standby node run resources again."""

from bot.remedies import Action, Step, is_standby, needs_node, no_fencing, unstandby_target, verify_unstandby
from commands.common import NODE, remediation

ACTION = Action(
    "unstandby",
    steps=(Step("unstandby", ("pcs", "node", "unstandby", "{node}")),),
    runs_on="dc",
    checks=(needs_node, no_fencing, is_standby),
    verify=verify_unstandby,
    undo="standby",
    whatif=unstandby_target,
)
SPEC = remediation(ACTION, "Take a node out of standby so it runs resources again.", NODE)
