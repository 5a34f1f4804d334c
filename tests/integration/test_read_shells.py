"""SshPool.read over persistent read shells (bot.shell), against real SSH servers.

The loopback servers from test_ssh speak the frame; one more server here bridges the shell
session to a real /bin/sh, so the frame also crosses a genuine SSH channel into a genuine
shell. Synchronisation is by events; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from bot.demo.sshd import KeyMaterial, LoopbackSshServer, known_hosts_line
from bot.errors import SshError, SshTimeout, SudoRefused
from bot.shell import SHELL_COMMAND
from bot.ssh import SshPool, SshTarget
from tests.integration.test_ssh import (  # noqa: F401  (cluster and pool are fixtures)
    USER,
    WAIT_S,
    Cluster,
    FakeNode,
    cluster,
    pool,
)

pytestmark = pytest.mark.integration


async def test_reads_reuse_one_shell(cluster: Cluster, pool: SshPool) -> None:  # noqa: F811
    server, target = cluster.servers["node1"], cluster.target("node1")
    outs = [(await pool.read(target, ["echo", str(i)], timeout_s=5)).stdout for i in range(20)]
    assert outs == [f"{i}\n" for i in range(20)]
    assert server.shells == 1 and server.connections_accepted == 1
    assert server.commands == [f"echo {i}" for i in range(20)]  # each arrived exactly once
    stats = pool.stats
    assert (stats.shells_opened, stats.shell_commands, stats.commands_run) == (1, 20, 20)


async def test_concurrent_reads_use_at_most_the_shell_cap(cluster: Cluster) -> None:  # noqa: F811
    server, target = cluster.servers["node1"], cluster.target("node1")
    async with SshPool(max_shells_per_connection=2) as ssh:
        for _ in range(3):
            done = await asyncio.gather(*(ssh.read(target, ["echo", str(i)], timeout_s=5)
                                          for i in range(6)))
            assert [d.stdout for d in done] == [f"{i}\n" for i in range(6)]
        assert server.shells == 2  # the rest overflowed to exec sessions, none queued
        assert ssh.stats.shell_commands < ssh.stats.commands_run == 18
        assert len(server.commands) == 18


async def test_run_never_uses_a_read_shell(cluster: Cluster, pool: SshPool) -> None:  # noqa: F811
    server, target = cluster.servers["node1"], cluster.target("node1")
    await pool.read(target, ["echo", "read"], timeout_s=5)
    done = await pool.run(target, ["echo", "write"], timeout_s=5)
    assert done.stdout == "write\n"
    assert pool.stats.shell_commands == 1 and server.shells == 1


async def test_read_timeout_drops_that_shell_and_the_next_read_gets_a_new_one(
        cluster: Cluster, pool: SshPool) -> None:  # noqa: F811
    server, node, target = cluster.servers["node2"], cluster.nodes["node2"], cluster.target("node2")
    assert (await pool.read(target, ["echo", "first"], timeout_s=5)).stdout == "first\n"
    with pytest.raises(SshTimeout, match="may still be running"):
        await pool.read(target, ["block"], timeout_s=0.2)  # on the shell opened just above
    node.release.set()
    assert (await pool.read(target, ["echo", "next"], timeout_s=5)).stdout == "next\n"
    assert server.shells == 2  # the timed-out shell's next bytes are never read as an answer
    assert pool.stats.shell_commands == 2


async def test_shell_lost_mid_read_is_asked_again_on_its_own_session(
        cluster: Cluster, pool: SshPool) -> None:  # noqa: F811
    server, node, target = cluster.servers["node2"], cluster.nodes["node2"], cluster.target("node2")
    reading = asyncio.create_task(pool.read(target, ["block"], timeout_s=WAIT_S))
    async with asyncio.timeout(WAIT_S):
        await node.started.wait()
    await server.drop_connections()
    node.release.set()
    done = await reading
    assert done.stdout == "released\n"
    # A read changes nothing, so unlike `run` it may be asked twice.
    assert server.commands == ["block", "block"]
    assert pool.stats.retries == 1 and server.connections_accepted == 2


async def test_node_without_read_shells_is_asked_over_exec(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    keys = KeyMaterial.create(tmp_path / "keys")
    async with LoopbackSshServer(FakeNode(), authorized_key=keys.public_key, username=USER,
                                 read_shells=False) as server:
        keys.write_known_hosts([server])
        target = SshTarget(node="old", host="127.0.0.1", port=server.port, user=USER,
                           client_keys=(keys.client_key_path,), known_hosts=keys.known_hosts,
                           sudo=False, connect_timeout_s=2)
        async with SshPool() as ssh:
            with caplog.at_level(logging.WARNING, logger="bot.ssh"):
                outs = [(await ssh.read(target, ["echo", str(i)], timeout_s=5)).stdout for i in range(5)]
            assert outs == [f"{i}\n" for i in range(5)]
            assert server.commands.count(SHELL_COMMAND) == 1  # tried once on this connection
            assert [c for c in server.commands if c != SHELL_COMMAND] == [f"echo {i}" for i in range(5)]
            assert sum("no read shell" in r.message for r in caplog.records) == 1
            assert ssh.stats.shell_commands == 0
            # The node changed (or the handshake was only slow): a new connection tries again.
            server.read_shells = True
            await server.drop_connections()
            for _ in range(2):  # the first may still meet the old connection, and so exec
                assert (await ssh.read(target, ["echo", "again"], timeout_s=5)).stdout == "again\n"
            assert ssh.stats.shell_commands >= 1 and server.shells == 1


async def test_sudo_refusal_through_a_read_shell(cluster: Cluster, pool: SshPool) -> None:  # noqa: F811
    cluster.nodes["node3"].sudo_refuses = True
    with pytest.raises(SudoRefused, match="password is required"):
        await pool.read(cluster.target("node3", sudo=True), ["crm_mon", "-1"], timeout_s=5)
    assert pool.stats.shell_commands == 1


# -- a real /bin/sh behind a real SSH channel ----------------------------------------------


async def _bridge_to_sh(process: asyncssh.SSHServerProcess[bytes]) -> None:
    """Run the session's command in a local /bin/sh (test-only server: its only client is
    this test, over loopback, with a key made for this run)."""
    command = process.command or ""
    argv = ["/bin/sh"] if command == SHELL_COMMAND else ["/bin/sh", "-c", command]
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None

    async def feed(sink: asyncio.StreamWriter) -> None:
        async for data in process.stdin:
            sink.write(data)
            await sink.drain()
        sink.close()

    async def pump(source: asyncio.StreamReader, sink: asyncssh.SSHWriter[bytes]) -> None:
        while data := await source.read(65536):
            sink.write(data)

    feeding = asyncio.create_task(feed(proc.stdin))
    try:
        await asyncio.gather(pump(proc.stdout, process.stdout), pump(proc.stderr, process.stderr))
        process.exit(await proc.wait())
    finally:  # the client may go away first: never leave the local shell behind
        feeding.cancel()
        if proc.returncode is None:
            proc.kill()
        await proc.communicate()  # reads the pipes to their end, so asyncio can close them


@asynccontextmanager
async def scripted_server(tmp: Path, process_factory: Any = None,
                         server_class: type[_OnlyKey] | None = None) -> AsyncIterator[SshTarget]:
    """An asyncssh server on loopback that accepts only this run's key, driven by the test."""
    keys = KeyMaterial.create(tmp / "keys")
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    acceptor = await asyncssh.listen(
        "127.0.0.1", 0, server_host_keys=[host_key], authorized_client_keys=None,
        process_factory=process_factory, encoding=None, allow_scp=False,
        server_factory=lambda: (server_class or _OnlyKey)(keys.public_key))
    port = acceptor.get_port()
    keys.known_hosts.write_text(known_hosts_line("127.0.0.1", port, host_key) + "\n")
    try:
        yield SshTarget(node="scripted", host="127.0.0.1", port=port, user=USER,
                        client_keys=(keys.client_key_path,), known_hosts=keys.known_hosts,
                        sudo=False, connect_timeout_s=5)
    finally:
        acceptor.close()
        await acceptor.wait_closed()


