"""`/cluster list`: the configured clusters, without touching any node."""

from __future__ import annotations

from commands.common import text_reply
from commands.spec import CommandSpec, Invocation, Reply, Services


async def run(inv: Invocation, services: Services) -> Reply:
    clusters = services.settings.clusters
    lines = [
        f"*{c.name}* ({c.kind}) · {len(c.nodes)} nodes: {', '.join(n.name for n in c.nodes)}"
        + (f" · VIPs {', '.join(c.vips)}" if c.vips else "")
        for c in clusters
    ]
    return text_reply(f"{len(clusters)} cluster{'s' if len(clusters) != 1 else ''} configured",
                      *lines, title="Clusters")


SPEC = CommandSpec(name="list", help="List the configured clusters and their nodes.", run=run)
