"""bot.ssh.SshPool against real LoopbackSshServer instances, one per fake node.

Every server listens on 127.0.0.1 with a kernel-chosen port and its own ed25519 host key.
Synchronisation uses asyncio.Events set by the fake nodes, never sleeps; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from bot.demo.sshd import KeyMaterial, LoopbackSshServer
from bot.early import connect_early
from bot.errors import (
    AuthError,
    CommandFailed,
    HostKeyError,
    SshTimeout,
    SudoRefused,
    Unreachable,
)
from bot.ssh import Completed, SshPool, SshTarget, build_command

pytestmark = pytest.mark.integration

USER = "clusterbot"
NODES = ("node1", "node2", "node3")
WAIT_S = 5  # upper bound for any wait on an event; tests finish far sooner


class FakeNode:
    """Command handler for one server: a tiny, harmless command language, nothing executed.

    `echo W...` prints the words, `fail N MSG` exits N with MSG on stderr, `block` waits for
    `release`. With `sudo_refuses`, any `sudo -n ...` gets sudo's password refusal.
    """

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.sudo_refuses = False
        self.usernames: list[str] = []

    async def __call__(self, command: str, username: str) -> tuple[int, str, str]:
        self.usernames.append(username)
        words = shlex.split(command)
        if words[:2] == ["sudo", "-n"]:
            if self.sudo_refuses:
                return 1, "", "sudo: a password is required\n"
            words = words[2:]
        return await self._dispatch(words)

    async def _dispatch(self, words: list[str]) -> tuple[int, str, str]:
        match words:
            case ["echo", *rest]:
                return 0, " ".join(rest) + "\n", ""
            case ["fail", code, message]:
                return int(code), "", message + "\n"
            case ["block"]:
                self.started.set()
                await self.release.wait()
                return 0, "released\n", ""
        return 127, "", f"{words[0]}: command not found\n"


@dataclass
class Cluster:
    keys: KeyMaterial
    servers: dict[str, LoopbackSshServer]
    nodes: dict[str, FakeNode]

    def target(self, node: str, **overrides: object) -> SshTarget:
        base = SshTarget(
            node=node,
            host="127.0.0.1",
            port=self.servers[node].port,
            user=USER,
            client_keys=(self.keys.client_key_path,),
            known_hosts=self.keys.known_hosts,
            sudo=False,
            connect_timeout_s=2,
        )
        return replace(base, **overrides)  # type: ignore[arg-type]


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    keys = KeyMaterial.create(tmp_path / "keys")
    nodes = {name: FakeNode() for name in NODES}
    servers = {
        name: LoopbackSshServer(nodes[name], authorized_key=keys.public_key, username=USER,
                                name=name)
        for name in NODES
    }
    for server in servers.values():
        await server.start()
    keys.write_known_hosts(servers.values())
    try:
        yield Cluster(keys, servers, nodes)
    finally:
        for node in nodes.values():
            node.release.set()  # let any parked handler finish before its server goes away
        for server in servers.values():
            await server.close()


@pytest.fixture
async def pool(cluster: Cluster) -> AsyncIterator[SshPool]:
    async with SshPool() as pool:
        yield pool


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port nothing listens on (bound then released; the kernel chose it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    yield port


# -- happy path and pooling ----------------------------------------------------------------


async def test_command_runs_and_returns_output(cluster: Cluster, pool: SshPool) -> None:
    done = await pool.run(cluster.target("node1"), ["echo", "hello", "world"], timeout_s=5)

    assert isinstance(done, Completed)
    assert (done.node, done.argv, done.exit_status) == ("node1", ("echo", "hello", "world"), 0)
    assert (done.stdout, done.stderr) == ("hello world\n", "")
    assert done.duration_s > 0
    assert cluster.servers["node1"].commands == ["echo hello world"]
    assert cluster.nodes["node1"].usernames == [USER]


async def test_nonzero_exit_is_returned_without_check(cluster: Cluster, pool: SshPool) -> None:
    done = await pool.run(cluster.target("node1"), ["fail", "3", "boom"], timeout_s=5)

    assert (done.exit_status, done.stderr, done.ok) == (3, "boom\n", False)


async def test_check_turns_nonzero_exit_into_command_failed(
    cluster: Cluster, pool: SshPool
) -> None:
    with pytest.raises(CommandFailed) as info:
        await pool.run(cluster.target("node2"), ["fail", "4", "no such resource"], timeout_s=5,
                       check=True)

    err = info.value
    assert (err.node, err.exit_status, err.stderr) == ("node2", 4, "no such resource\n")
    assert err.argv == ("fail", "4", "no such resource")
    assert "no such resource" in str(err)


async def test_ten_commands_share_one_connection(cluster: Cluster, pool: SshPool) -> None:
    target = cluster.target("node1")
    for i in range(10):
        done = await pool.run(target, ["echo", str(i)], timeout_s=5)
        assert done.stdout == f"{i}\n"

    assert cluster.servers["node1"].connections_accepted == 1
    assert len(cluster.servers["node1"].commands) == 10
    assert (pool.stats.connections_opened, pool.stats.commands_run) == (1, 10)


async def test_concurrent_first_use_connects_once(cluster: Cluster, pool: SshPool) -> None:
    target = cluster.target("node3")
    results = await asyncio.gather(
        *(pool.run(target, ["echo", str(i)], timeout_s=5) for i in range(10))
    )

    assert sorted(r.stdout for r in results) == sorted(f"{i}\n" for i in range(10))
    assert cluster.servers["node3"].connection_attempts == 1
    assert pool.stats.connections_opened == 1


async def test_one_debug_log_line_per_command_without_key_material(
    cluster: Cluster, pool: SshPool, caplog: pytest.LogCaptureFixture
) -> None:
    # DEBUG, not INFO: at INFO (what `run` logs by default) a fleet's polls would flood the log.
    caplog.set_level(logging.DEBUG)
    await pool.run(cluster.target("node1"), ["echo", "x"], timeout_s=5)

    ours = [r.getMessage() for r in caplog.records
            if r.name == "bot.ssh" and r.levelno == logging.DEBUG and "exited" in r.getMessage()]
    assert len(ours) == 1
    assert not [r for r in caplog.records if r.name == "bot.ssh" and r.levelno >= logging.INFO]
    assert ours[0].startswith("node1: `echo` exited 0 in ")
    private = cluster.keys.client_key_path.read_text()
    secret_line = private.splitlines()[1]  # a line of the base64 private key body
    assert secret_line not in caplog.text


# -- timeouts and unreachable nodes --------------------------------------------------------


async def test_slow_node_times_out_while_others_answer(cluster: Cluster, pool: SshPool) -> None:
    slow = cluster.target("node2")
    started = time.perf_counter()
    results = await asyncio.gather(
        pool.run(cluster.target("node1"), ["echo", "one"], timeout_s=5),
        pool.run(slow, ["block"], timeout_s=0.3),
        pool.run(cluster.target("node3"), ["echo", "three"], timeout_s=5),
        return_exceptions=True,
    )
    elapsed = time.perf_counter() - started

    one, blocked, three = results
    assert isinstance(one, Completed) and one.stdout == "one\n"
    assert isinstance(three, Completed) and three.stdout == "three\n"
    assert isinstance(blocked, SshTimeout) and blocked.node == "node2"
    assert "0.3s" in str(blocked)
    assert elapsed < 2
    # The timeout closed only that session: the pooled connection still serves commands.
    assert (await pool.run(slow, ["echo", "still", "here"], timeout_s=5)).ok
    assert cluster.servers["node2"].connections_accepted == 1


async def test_closed_port_is_unreachable_quickly(
    cluster: Cluster, pool: SshPool, closed_port: int
) -> None:
    started = time.perf_counter()
    with pytest.raises(Unreachable) as info:
        await pool.run(cluster.target("node1", port=closed_port), ["echo"], timeout_s=5)

    assert time.perf_counter() - started < 1
    assert info.value.node == "node1" and f"127.0.0.1:{closed_port}" in str(info.value)
    assert isinstance(info.value.__cause__, OSError)


async def test_silent_listener_hits_connect_timeout(cluster: Cluster, pool: SshPool) -> None:
    # The kernel completes the TCP handshake from the backlog; nobody ever sends an SSH banner.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        target = cluster.target("node1", port=listener.getsockname()[1], connect_timeout_s=0.2)
        started = time.perf_counter()
        with pytest.raises(SshTimeout, match="connect to"):
            await pool.run(target, ["echo"], timeout_s=5)

    assert time.perf_counter() - started < 1.5


async def test_early_socket_carries_the_first_connection(cluster: Cluster) -> None:
    """A cold status opens TCP during its imports (bot.early): the pool's first connect must
    use that socket, not open a second one."""
    server, target = cluster.servers["node1"], cluster.target("node1")
    early = connect_early([(target.host, target.port)], 2)
    async with SshPool(early=early) as pool:
        done = await pool.run(target, ["echo", "early"], timeout_s=5)

    assert done.stdout == "early\n"
    assert server.connection_attempts == 1 and pool.stats.connections_opened == 1
    assert early == {}  # taken


async def test_early_socket_to_a_closed_port_is_unreachable(cluster: Cluster, closed_port: int) -> None:
    target = cluster.target("node1", port=closed_port)
    async with SshPool(early=connect_early([("127.0.0.1", closed_port)], 2)) as pool:
        with pytest.raises(Unreachable) as info:
            await pool.run(target, ["echo"], timeout_s=5)

    assert f"127.0.0.1:{closed_port}" in str(info.value)
    assert isinstance(info.value.__cause__, ConnectionRefusedError)


async def test_early_socket_to_a_silent_listener_times_out(cluster: Cluster) -> None:
    with socket.socket() as listener:  # TCP is accepted from the backlog; no banner ever comes
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        target = cluster.target("node1", port=port, connect_timeout_s=0.2)
        async with SshPool(early=connect_early([("127.0.0.1", port)], 0.2)) as pool:
            with pytest.raises(SshTimeout, match="connect to"):
                await pool.run(target, ["echo"], timeout_s=5)


async def test_early_socket_still_checks_the_host_key(cluster: Cluster) -> None:
    server, target = cluster.servers["node2"], cluster.target("node2")
    server.rotate_host_key()
    async with SshPool(early=connect_early([(target.host, target.port)], 2)) as pool:
        with pytest.raises(HostKeyError, match="does not match"):
            await pool.run(target, ["echo", "never"], timeout_s=5)

    assert server.connection_attempts == 1 and server.commands == []


# -- host keys and authentication ----------------------------------------------------------


async def test_changed_host_key_is_refused_and_no_command_arrives(
    cluster: Cluster, pool: SshPool
) -> None:
    server, target = cluster.servers["node2"], cluster.target("node2")
    await pool.run(target, ["echo", "before"], timeout_s=5)
    server.rotate_host_key()
    await server.drop_connections()  # force a new handshake, which shows the new key

    with pytest.raises(HostKeyError) as info:
        await pool.run(target, ["echo", "after"], timeout_s=5)

    message = str(info.value)
    assert "does not match" in message and str(cluster.keys.known_hosts) in message
    assert f"127.0.0.1:{server.port}" in message and "refusing to connect" in message
    assert server.commands == ["echo before"]


async def test_unknown_host_is_refused(cluster: Cluster, pool: SshPool) -> None:
    cluster.keys.write_known_hosts([cluster.servers["node1"]])  # node3 not listed

    with pytest.raises(HostKeyError, match="is not listed in known_hosts"):
        await pool.run(cluster.target("node3"), ["echo"], timeout_s=5)
    assert cluster.servers["node3"].commands == []


async def test_missing_known_hosts_file_is_refused_before_connecting(
    cluster: Cluster, pool: SshPool, tmp_path: Path
) -> None:
    target = cluster.target("node1", known_hosts=tmp_path / "nope" / "known_hosts")

    with pytest.raises(HostKeyError, match=r"known_hosts file .* is missing"):
        await pool.run(target, ["echo"], timeout_s=5)
    assert cluster.servers["node1"].connection_attempts == 0


async def test_wrong_client_key_is_auth_error(
    cluster: Cluster, pool: SshPool, tmp_path: Path
) -> None:
    stranger = KeyMaterial.create(tmp_path / "stranger")
    target = cluster.target("node1", client_keys=(stranger.client_key_path,))

    with pytest.raises(AuthError) as info:
        await pool.run(target, ["echo"], timeout_s=5)
    assert f"{USER}@127.0.0.1" in str(info.value)
    assert cluster.servers["node1"].auth_failures >= 1
    assert cluster.servers["node1"].commands == []


async def test_wrong_user_is_auth_error(cluster: Cluster, pool: SshPool) -> None:
    with pytest.raises(AuthError):
        await pool.run(cluster.target("node1", user="root"), ["echo"], timeout_s=5)
    assert cluster.servers["node1"].commands == []


# -- sudo and quoting ----------------------------------------------------------------------

HOSTILE = [
    "echo",
    "x; rm -rf /",
    "$(id)",
    "`id`",
    "it's",
    '"double"',
    "a b\tc",
    "*",
    "",
    "--force",
    "| cat /etc/shadow &",
    "ünïcødé",
]


async def test_sudo_prefix_and_every_argument_arrives_as_one_literal_word(
    cluster: Cluster, pool: SshPool
) -> None:
    done = await pool.run(cluster.target("node1", sudo=True), HOSTILE, timeout_s=5)

    received = cluster.servers["node1"].commands[-1]
    assert received.startswith("sudo -n ")
    assert shlex.split(received) == ["sudo", "-n", *HOSTILE]
    assert done.stdout == " ".join(HOSTILE[1:]) + "\n"


async def test_without_sudo_the_command_is_just_the_quoted_argv(
    cluster: Cluster, pool: SshPool
) -> None:
    await pool.run(cluster.target("node1"), HOSTILE, timeout_s=5)

    assert shlex.split(cluster.servers["node1"].commands[-1]) == HOSTILE


async def test_sudo_refusal_raises_even_without_check(cluster: Cluster, pool: SshPool) -> None:
    cluster.nodes["node3"].sudo_refuses = True

    with pytest.raises(SudoRefused) as info:
        await pool.run(cluster.target("node3", sudo=True), ["echo", "hi"], timeout_s=5)
    assert "a password is required" in str(info.value) and info.value.node == "node3"


def test_build_command_refuses_bad_argv() -> None:
    for bad in ([], ["echo", "a\nb"], ["echo", "a\0b"], ["echo", "a\rb"]):
        with pytest.raises(ValueError):
            build_command(bad, sudo=False)
    with pytest.raises(ValueError):
        build_command("crm_mon -1", sudo=False)  # a string is not an argv
    with pytest.raises(ValueError):
        build_command(["-u", "root", "sh"], sudo=True)  # would be sudo's own option
    assert build_command(["crm_mon", "-1", "--as-xml"], sudo=True) == "sudo -n crm_mon -1 --as-xml"
    assert build_command(["echo", "$(id)"], sudo=False) == "echo '$(id)'"


async def test_bad_argv_never_reaches_the_network(cluster: Cluster, pool: SshPool) -> None:
    with pytest.raises(ValueError):
        await pool.run(cluster.target("node1"), ["echo", "two\nlines"], timeout_s=5)
    assert cluster.servers["node1"].connection_attempts == 0


# -- dead connections, reconnects and backoff ----------------------------------------------


async def test_dropped_connection_is_replaced_transparently(
    cluster: Cluster, pool: SshPool
) -> None:
    server, target = cluster.servers["node1"], cluster.target("node1")
    await pool.run(target, ["echo", "one"], timeout_s=5)
    await server.drop_connections()

    done = await pool.run(target, ["echo", "two"], timeout_s=5)

    assert done.stdout == "two\n"
    assert server.connections_accepted == 2
    assert server.commands == ["echo one", "echo two"]
    assert pool.stats.reconnects == 1


async def test_connection_that_died_unnoticed_is_retried_once_before_the_command_starts(
    cluster: Cluster, pool: SshPool
) -> None:
    server, target = cluster.servers["node3"], cluster.target("node3")
    await pool.run(target, ["echo", "one"], timeout_s=5)
    server.abort_connections()  # the pool still believes its connection is alive

    done = await pool.run(target, ["echo", "two"], timeout_s=5)

    assert done.stdout == "two\n"
    assert pool.stats.retries == 1  # session open failed, so the command was never sent...
    assert server.commands == ["echo one", "echo two"]  # ...and arrived exactly once
    assert server.connections_accepted == 2


async def test_connection_lost_mid_command_is_not_rerun(cluster: Cluster, pool: SshPool) -> None:
    server, node, target = cluster.servers["node2"], cluster.nodes["node2"], cluster.target("node2")
    running = asyncio.create_task(pool.run(target, ["block"], timeout_s=WAIT_S))
    async with asyncio.timeout(WAIT_S):
        await node.started.wait()
    await server.drop_connections()

    with pytest.raises(Unreachable, match="may or may not have run"):
        await running
    assert server.commands == ["block"]  # never sent a second time
    assert pool.stats.retries == 0
    assert (await pool.run(target, ["echo", "back"], timeout_s=5)).stdout == "back\n"


async def test_backoff_fails_fast_then_recovers(cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="bot.ssh")
    clock = FakeClock()
    server, target = cluster.servers["node1"], cluster.target("node1")
    await server.set_reachable(False)
    async with SshPool(backoff_initial_s=0.5, clock=clock) as pool:
        with pytest.raises(Unreachable):
            await pool.run(target, ["echo"], timeout_s=5)
        assert server.connection_attempts == 1

        started = time.perf_counter()
        with pytest.raises(Unreachable) as first:  # the reason, not our schedule (DEBUG only)
            await pool.run(target, ["echo"], timeout_s=5)
        assert "cannot connect" in str(first.value) and "retrying" not in str(first.value)
        assert "node1: not retrying the connection for another 0.5s" in caplog.messages
        assert time.perf_counter() - started < 0.5
        assert server.connection_attempts == 1  # no new connect while backing off

        clock.now += 0.5  # backoff over: the next call tries again, fails, and doubles
        with pytest.raises(Unreachable):
            await pool.run(target, ["echo"], timeout_s=5)
        assert server.connection_attempts == 2
        with pytest.raises(Unreachable):
            await pool.run(target, ["echo"], timeout_s=5)
        assert "node1: not retrying the connection for another 1.0s" in caplog.messages

        await server.set_reachable(True)
        clock.now += 1.0
        assert (await pool.run(target, ["echo", "up"], timeout_s=5)).stdout == "up\n"
        stats = pool.stats
    assert (stats.connect_failures, stats.backoff_rejections, stats.connections_opened) == (2, 2, 1)


async def test_backoff_keeps_the_error_type(cluster: Cluster, tmp_path: Path) -> None:
    stranger = KeyMaterial.create(tmp_path / "stranger")
    target = cluster.target("node1", client_keys=(stranger.client_key_path,))
    async with SshPool(clock=FakeClock()) as pool:
        with pytest.raises(AuthError):
            await pool.run(target, ["echo"], timeout_s=5)
        with pytest.raises(AuthError, match="refused our key"):
            await pool.run(target, ["echo"], timeout_s=5)
    assert cluster.servers["node1"].connection_attempts == 1  # the second was the backoff's answer


async def test_closed_pool_refuses_work(cluster: Cluster) -> None:
    pool = SshPool()
    await pool.run(cluster.target("node1"), ["echo"], timeout_s=5)
    await pool.close()

    with pytest.raises(RuntimeError):
        await pool.run(cluster.target("node1"), ["echo"], timeout_s=5)
    assert cluster.servers["node1"].commands == ["echo"]


# -- the loopback server itself ------------------------------------------------------------


async def test_server_close_cancels_parked_handlers(cluster: Cluster, pool: SshPool) -> None:
    server, node = cluster.servers["node1"], cluster.nodes["node1"]
    running = asyncio.create_task(pool.run(cluster.target("node1"), ["block"], timeout_s=WAIT_S))
    async with asyncio.timeout(WAIT_S):
        await node.started.wait()
        await server.close()  # node.release is never set: close must not wait for it

    with pytest.raises(Unreachable):
        await running
    assert server.live_connections == 0


async def test_handler_exception_becomes_exit_255(tmp_path: Path) -> None:
    async def broken(command: str, username: str) -> tuple[int, str, str]:
        raise RuntimeError("bug in the simulator")

    keys = KeyMaterial.create(tmp_path)
    server = LoopbackSshServer(broken, authorized_key=keys.public_key, username=USER)
    async with server, SshPool() as pool:
        keys.write_known_hosts([server])
        target = SshTarget(node="n", host="127.0.0.1", port=server.port, user=USER,
                           client_keys=(keys.client_key_path,), known_hosts=keys.known_hosts,
                           sudo=False)
        done = await pool.run(target, ["anything"], timeout_s=5)
    assert (done.exit_status, done.stderr) == (255, "loopback handler error\n")