@pytest.fixture
async def real_sh(tmp_path: Path) -> AsyncIterator[SshTarget]:
    async with scripted_server(tmp_path, _bridge_to_sh) as target:
        yield target


class _OnlyKey(asyncssh.SSHServer):
    def __init__(self, key: asyncssh.SSHKey) -> None:
        self._key = key

    def begin_auth(self, username: str) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return username == USER and key.public_data == self._key.public_data


async def test_real_sh_answers_like_exec_sessions(real_sh: SshTarget) -> None:
    commands = [["printf", "%s", "no newline"], ["sh", "-c", "echo out; echo err >&2; exit 3"],
                ["cat"], ["clusterbot-no-such-command"], ["printf", "%s", "$(id) `id` ; | &"]]
    async with SshPool() as ssh:
        via_shell = [await ssh.read(real_sh, argv, timeout_s=WAIT_S) for argv in commands]
        via_exec = [await ssh.run(real_sh, argv, timeout_s=WAIT_S) for argv in commands]
        assert ssh.stats.shells_opened == 1
        assert ssh.stats.shell_commands == len(commands)
    for shell, exec_ in zip(via_shell, via_exec, strict=True):
        assert (shell.exit_status, shell.stdout) == (exec_.exit_status, exec_.stdout)
        assert ("not found" in shell.stderr) == ("not found" in exec_.stderr)
    assert via_shell[0].stdout == "no newline"
    assert (via_shell[1].exit_status, via_shell[1].stdout, via_shell[1].stderr) == (3, "out\n", "err\n")


