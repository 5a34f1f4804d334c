"""Connections a cold status opens ahead, from its guess of the config (bot.ssh.connect_ahead),
against real loopback SSH servers: used only for a target with exactly the same connection
parameters, answers sent ahead read only for exactly the same command lines, host keys checked
as always, nothing left open."""

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
    ahead = connect_ahead([(replace(target, node="guess", keepalive_interval_s=10), ())], early)
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
    ahead = connect_ahead([(guess, COMMANDS)], {})
    async with SshPool(ahead=ahead) as pool:
        got = await pool.read_all(target, COMMANDS, timeout_s=WAIT_S)
        assert [g.stdout for g in got] == ["a\n", "b\n", "c\n"]  # type: ignore[union-attr]
        # The answers came over a connection of the pool's own, made from the validated target.
        assert server.connection_attempts == 1 + guess_reaches_node
    assert ahead == {}  # closed with the pool


async def test_a_guessed_connection_still_checks_the_host_key(cluster: Cluster) -> None:  # noqa: F811
    server, target = cluster.servers["node3"], cluster.target("node3")
    server.rotate_host_key()
    async with SshPool(ahead=connect_ahead([(target, COMMANDS)], {})) as pool:
        with pytest.raises(HostKeyError, match="does not match"):
            await pool.read(target, ["echo", "never"], timeout_s=WAIT_S)

    assert server.commands == [] and server.shells == 0


async def test_unused_guesses_are_closed_with_the_pool(cluster: Cluster) -> None:  # noqa: F811
    targets = [cluster.target(n) for n in ("node1", "node2", "node3")]
    async with SshPool(ahead=connect_ahead([(t, COMMANDS) for t in targets], {})):
        async with asyncio.timeout(WAIT_S):  # all three reached their node and sent the reads
            while sum(len(cluster.servers[t.node].commands) for t in targets) < 9:
                await asyncio.sleep(0.01)
    async with asyncio.timeout(WAIT_S):
        while any(s.live_connections for s in cluster.servers.values()):
            await asyncio.sleep(0.01)


async def test_reads_sent_ahead_are_the_answers_when_the_settings_ask_the_same(
        cluster: Cluster) -> None:  # noqa: F811
    server, target = cluster.servers["node1"], cluster.target("node1", sudo=True)
    async with SshPool(ahead=connect_ahead([(target, COMMANDS)], {})) as pool:
        async with asyncio.timeout(WAIT_S):  # sent before anyone asked
            while len(server.commands) < 3:
                await asyncio.sleep(0.01)
        got = await pool.read_all(target, COMMANDS, timeout_s=WAIT_S)
        # Each ran once, on the one shell, sent ahead; that shell then serves later reads.
        assert server.commands == ["sudo -n echo a", "sudo -n echo b", "sudo -n echo c"]
        assert server.shells == 1 and pool.stats.shell_commands == 3
        again = await pool.read(target, ["echo", "d"], timeout_s=WAIT_S)

    assert [g.stdout for g in got] == ["a\n", "b\n", "c\n"]  # type: ignore[union-attr]
    assert again.stdout == "d\n" and server.shells == 1


@pytest.mark.parametrize("asked", [
    [["echo", "a"], ["echo", "b"]],  # fewer
    [["echo", "a"], ["echo", "b"], ["echo", "c"], ["echo", "d"]],  # more
    [["echo", "c"], ["echo", "b"], ["echo", "a"]],  # another order
])
async def test_reads_sent_ahead_for_other_commands_are_never_read(
        cluster: Cluster, asked: list[list[str]]) -> None:  # noqa: F811
    server, target = cluster.servers["node2"], cluster.target("node2")
    async with SshPool(ahead=connect_ahead([(target, COMMANDS)], {})) as pool:
        got = await pool.read_all(target, asked, timeout_s=WAIT_S)
        assert pool.stats.shells_opened == 2  # that shell closed; the asked ones on a new one

    assert [g.stdout for g in got] == [f"{a[1]}\n" for a in asked]  # type: ignore[union-attr]
    assert server.shells == 2


async def test_reads_sent_ahead_with_sudo_are_not_answers_without(cluster: Cluster) -> None:  # noqa: F811
    server, target = cluster.servers["node3"], cluster.target("node3", sudo=False)
    async with SshPool(ahead=connect_ahead([(replace(target, sudo=True), COMMANDS)], {})) as pool:
        got = await pool.read_all(target, COMMANDS, timeout_s=WAIT_S)

    assert [g.stdout for g in got] == ["a\n", "b\n", "c\n"]  # type: ignore[union-attr]
    assert server.commands[-3:] == ["echo a", "echo b", "echo c"] and server.shells == 2
