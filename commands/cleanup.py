"""`/cluster cleanup CLUSTER [RESOURCE] [NODE]`: the runbook's `pcs resource cleanup`."""

from bot.remedies import Action, Step, cleaned, has_something_to_clean, no_fencing
from commands.common import OPTIONAL_NODE, OPTIONAL_RESOURCE, remediation

ACTION = Action(
    "cleanup",
    steps=(Step("cleanup", ("pcs", "resource", "cleanup", "{resource?}", "node={node?}")),),
    runs_on="dc",
    checks=(no_fencing, has_something_to_clean),
    verify=cleaned,
    no_prediction="Pacemaker re-probes the resource, and what it does next depends on what the probe finds",
)
SPEC = remediation(ACTION, "Clear failed actions and fail-counts so Pacemaker retries the resource "
                   "(`pcs resource cleanup`). Without RESOURCE: every resource; with NODE: that node only.",
                   OPTIONAL_RESOURCE, OPTIONAL_NODE)
