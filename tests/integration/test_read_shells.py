"""SshPool.read over persistent read shells (bot.shell), against real SSH servers.

The loopback servers from test_ssh speak the frame; one more server here bridges the shell
session to a real /bin/sh, so the frame also crosses a genuine SSH channel into a genuine
shell. Synchronisation is by events; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import asyncssh
import pytest

from bot.demo.sshd import KeyMaterial, LoopbackSshServer, known_hosts_line
from bot.errors import SshTimeout, SudoRefused
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
    with pytest.raises(SshTimeout, match="may still be running"):
        await pool.read(target, ["block"], timeout_s=0.2)
    node.release.set()
    assert (await pool.read(target, ["echo", "next"], timeout_s=5)).stdout == "next\n"
    assert server.shells == 2  # the timed-out shell's next bytes are never read as an answer


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


@pytest.fixture
async def real_sh(tmp_path: Path) -> AsyncIterator[SshTarget]:
    keys = KeyMaterial.create(tmp_path / "keys")
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    acceptor = await asyncssh.listen(
        "127.0.0.1", 0, server_host_keys=[host_key], authorized_client_keys=None,
        process_factory=_bridge_to_sh, encoding=None, allow_scp=False,
        server_factory=lambda: _OnlyKey(keys.public_key))
    port = acceptor.get_port()
    keys.known_hosts.write_text(known_hosts_line("127.0.0.1", port, host_key) + "\n")
    try:
        yield SshTarget(node="realsh", host="127.0.0.1", port=port, user=USER,
                        client_keys=(keys.client_key_path,), known_hosts=keys.known_hosts,
                        sudo=False, connect_timeout_s=5)
    finally:
        acceptor.close()
        await acceptor.wait_closed()


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
