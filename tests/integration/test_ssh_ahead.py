"""Connections a cold status opens ahead, from its guess of the config (bot.ssh.connect_ahead),
against real loopback SSH servers: used only for a target with exactly the same connection
parameters, host keys checked as always, nothing left open."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from bot.early import connect_early
from bot.errors import HostKeyError
from bot.ssh import SshPool, connect_ahead
from tests.integration.test_ssh import (  # noqa: F401  (cluster is a fixture)
    WAIT_S,
    Cluster,
    cluster,
)

pytestmark = pytest.mark.integration

COMMANDS = [["echo", "a"], ["echo", "b"], ["echo", "c"]]


async def test_the_guessed_connection_and_its_shell_serve_the_same_target(cluster: Cluster) -> None:  # noqa: F811
    server, target = cluster.servers["node1"], cluster.target("node1")
    early = connect_early([(target.host, target.port)], 2)
    ahead = connect_ahead([replace(target, node="guess", sudo=True, keepalive_interval_s=10)], early)
    async with SshPool(early=early, ahead=ahead) as pool:
        got = await pool.read_all(target, COMMANDS, timeout_s=WAIT_S)

    assert [g.stdout for g in got] == ["a\n", "b\n", "c\n"]  # type: ignore[union-attr]
    # One TCP connection (the early socket), one shell: the one opened ahead.
    assert server.connection_attempts == 1 and server.shells == 1
    assert pool.stats.connections_opened == 1 and pool.stats.shells_opened == 1
    assert early == {} and ahead == {}


@pytest.mark.parametrize(("differs", "guess_reaches_node"), [
    ({"user": "someone-else"}, True),  # refused at auth
    ({"known_hosts": Path("/nonexistent/known_hosts")}, False),  # refused before connecting
    ({"client_keys": ()}, False),
    ({"connect_timeout_s": 1.5}, True),  # would work, but is not what the settings say
])
async def test_a_guess_the_settings_disagree_with_is_never_used(
        cluster: Cluster, differs: dict[str, object], guess_reaches_node: bool) -> None:  # noqa: F811
    server, target = cluster.servers["node2"], cluster.target("node2")
    guess = replace(target, **differs)  # type: ignore[arg-type]
    ahead = connect_ahead([guess], {})
    async with SshPool(ahead=ahead) as pool:
        got = await pool.read_all(target, COMMANDS, timeout_s=WAIT_S)
        assert [g.stdout for g in got] == ["a\n", "b\n", "c\n"]  # type: ignore[union-attr]
        # The answers came over a connection of the pool's own, made from the validated target.
        assert server.connection_attempts == 1 + guess_reaches_node
    assert ahead == {}  # closed with the pool


async def test_a_guessed_connection_still_checks_the_host_key(cluster: Cluster) -> None:  # noqa: F811
    server, target = cluster.servers["node3"], cluster.target("node3")
    server.rotate_host_key()
    async with SshPool(ahead=connect_ahead([target], {})) as pool:
        with pytest.raises(HostKeyError, match="does not match"):
            await pool.read(target, ["echo", "never"], timeout_s=WAIT_S)

    assert server.commands == [] and server.shells == 0


async def test_unused_guesses_are_closed_with_the_pool(cluster: Cluster) -> None:  # noqa: F811
    targets = [cluster.target(n) for n in ("node1", "node2", "node3")]
    async with SshPool(ahead=connect_ahead(targets, {})):
        async with asyncio.timeout(WAIT_S):  # all three reached the node: each opened its shell
            while sum(cluster.servers[t.node].shells for t in targets) < 3:
                await asyncio.sleep(0.01)
    async with asyncio.timeout(WAIT_S):
        while any(s.live_connections for s in cluster.servers.values()):
            await asyncio.sleep(0.01)
    assert all(s.commands == [] for s in cluster.servers.values())  # only the shell's handshake