async def test_real_sh_large_answer(real_sh: SshTarget) -> None:
    script = "i=0; while [ $i -lt 50000 ]; do echo line$i; i=$((i+1)); done"
    async with SshPool() as ssh:
        done = await ssh.read(real_sh, ["sh", "-c", script], timeout_s=30)
        again = await ssh.read(real_sh, ["echo", "after"], timeout_s=WAIT_S)
    lines = done.stdout.splitlines()
    assert len(lines) == 50000 and lines[-1] == "line49999"
    assert again.stdout == "after\n"


# -- shells that misbehave while starting ------------------------------------------------


async def until(condition: Any, what: str) -> None:
    """Wait (bounded) for a condition the server side reaches on its own schedule."""
    async with asyncio.timeout(WAIT_S):
        while not condition():
            await asyncio.sleep(0.01)
    assert condition(), what


async def test_a_shell_that_never_starts_costs_at_most_the_command_timeout_and_leaks_nothing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    open_shells = [0]

    async def node(process: asyncssh.SSHServerProcess[bytes]) -> None:
        if process.command != SHELL_COMMAND:
            process.stdout.write(b"ok\n")
            process.exit(0)
            return
        open_shells[0] += 1
        try:
            async for _ in process.stdin:  # reads the handshake, never answers it
                pass
        finally:
            open_shells[0] -= 1
        process.exit(0)

    async with scripted_server(tmp_path, node) as target, SshPool() as ssh:
        with caplog.at_level(logging.WARNING, logger="bot.ssh"):
            done = await ssh.read(target, ["echo"], timeout_s=2)  # connect timeout is 5 s
        assert done.stdout == "ok\n"
        assert any("no framed answer within 2s" in r.message for r in caplog.records)
        await until(lambda: open_shells[0] == 0, "the abandoned shell session was closed")
    async with scripted_server(tmp_path / "again", node) as target, SshPool() as ssh:
        for _ in range(12):  # more than OpenSSH's MaxSessions (10), had any leaked
            reading = asyncio.create_task(ssh.read(target, ["echo"], timeout_s=5))
            await until(lambda: open_shells[0] == 1, "the shell session is starting")
            reading.cancel()
            with pytest.raises(asyncio.CancelledError):
                await reading
            await until(lambda: open_shells[0] == 0, "a cancelled start closed its session")
        assert (await ssh.run(target, ["echo"], timeout_s=5)).stdout == "ok\n"


