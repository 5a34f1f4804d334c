"""A real SSH server on 127.0.0.1 that answers commands from a Python callable.

The embedded demo puts its simulated cluster behind one `LoopbackSshServer` per fake node,
and the integration tests use the same servers, so `bot.ssh.SshPool` is exercised against a
genuine SSH handshake: host keys, public-key auth, channels, exit statuses.

Nothing received is ever executed on this host: the raw command string goes to the handler,
which returns (exit status, stdout, stderr). Keys are throwaway ed25519 keys generated in
memory; `KeyMaterial` writes the client key and a known_hosts file for the servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import asyncssh

from bot.shell import SHELL_COMMAND, stderr_marker, stdout_marker, unframe

__all__ = [
    "CommandHandler",
    "InputHandler",
    "KeyMaterial",
    "LoopbackSshServer",
    "known_hosts_line",
    "write_known_hosts",
]

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"

# (command, username) -> (exit status, stdout, stderr)
CommandHandler = Callable[[str, str], Awaitable[tuple[int, str, str]]]
# (command, username, stdin): for nodes whose commands read their stdin (crm_simulate --xml-pipe)
InputHandler = Callable[[str, str, str], Awaitable[tuple[int, str, str]]]


class _Connection(asyncssh.SSHServer):
    """Per-connection callbacks: asyncssh creates one of these for every accepted socket."""

    def __init__(self, owner: LoopbackSshServer) -> None:
        self._owner = owner
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._owner._on_connection(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._owner._live.discard(self._conn)

    def begin_auth(self, username: str) -> bool:
        return True  # always require authentication, even for the right user

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return self._owner._authorize(username, key)


class LoopbackSshServer:
    """An asyncssh server on 127.0.0.1:<random port> with its own ed25519 host key.

    Only `username` holding the private half of `authorized_key` may log in. Counters and
    the list of received commands let tests assert what reached the "node".
    """

    def __init__(
        self,
        handler: CommandHandler,
        *,
        authorized_key: asyncssh.SSHKey,
        username: str,
        name: str = "loopback",
        read_shells: bool = True,
        input_handler: InputHandler | None = None,
    ) -> None:
        self.name = name
        # Given: exec sessions read their stdin to EOF and go there instead of to `handler`.
        self._input_handler = input_handler
        self.read_shells = read_shells  # False: `exec /bin/sh` is just an unknown command
        self.username = username
        self._handler = handler
        self._authorized = authorized_key.public_data
        self._host_key = asyncssh.generate_private_key("ssh-ed25519")
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._live: set[asyncssh.SSHServerConnection] = set()
        self._handlers: set[asyncio.Task[object]] = set()
        self._reachable = True
        self.port = 0
        self.connection_attempts = 0  # every TCP connection, refused ones included
        self.connections_accepted = 0  # connections allowed to proceed to the handshake
        self.auth_failures = 0
        self.commands: list[str] = []
        self.shells = 0  # read shells started (see bot.shell)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> LoopbackSshServer:
        self._acceptor = await asyncssh.listen(
            LOOPBACK,
            0,
            server_factory=lambda: _Connection(self),
            server_host_keys=[self._host_key],
            process_factory=self._serve,
            allow_scp=False,
            # Why: the simulated node must not offer anything but exec; no forwarding, no agent.
            agent_forwarding=False,
            allow_pty=False,
            x11_forwarding=False,
            login_timeout=10,
        )
        self.port = self._acceptor.get_port()
        return self

    async def close(self) -> None:
        """Stop listening, cancel handlers still running, close every client connection."""
        acceptor, self._acceptor = self._acceptor, None
        if acceptor is not None:
            acceptor.close()
        # Why cancel: asyncssh does not cancel a session's task when its connection closes,
        # so a handler parked on an Event would outlive the server.
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await self.drop_connections()
        if acceptor is not None:
            # Why last: on Python >= 3.12 wait_closed() also waits for open connections.
            await acceptor.wait_closed()

    async def __aenter__(self) -> LoopbackSshServer:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- fault injection -------------------------------------------------------------------

    async def drop_connections(self) -> None:
        """Close every client connection from the server side, as a restarting sshd would."""
        conns = list(self._live)
        self._live.clear()
        for conn in conns:
            conn.close()
        for conn in conns:
            await conn.wait_closed()

    def abort_connections(self) -> None:
        """Cut every client connection at TCP level, no SSH goodbye, as a crashed node would.

        Synchronous on purpose: the client learns of it only when its loop next reads the
        socket, which is how a pooled connection that died unnoticed looks to the pool.
        """
        conns = list(self._live)
        self._live.clear()
        for conn in conns:
            conn.abort()

    async def set_reachable(self, reachable: bool) -> None:
        """While unreachable, new connections are cut before the SSH banner and live ones dropped.

        The listening socket stays bound: giving the port back to the OS could let something
        else take it, and the node could then not come back on the same address.
        """
        self._reachable = reachable
        if not reachable:
            await self.drop_connections()

    def rotate_host_key(self) -> asyncssh.SSHKey:
        """Switch to a fresh host key for new connections; existing ones keep the old one."""
        self._host_key = asyncssh.generate_private_key("ssh-ed25519")
        if self._acceptor is not None:
            self._acceptor.update(server_host_keys=[self._host_key])
        return self.host_public_key

    # -- introspection ---------------------------------------------------------------------

    @property
    def host_public_key(self) -> asyncssh.SSHKey:
        return self._host_key.convert_to_public()

    @property
    def live_connections(self) -> int:
        return len(self._live)

    def known_hosts_line(self) -> str:
        return known_hosts_line(LOOPBACK, self.port, self.host_public_key)

    # -- callbacks from _Connection and asyncssh -------------------------------------------

    def _on_connection(self, conn: asyncssh.SSHServerConnection) -> None:
        self.connection_attempts += 1
        if not self._reachable:
            conn.abort()  # why: like a node whose sshd is gone, cut before any banner
            return
        self.connections_accepted += 1
        self._live.add(conn)

    def _authorize(self, username: str, key: asyncssh.SSHKey) -> bool:
        ok = username == self.username and key.public_data == self._authorized
        if not ok:
            self.auth_failures += 1
        return ok

    async def _serve(self, process: asyncssh.SSHServerProcess[str]) -> None:
        command = process.command or ""
        username = str(process.get_extra_info("username", ""))
        if command == SHELL_COMMAND and self.read_shells:
            await self._serve_shell(process, username)
            return
        self.commands.append(command)
        if self._input_handler is not None:
            stdin = await process.stdin.read()
            status, out, err = await self._call_handler(command, username, stdin)
        else:
            status, out, err = await self._call_handler(command, username)
        _reply(process, status, out, err)

    async def _serve_shell(self, process: asyncssh.SSHServerProcess[str], username: str) -> None:
        """A read shell (`bot.shell`): framed lines in, framed answers out, until EOF. Only
        the frame is understood; anything else is answered the way sh would, status 127."""
        self.shells += 1
        with contextlib.suppress(OSError, asyncssh.Error):
            async for line in process.stdin:
                framed = unframe(line)
                if framed is None:
                    process.stderr.write("sh: 1: unexpected input\n")
                    continue
                command, nonce = framed
                if command == ":":
                    status, out, err = 0, "", ""
                else:
                    self.commands.append(command)
                    status, out, err = await self._call_handler(command, username)
                process.stdout.write(out + stdout_marker(nonce, status))
                process.stderr.write(err + stderr_marker(nonce))
            process.exit(0)

    async def _call_handler(self, command: str, username: str,
                            stdin: str | None = None) -> tuple[int, str, str]:
        task = asyncio.current_task()
        assert task is not None  # asyncssh runs each session's process_factory as a task
        self._handlers.add(task)
        try:
            if stdin is not None and self._input_handler is not None:
                return await self._input_handler(command, username, stdin)
            return await self._handler(command, username)
        except Exception:
            log.exception("%s: loopback handler failed for %r", self.name, command)
            return 255, "", "loopback handler error\n"
        finally:
            self._handlers.discard(task)


def _reply(process: asyncssh.SSHServerProcess[str], status: int, out: str, err: str) -> None:
    # Why suppress: the client may have given up (timeout) and closed the channel already.
    with contextlib.suppress(OSError, asyncssh.Error):
        process.stdout.write(out)
        process.stderr.write(err)
        process.exit(status)


def known_hosts_line(host: str, port: int, key: asyncssh.SSHKey) -> str:
    """One OpenSSH known_hosts line; a non-22 port needs the `[host]:port` form."""
    pattern = host if port == 22 else f"[{host}]:{port}"
    public = key.convert_to_public().export_public_key("openssh").decode().split()
    return f"{pattern} {public[0]} {public[1]}"


def write_known_hosts(path: Path, servers: Iterable[LoopbackSshServer]) -> Path:
    path.write_text("".join(f"{server.known_hosts_line()}\n" for server in servers))
    return path


@dataclass(frozen=True, slots=True)
class KeyMaterial:
    """A throwaway client keypair on disk plus the known_hosts path that goes with it."""

    directory: Path
    client_key_path: Path
    client_key: asyncssh.SSHKey
    known_hosts: Path

    @classmethod
    def create(cls, directory: Path, servers: Iterable[LoopbackSshServer] = ()) -> KeyMaterial:
        directory.mkdir(parents=True, exist_ok=True)
        key = asyncssh.generate_private_key("ssh-ed25519", comment="clusterbot-demo")
        key_path = directory / "id_ed25519"
        # Why O_CREAT with 0600: a private key must never be readable by others, not even briefly.
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key.export_private_key("openssh"))
        material = cls(directory, key_path, key, directory / "known_hosts")
        material.write_known_hosts(servers)
        return material

    @property
    def public_key(self) -> asyncssh.SSHKey:
        return self.client_key.convert_to_public()

    def write_known_hosts(self, servers: Iterable[LoopbackSshServer]) -> Path:
        return write_known_hosts(self.known_hosts, servers)
