"""`/cluster status [CLUSTER]`: every node's view, merged, judged and rendered."""

from __future__ import annotations

import asyncio

from bot.render.status import overview_doc, status_doc
from commands.common import OPTIONAL_CLUSTER, cluster_named
from commands.spec import CommandSpec, Invocation, Reply, Services


async def run(inv: Invocation, services: Services) -> Reply:
    if inv.args:
        cluster = cluster_named(services, inv.args[0])
        report = await services.collect(cluster)
        return Reply(status_doc(report, cluster.expectations))
    clusters = services.settings.clusters
    reports = await asyncio.gather(*(services.collect(c) for c in clusters))
    if len(reports) == 1:
        return Reply(status_doc(reports[0], clusters[0].expectations))
    return Reply(overview_doc(reports))


def progress(inv: Invocation, services: Services) -> str:
    clusters = services.settings.clusters
    if inv.args or len(clusters) == 1:
        cluster = cluster_named(services, inv.args[0]) if inv.args else clusters[0]
        return (f":hourglass_flowing_sand: gathering status from {len(cluster.nodes)} nodes "
                f"of *{cluster.name}*…")
    nodes = sum(len(c.nodes) for c in clusters)
    return f":hourglass_flowing_sand: gathering status from {nodes} nodes in {len(clusters)} clusters…"


SPEC = CommandSpec(
    name="status",
    help="Quorum, DC, nodes, where each VIP runs, clone coverage, failed actions, daemons, and "
         "what is wrong with the fix to request. No cluster: every cluster on one line.",
    args=(OPTIONAL_CLUSTER,),
    run=run,
    progress=progress,
)
