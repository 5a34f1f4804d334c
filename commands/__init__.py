"""Chat commands: one module per command, collected in this explicit registry.

Slack and the console both call `dispatch`, so access rules, argument validation and the
approval gate apply the same way everywhere.
"""

from __future__ import annotations

from bot.errors import NotAllowed
from commands import (
    audit,
    cleanup,
    clear,
    clusters,
    help,
    move,
    resync,
    standby,
    start,
    start_corosync,
    status,
    unstandby,
)
from commands.common import cluster_named
from commands.spec import ArgKind, CommandSpec, Invocation, Reply, Services, UsageError

REGISTRY: tuple[CommandSpec, ...] = (
    status.SPEC,
    clusters.SPEC,
    help.SPEC,
    audit.SPEC,
    # The remediation catalogue: each runs only after approval in the thread.
    cleanup.SPEC,
    resync.SPEC,
    standby.SPEC,
    unstandby.SPEC,
    move.SPEC,
    clear.SPEC,
    start.SPEC,
    start_corosync.SPEC,
)

MAX_WORDS = 8  # no command takes more; longer input is refused before any parsing


def lookup(name: str) -> CommandSpec | None:
    return next((s for s in REGISTRY if s.name == name.lower()), None)


def parse_text(text: str) -> tuple[str, tuple[str, ...]]:
    """`/cluster status prod` or `status prod` or `<@U1> status prod` -> ("status", ("prod",))."""
    words = [w for w in text.split() if not (w.startswith("<@") and w.endswith(">"))]
    if words and words[0] == "/cluster":
        words = words[1:]
    if len(words) > MAX_WORDS + 1:
        raise UsageError(None, f"too many words ({len(words)}); see `/cluster help`")
    if not words:
        return "help", ()
    return words[0].lower(), tuple(words[1:])


def resolve(inv: Invocation, services: Services | None = None) -> CommandSpec:
    """The spec for an invocation with validated arguments, or UsageError.

    With services, cluster arguments must also name a configured cluster.
    """
    spec = lookup(inv.command)
    if spec is None:
        raise UsageError(None, f"unknown command `{inv.command[:32]}`; try `/cluster help`")
    spec.bind(inv.args)
    if services is not None:
        for arg, value in zip(spec.args, inv.args, strict=False):
            if arg.kind is ArgKind.CLUSTER:
                cluster_named(services, value)
    return spec


def authorize(inv: Invocation, services: Services) -> None:
    """Cross-cutting access rules, before any command runs."""
    allowed = services.settings.allowed_channels
    if allowed and inv.channel is not None and inv.channel not in allowed:
        raise NotAllowed("clusterbot does not answer in this channel; "
                         f"try {', '.join(f'<#{c}>' for c in allowed)}")


async def dispatch(inv: Invocation, services: Services) -> Reply:
    authorize(inv, services)
    spec = resolve(inv, services)
    if spec.needs_approval:
        return await services.request_approval(inv, spec)
    assert spec.run is not None
    return await spec.run(inv, services)


__all__ = ["REGISTRY", "dispatch", "lookup", "parse_text", "resolve"]