class _DiesAtShellStart(asyncssh.SSHServerSession):  # type: ignore[type-arg]
    """A node that goes away between opening the channel and answering `exec /bin/sh`."""

    def __init__(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn

    def connection_made(self, chan: asyncssh.SSHServerChannel) -> None:  # type: ignore[type-arg]
        self._chan = chan

    def exec_requested(self, command: str) -> bool:
        if command == SHELL_COMMAND:
            self._conn.abort()
            return False
        return True

    def session_started(self) -> None:
        self._chan.write(b"ok\n")
        self._chan.exit(0)


class _DyingNode(_OnlyKey):
    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn

    def session_requested(self) -> _DiesAtShellStart:
        return _DiesAtShellStart(self._conn)


async def test_connection_lost_at_shell_start_is_never_a_raw_asyncssh_error(tmp_path: Path) -> None:
    async with scripted_server(tmp_path, server_class=_DyingNode) as target, SshPool() as ssh:
        try:
            done = await ssh.read(target, ["echo"], timeout_s=5)
        except SshError:
            pass  # a clear error of ours is fine too
        else:
            assert done.stdout == "ok\n"  # asked again over exec on a new connection


async def test_closing_the_pool_mid_read_opens_no_new_connection(
        cluster: Cluster) -> None:  # noqa: F811
    server, node, target = cluster.servers["node1"], cluster.nodes["node1"], cluster.target("node1")
    ssh = SshPool()
    reading = asyncio.create_task(ssh.read(target, ["block"], timeout_s=WAIT_S))
    async with asyncio.timeout(WAIT_S):
        await node.started.wait()
    await ssh.close()
    with pytest.raises(RuntimeError, match="closed"):
        await reading
    assert server.connections_accepted == 1


# -- a cold node: every read at once on one shell -------------------------------------------


async def test_read_all_on_a_cold_connection_is_one_shell_and_one_write(real_sh: SshTarget) -> None:
    commands = [["printf", "%s", "no newline"], ["sh", "-c", "echo out; echo err >&2; exit 3"],
                ["cat"], ["clusterbot-no-such-command"], ["sh", "-c", "i=0; while [ $i -lt 20000 ]; "
                                                          "do echo line$i; i=$((i+1)); done"]]
    async with SshPool() as ssh:
        got = await ssh.read_all(real_sh, commands, timeout_s=WAIT_S)
        one_by_one = [await ssh.read(real_sh, argv, timeout_s=WAIT_S) for argv in commands]
        assert ssh.stats.shells_opened == 1 and ssh.stats.shell_commands == 2 * len(commands)
    answers = [(d.exit_status, d.stdout) for d in got if not isinstance(d, SshError)]
    assert answers == [(d.exit_status, d.stdout) for d in one_by_one]
    assert got[1].stderr == "err\n" and "not found" in got[3].stderr  # type: ignore[union-attr]
    assert len(got[4].stdout.splitlines()) == 20000  # type: ignore[union-attr]


async def test_read_all_after_a_timeout_asks_the_rest_elsewhere(
        cluster: Cluster, pool: SshPool) -> None:  # noqa: F811
    server, node, target = cluster.servers["node2"], cluster.nodes["node2"], cluster.target("node2")
    got = await pool.read_all(target, [["echo", "a"], ["block"], ["echo", "c"]], timeout_s=0.3)
    node.release.set()
    assert got[0].stdout == "a\n"  # type: ignore[union-attr]
    assert isinstance(got[1], SshTimeout)
    assert got[2].stdout == "c\n"  # type: ignore[union-attr]
    # The timed-out shell is never read again: the rest were asked on a new one.
    assert server.shells == 2 and pool.stats.shells_opened == 2


async def test_read_all_on_an_unreachable_node_is_that_error_for_each(cluster: Cluster) -> None:  # noqa: F811
    server, target = cluster.servers["node3"], cluster.target("node3")
    await server.set_reachable(False)
    async with SshPool() as ssh:
        got = await ssh.read_all(target, [["echo", "a"], ["echo", "b"]], timeout_s=2)
    assert len(got) == 2 and all(isinstance(g, SshError) for g in got)
