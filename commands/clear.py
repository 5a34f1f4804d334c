"""`/cluster clear CLUSTER RESOURCE`: remove move/ban constraints (`pcs resource clear`)."""

from bot.remedies import Action, Step, always, clear_target, needs_resource, no_fencing
from commands.common import RESOURCE, remediation

ACTION = Action(
    "clear",
    steps=(Step("clear", ("pcs", "resource", "clear", "{resource}")),),
    runs_on="dc",
    checks=(needs_resource, no_fencing),
    verify=always,
    whatif=clear_target,
)
SPEC = remediation(ACTION, "Remove the constraints `move` left, so the resource goes back to where "
                   "Pacemaker prefers it.", RESOURCE)
