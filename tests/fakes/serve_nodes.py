"""Run many fake clusters' SSH servers in their own process (benchmarks: server CPU apart).

    python -m tests.fakes.serve_nodes DIR CLUSTERS DELAY_MS

Prints one JSON line {"clusters": [{"name", "ports": [...]}], "key": ..., "known_hosts": ...}
when ready, then serves until stdin closes. Each node answers crm_mon with the real healthy
capture after DELAY_MS (a real node's local crm_mon takes ~12 ms).
"""

from __future__ import annotations

import asyncio
import json
import sys
from contextlib import AsyncExitStack
from pathlib import Path

from bot.demo.sshd import KeyMaterial, LoopbackSshServer
from tests.fakes.nodes import USER, FakeNode


def handler(node: str, delay_s: float):  # type: ignore[no-untyped-def]
    fake = FakeNode(node, "a_healthy")  # every command answered from the real captures

    async def handle(command: str, username: str) -> tuple[int, str, str]:
        await asyncio.sleep(delay_s)  # simulated command run time on the node, not a sync point
        return await fake.handle(command, username)
    return handle


async def serve(directory: Path, clusters: int, delay_ms: float) -> None:
    keys = KeyMaterial.create(directory)
    out: list[dict[str, object]] = []
    async with AsyncExitStack() as stack:
        servers = []
        for c in range(clusters):
            ports = []
            for node in ("node1", "node2", "node3"):
                srv = await stack.enter_async_context(LoopbackSshServer(
                    handler(node, delay_ms / 1000), authorized_key=keys.public_key, username=USER))
                servers.append(srv)
                ports.append(srv.port)
            out.append({"name": f"cluster{c:02d}", "ports": ports})
        keys.write_known_hosts(servers)
        print(json.dumps({"clusters": out, "key": str(keys.client_key_path),
                          "known_hosts": str(keys.known_hosts)}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    asyncio.run(serve(Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
