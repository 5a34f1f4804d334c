"""Helpers shared by command modules: argument specs and cluster lookup."""

from __future__ import annotations

from bot.remedies import Action
from bot.render.doc import Doc, Section
from bot.settings import ClusterConfig
from commands.spec import ArgKind, ArgSpec, CommandSpec, Reply, Services, UsageError

CLUSTER = ArgSpec("cluster", ArgKind.CLUSTER, "a configured cluster, see /cluster list")
OPTIONAL_CLUSTER = ArgSpec("cluster", ArgKind.CLUSTER, "a configured cluster (default: all)",
                           required=False)
NODE = ArgSpec("node", ArgKind.NODE, "a Pacemaker node name of that cluster")
RESOURCE = ArgSpec("resource", ArgKind.RESOURCE, "a resource id of that cluster")


def cluster_named(services: Services, name: str) -> ClusterConfig:
    cluster = services.settings.cluster(name)
    if cluster is None:
        known = ", ".join(c.name for c in services.settings.clusters) or "none configured"
        raise UsageError(None, f"unknown cluster `{name}` (configured: {known})")
    return cluster


def text_reply(verdict: str, *lines: str, title: str | None = None, ephemeral: bool = False) -> Reply:
    sections = (Section(title, lines),) if lines else ()
    return Reply(Doc(verdict=verdict, fallback=verdict.replace("*", ""), sections=sections),
                 ephemeral=ephemeral)


OPTIONAL_NODE = ArgSpec("node", ArgKind.NODE, "a Pacemaker node name of that cluster", required=False)
OPTIONAL_RESOURCE = ArgSpec("resource", ArgKind.RESOURCE, "a resource id of that cluster",
                            required=False)


def remediation(action: Action, help: str, *args: ArgSpec) -> CommandSpec:
    """A catalogue entry: runs only after approval, through the shared request flow."""
    return CommandSpec(name=action.name, help=help, args=(CLUSTER, *args), needs_approval=True,
                       action=action)
