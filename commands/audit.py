"""`/cluster audit [N]`: the last N entries of the append-only audit log."""

from __future__ import annotations

from commands.spec import ArgKind, ArgSpec, CommandSpec, Invocation, Reply, Services

COUNT = ArgSpec("n", ArgKind.COUNT, "how many entries (default 10, at most 50)", required=False)


async def run(inv: Invocation, services: Services) -> Reply:
    n = min(int(inv.args[0]) if inv.args else 10, 50)
    return await services.audit_tail(n)


SPEC = CommandSpec(name="audit", help="Show the latest entries of the audit log: who asked, "
                   "approved and ran what, when, and with what result.", args=(COUNT,), run=run)
