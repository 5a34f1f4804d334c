"""SSH transport: one pooled asyncssh connection per node, commands as argv, errors as ours.

Everything clusterbot runs on a node goes through `SshPool.run`, and every remote command
line is built by `build_command`, which quotes each argv element with `shlex.join`: no
caller ever hands a shell a string it assembled itself.

Design points, each of which a test in tests/integration/test_ssh.py pins down:

* One `SSHClientConnection` per (host, port, user), opened lazily under a per-key lock and
  reused for every command (each command is its own session on that connection).
* Host keys are always checked against the target's known_hosts file; a missing file, an
  unknown host or a changed key is a loud `HostKeyError`, never a prompt or a silent accept.
* After a failed connect the key backs off (0.5 s doubling to 30 s); calls during the backoff
  fail at once with the last error's type instead of hammering a dead node.
* A connection that died (server restart, failed keepalive) is replaced on next use. A command
  is retried once on a fresh connection only when its session never opened, so nothing that
  may have executed is ever run twice.
* asyncssh and OS exceptions become `bot.errors.SshError` subclasses, chained with `from`.
* Read commands (`read`) go through a few persistent read shells per connection
  (`bot.shell`): no session setup per command. A shell that cannot be opened or dies falls
  back to an exec session of its own; everything else (`run`) always gets its own session.
"""

from __future__ import annotations

import asyncio
import ctypes.util
import dataclasses
import functools
import logging
import os
import re
import shlex
import socket
import sys
import sysconfig
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TypeVar, cast


@contextmanager
def _quick_library_lookup() -> Iterator[None]:
    """asyncssh probes for optional C libraries at import (liboqs for post-quantum key exchange,
    nettle for UMAC) with ctypes.util.find_library, which on Linux runs ldconfig, then gcc and
    ld, as subprocesses: 75-85 ms of every cold `clusterbot status` measured, even where the
    libraries are absent. Looking for their files in the linker's usual directories finds them
    wherever a distribution package installs them."""
    real = ctypes.util.find_library
    dirs = ("/usr/local/lib", "/usr/lib", "/lib", "/usr/lib64", "/lib64",
            f"/usr/lib/{sysconfig.get_config_var('MULTIARCH') or ''}")

    @functools.cache
    def files() -> tuple[str, ...]:
        # Each directory listed once for all the lookups: a glob per library re-read these
        # thousand-entry directories every time (~2 ms a lookup, measured).
        return tuple(f for d in dirs if os.path.isdir(d) for f in os.listdir(d))

    def find(name: str) -> str | None:
        stem = name if name.startswith("lib") else f"lib{name}"
        found = [f for f in files() if f.startswith(f"{stem}.so")]
        # Like ldconfig's answer: the soname (libnettle.so.8), not the -dev symlink or full version.
        return min(found, key=lambda f: (re.search(r"\.so\.\d+$", f) is None, len(f)), default=None)

    if sys.platform.startswith("linux"):
        ctypes.util.find_library = find
    try:
        yield
    finally:
        ctypes.util.find_library = real


def _without_x509() -> None:
    """Load asyncssh without its X.509 certificate support, as asyncssh itself does when that
    support cannot be imported: it pulls in cryptography.x509 and compiles its name parser,
    ~15 ms of every cold `clusterbot status` (measured), for a host-key and user-auth scheme
    (RFC 6187) that OpenSSH, and so Pacemaker nodes, never use. Fails closed: a known_hosts
    line holding an X.509 certificate is then skipped, so that host is not verifiable and is
    refused. Only while asyncssh has not been loaded (no effect on a process that already
    uses the full asyncssh, such as a test's own SSH server)."""
    if "asyncssh" not in sys.modules:
        sys.modules.setdefault("asyncssh.crypto.x509", None)  # type: ignore[arg-type]


_without_x509()
with _quick_library_lookup():
    import asyncssh

from bot.early import EarlySockets, close_unused, close_when_done
from bot.errors import (
    AuthError,
    CommandFailed,
    HostKeyError,
    SshError,
    SshTimeout,
    SudoRefused,
    Unreachable,
)
from bot.shell import RemoteShell, ShellLost

__all__ = ["Completed", "PoolStats", "SshPool", "SshTarget", "build_command", "connect_ahead"]

log = logging.getLogger(__name__)
T = TypeVar("T")
Connection = tuple[str, int, str, tuple[Path, ...], Path, float]
Answer = asyncio.Future[tuple[int, bytes, bytes]]  # a framed command's (status, stdout, stderr)

# What `sudo -n` prints (exit status 1) when it will not run the command without a prompt.
# Anchored to line starts so a command's own stderr is unlikely to be mistaken for sudo's.
_SUDO_REFUSAL = re.compile(
    r"^(?:sudo: a password is required"
    r"|sudo: a terminal is required"
    r"|sudo: no tty present"
    r"|sudo: sorry, you must have a tty"
    r"|(?:sudo: )?Sorry, user \S+ is not allowed to execute"
    r"|(?:sudo: )?\S+ is not in the sudoers file)",
    re.MULTILINE,
)
_SUDO_STATUS = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class SshTarget:
    """How to reach one cluster node. Keyword-only so the field order can follow the brief."""

    node: str  # Pacemaker node name, used in every message
    host: str
    port: int = 22
    user: str
    client_keys: tuple[Path, ...]
    known_hosts: Path
    sudo: bool
    connect_timeout_s: float = 5
    keepalive_interval_s: float = 10
    keepalive_count_max: int = 3

    @property
    def key(self) -> tuple[str, int, str]:
        """Pool key: two nodes behind one address and account share a connection."""
        return (self.host, self.port, self.user)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def connection(self) -> Connection:
        """Everything a connection is opened with (keepalives are set on it afterwards): a
        connection opened ahead for a guessed target serves only a target equal in all of it."""
        return (self.host, self.port, self.user, self.client_keys, self.known_hosts,
                self.connect_timeout_s)


@dataclass(frozen=True, slots=True)
class Completed:
    """A command that ran to completion on a node. Killed by signal N: exit_status is -N on an
    exec session, 128+N (as sh reports it) on a read shell."""

    node: str
    argv: tuple[str, ...]
    exit_status: int
    stdout: str
    stderr: str
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


@dataclass(slots=True)
class PoolStats:
    """Counters for metrics and benchmarks; `SshPool.stats` hands out a snapshot."""

    connections_opened: int = 0
    reconnects: int = 0  # connections opened to a node we had been connected to before
    connect_failures: int = 0
    backoff_rejections: int = 0  # calls failed fast without a connect attempt
    retries: int = 0  # commands re-sent because their session never opened (or shell died)
    commands_run: int = 0  # commands that came back with an exit status
    shells_opened: int = 0  # persistent read shells started
    shell_commands: int = 0  # of commands_run, those answered by a read shell


def build_command(argv: Sequence[str], sudo: bool) -> str:
    """The one place a remote command line is built: every argv element shell-quoted."""
    if isinstance(argv, str):
        raise ValueError("argv must be a sequence of arguments, not a string")
    if not argv:
        raise ValueError("empty argv")
    for arg in argv:
        # Why: NUL cannot cross exec(), and newlines make log lines and audit trails lie.
        if "\0" in arg or "\n" in arg or "\r" in arg:
            raise ValueError(f"argv element contains NUL or a newline: {arg!r}")
    if sudo and argv[0].startswith("-"):
        raise ValueError(f"argv[0] would be read as a sudo option: {argv[0]!r}")
    command = shlex.join(argv)
    return f"sudo -n {command}" if sudo else command


class _NotStarted(Exception):
    """The session never opened, so the command was never sent: safe to retry once."""


@dataclass(slots=True)
class _Slot:
    """Per-key pool state. The lock serialises connecting, never running commands."""

    sessions: asyncio.Semaphore
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    conn: asyncssh.SSHClientConnection | None = None
    ever_connected: bool = False
    failures: int = 0
    retry_at: float = 0.0
    last_error: type[SshError] | None = None
    last_reason: str = ""
    idle_shells: list[tuple[asyncssh.SSHClientConnection, RemoteShell]] = field(default_factory=list)
    # The read shell opened with the connection ahead of time (connect_ahead), not used yet,
    # maybe with commands already sent down it: the first read_all takes it.
    fresh_shell: _Opened | None = None
    shells: int = 0  # open read shells, idle or busy; each holds one of `sessions`
    # The connection on which a read shell could not be started: reads on it use exec. A new
    # connection tries again (the failure may have been a slow handshake, or a changed node).
    no_shell_on: asyncssh.SSHClientConnection | None = None
    # Facts about the node learnt on `facts_of` (see SshPool.remember): a new connection may
    # reach a reinstalled node, so it starts with none.
    facts: dict[str, object] = field(default_factory=dict)
    facts_of: asyncssh.SSHClientConnection | None = None

    def live(self) -> asyncssh.SSHClientConnection | None:
        conn = self.conn
        return conn if conn is not None and not conn.is_closed() else None


class SshPool:
    """Pooled SSH connections to cluster nodes. Use as `async with SshPool() as pool`."""

    def __init__(
        self,
        *,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        max_sessions_per_connection: int = 8,
        max_shells_per_connection: int = 4,
        clock: Callable[[], float] = time.monotonic,
        early: EarlySockets | None = None,
        ahead: Ahead | None = None,
    ) -> None:
        # Why a session cap: OpenSSH's MaxSessions defaults to 10 per connection, and going
        # over it makes sshd refuse channels rather than queue them. Read shells hold one
        # session each for their lifetime, so they are capped below it: exec always has room.
        if not 0 <= max_shells_per_connection < max_sessions_per_connection:
            raise ValueError("max_shells_per_connection must be below max_sessions_per_connection")
        self._max_shells = max_shells_per_connection
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._max_sessions = max_sessions_per_connection
        self._clock = clock  # injectable so tests can step through the backoff without sleeping
        self._slots: dict[tuple[str, int, str], _Slot] = {}
        self._stats = PoolStats()
        self._closed = False
        # TCP connections a cold start opened before asyncssh was loaded (bot.early): each
        # node's first connect takes its socket, later ones connect as usual.
        self._early: EarlySockets = early if early is not None else {}
        # Connections a cold start opened from its guess of the config (connect_ahead): the
        # first connect of a target with exactly the same connection parameters takes one.
        self._ahead: Ahead = ahead if ahead is not None else {}

    @property
    def stats(self) -> PoolStats:
        return dataclasses.replace(self._stats)

    async def __aenter__(self) -> SshPool:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        close_unused(self._early)
        for slot in self._slots.values():
            if (fresh := slot.fresh_shell) is not None and fresh.shell is not None:
                _abandon(fresh.answers)
                fresh.shell.close()
            slot.fresh_shell = None
            for _, shell in slot.idle_shells:
                shell.close()
            slot.idle_shells.clear()
        conns = await _unused(self._ahead)
        conns += [conn for slot in self._slots.values() if (conn := slot.conn) is not None]
        for slot in self._slots.values():
            slot.conn = None
        for conn in conns:
            conn.close()
        for conn in conns:
            await conn.wait_closed()

    async def run(
        self,
        target: SshTarget,
        argv: Sequence[str],
        *,
        timeout_s: float,
        check: bool = False,
        input: str | None = None,  # shadows the builtin on purpose: mirrors subprocess.run
    ) -> Completed:
        """Run argv on the node; `timeout_s` bounds the command, `connect_timeout_s` the connect.

        Raises SudoRefused whenever sudo declined, CommandFailed on non-zero exit if `check`.
        """
        args = tuple(argv)
        command = build_command(args, target.sudo)  # ValueError before touching the network
        if self._closed:
            raise RuntimeError("SshPool is closed")
        completed = await self._run_logged(target, args, command, timeout_s, input)
        _raise_for_status(target, completed, check)
        return completed

    async def read(self, target: SshTarget, argv: Sequence[str], *, timeout_s: float) -> Completed:
        """Run a read-only command, on a persistent read shell when the node allows one.

        Only for commands that change nothing: one whose shell died is asked again on a
        session of its own. Errors and results are the same as `run`'s."""
        args = tuple(argv)
        command = build_command(args, target.sudo)
        if self._closed:
            raise RuntimeError("SshPool is closed")
        completed = await self._run_logged(target, args, command, timeout_s, None, shell=True)
        _raise_for_status(target, completed, False)
        return completed

    def warm(self, target: SshTarget) -> bool:
        """A live connection with read shells (or known to allow none): `read_all` would gain
        nothing over concurrent `read`s."""
        slot = self._slots.get(target.key)
        conn = slot.live() if slot is not None else None
        if slot is None or conn is None:
            return False
        used = slot.shells - (slot.fresh_shell is not None)
        return used > 0 or slot.no_shell_on is conn

    async def read_all(self, target: SshTarget, argvs: Sequence[Sequence[str]], *,
                       timeout_s: float) -> list[Completed | SshError]:
        """Several read-only commands; each one's answer, or its error, in order.

        On a connection that has no read shell yet (a cold start: `clusterbot status` from
        cron), all of them go down one new read shell at once: one session for the node
        instead of one each, and no round trip between commands. Once the connection has
        shells, they are asked concurrently as `read` would, each on its own shell."""
        args = [tuple(a) for a in argvs]
        commands = [build_command(a, target.sudo) for a in args]
        if self._closed:
            raise RuntimeError("SshPool is closed")
        try:
            conn = await self._connection(target)
        except SshError as err:
            return [err] * len(args)
        slot = self._slot(target)
        fresh = self._take_fresh(slot, conn, commands)
        if fresh is not None:
            return await self._pipelined(target, slot, conn, *fresh, args, commands, timeout_s)
        if slot.shells or not self._max_shells or len(args) < 2:
            return await self._each(target, args, timeout_s)
        shell = await self._take_shell(target, slot, conn, timeout_s)
        if shell is None:
            return await self._each(target, args, timeout_s)
        return await self._pipelined(target, slot, conn, shell, None, args, commands, timeout_s)

    async def _each(self, target: SshTarget, args: list[tuple[str, ...]],
                    timeout_s: float) -> list[Completed | SshError]:
        async def one(argv: tuple[str, ...]) -> Completed | SshError:
            try:
                return await self.read(target, argv, timeout_s=timeout_s)
            except SshError as err:
                return err
        return list(await asyncio.gather(*(one(a) for a in args)))

    async def _pipelined(self, target: SshTarget, slot: _Slot, conn: asyncssh.SSHClientConnection,
                         shell: RemoteShell, sent: list[Answer] | None, args: list[tuple[str, ...]],
                         commands: list[str], timeout_s: float) -> list[Completed | SshError]:
        """The commands written at once to one shell (`sent`: already written, these are their
        answers); each answer must come within timeout_s of the one before. After a timeout or
        a lost shell, the rest are asked again one by one (as `read`: another shell, or exec
        sessions); they only read, so asking twice is safe."""
        out: list[Completed | SshError] = []
        answers: list[Answer] = []
        try:
            answers = sent if sent is not None else shell.send(*commands)
            for argv, answer in zip(args, answers, strict=True):
                started = time.perf_counter()
                try:
                    async with asyncio.timeout(timeout_s):
                        status, stdout, stderr = await answer
                except TimeoutError:
                    self._drop_shell(slot, shell)  # its next bytes would belong to this command
                    err = _timed_out(target, argv, timeout_s)
                    log.warning("%s: `%s` failed after %.3fs (%s): %s", target.node, argv[0],
                                timeout_s, err.kind, err.message.removeprefix(f"{target.node}: "))
                    out.append(err)
                    break
                done = Completed(node=target.node, argv=argv, exit_status=status, stdout=_text(stdout),
                                 stderr=_text(stderr), duration_s=time.perf_counter() - started)
                self._stats.commands_run += 1
                self._stats.shell_commands += 1
                log.debug("%s: `%s` exited %d in %.3fs", target.node, argv[0], status, done.duration_s)
                out.append(_checked(target, done))
            else:
                slot.idle_shells.append((conn, shell))
        except ShellLost as exc:
            self._drop_shell(slot, shell)
            self._stats.retries += 1
            log.info("%s: read shell lost during `%s` (%s); asking on sessions of their own",
                     target.node, args[len(out)][0], exc)
        except BaseException:
            self._drop_shell(slot, shell)
            raise
        finally:
            _abandon(answers[len(out):])
        if len(out) < len(args):
            out += await self._each(target, args[len(out):], timeout_s)
        return out

    async def remember(self, target: SshTarget, key: str, compute: Callable[[], Awaitable[T]]) -> T:
        """`compute()` once per connection to the node: facts such as its pcs version, which
        change only with a package upgrade (after which a reconnect asks again)."""
        conn = await self._connection(target)
        slot = self._slot(target)
        if slot.facts_of is not conn:
            slot.facts, slot.facts_of = {}, conn
        if key in slot.facts:
            return cast(T, slot.facts[key])
        value = await compute()
        if slot.facts_of is conn:
            slot.facts[key] = value
        return value

    # -- commands --------------------------------------------------------------------------

    async def _run_logged(
        self, target: SshTarget, argv: tuple[str, ...], command: str,
        timeout_s: float, stdin: str | None, *, shell: bool = False,
    ) -> Completed:
        started = time.perf_counter()
        try:
            done = None
            if shell and self._max_shells:
                done = await self._run_in_shell(target, argv, command, timeout_s)
            if done is None:
                done = await self._run_with_retry(target, argv, command, timeout_s, stdin)
        except SshError as err:
            elapsed = time.perf_counter() - started
            # DEBUG: the caller reports the failure (a finding, an incident, a refusal), and a
            # lost connection is logged once by _record_failure.
            log.debug("%s: `%s` failed after %.3fs (%s): %s", target.node, argv[0], elapsed,
                      err.kind, err.message.removeprefix(f"{target.node}: "))
            raise
        log.debug("%s: `%s` exited %d in %.3fs", target.node, argv[0], done.exit_status,
                  done.duration_s)
        return done

    async def _run_with_retry(
        self, target: SshTarget, argv: tuple[str, ...], command: str,
        timeout_s: float, stdin: str | None,
    ) -> Completed:
        try:
            return await self._run_on_pool(target, argv, command, timeout_s, stdin, last=False)
        except _NotStarted:
            # Why only here: the session never opened, so the node cannot have run anything.
            self._stats.retries += 1
            log.debug("%s: connection went away before `%s` started; retrying", target.node,
                      argv[0])
            return await self._run_on_pool(target, argv, command, timeout_s, stdin, last=True)

    async def _run_on_pool(
        self, target: SshTarget, argv: tuple[str, ...], command: str,
        timeout_s: float, stdin: str | None, *, last: bool,
    ) -> Completed:
        conn = await self._connection(target)
        try:
            return await self._exec(target, conn, argv, command, timeout_s, stdin)
        except _NotStarted as exc:
            self._discard(target, conn)
            if last:
                raise Unreachable(target.node, f"could not open a session: {exc}") from exc
            raise

    async def _exec(
        self, target: SshTarget, conn: asyncssh.SSHClientConnection, argv: tuple[str, ...],
        command: str, timeout_s: float, stdin: str | None,
    ) -> Completed:
        sessions = self._slot(target).sessions
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout_s), sessions:
                result = await _open_and_wait(conn, command, stdin)
        except TimeoutError as exc:
            raise _timed_out(target, argv, timeout_s) from exc
        except asyncssh.ChannelOpenError as exc:  # the node declined the session or the exec
            msg = f"session for `{argv[0]}` refused: {exc.reason}"
            raise Unreachable(target.node, msg) from exc
        except (asyncssh.Error, OSError) as exc:
            raise Unreachable(target.node, _lost_mid_command(argv, exc)) from exc
        if result.returncode is None:  # channel closed without an exit status: connection died
            raise Unreachable(target.node, _lost_mid_command(argv, None))
        self._stats.commands_run += 1
        return Completed(
            node=target.node, argv=argv, exit_status=result.returncode,
            stdout=_text(result.stdout), stderr=_text(result.stderr),
            duration_s=time.perf_counter() - started,
        )

    # -- read shells ----------------------------------------------------------------------

    async def _run_in_shell(
        self, target: SshTarget, argv: tuple[str, ...], command: str, timeout_s: float,
    ) -> Completed | None:
        """The command's answer from a read shell; None when none is available or the shell
        died under it (the caller then uses an exec session)."""
        conn = await self._connection(target)
        slot = self._slot(target)
        shell = await self._take_shell(target, slot, conn, timeout_s)
        if shell is None:
            return None
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout_s):
                status, out, err = await shell.run(command)
        except TimeoutError as exc:
            self._drop_shell(slot, shell)  # its next bytes would belong to this command
            raise _timed_out(target, argv, timeout_s) from exc
        except ShellLost as exc:
            self._drop_shell(slot, shell)
            self._stats.retries += 1
            log.info("%s: read shell lost during `%s` (%s); asking on a session of its own",
                     target.node, argv[0], exc)
            return None
        except BaseException:
            self._drop_shell(slot, shell)
            raise
        slot.idle_shells.append((conn, shell))
        self._stats.commands_run += 1
        self._stats.shell_commands += 1
        return Completed(node=target.node, argv=argv, exit_status=status, stdout=_text(out),
                         stderr=_text(err), duration_s=time.perf_counter() - started)

    async def _take_shell(self, target: SshTarget, slot: _Slot, conn: asyncssh.SSHClientConnection,
                          timeout_s: float) -> RemoteShell | None:
        """An idle shell on this connection, a new one if there is room, else None."""
        if (fresh := self._take_fresh(slot, conn, [])) is not None:
            return fresh[0]
        while slot.idle_shells:
            owner, shell = slot.idle_shells.pop()
            if owner is conn and shell.alive:
                return shell
            self._drop_shell(slot, shell)
        # Why not wait for a busy shell: an exec session answers sooner than a queue would.
        if slot.no_shell_on is conn or slot.shells >= self._max_shells or slot.sessions.locked():
            return None
        await slot.sessions.acquire()
        slot.shells += 1
        try:
            # Why the min: a shell that will not start must not cost more than the command.
            shell = await RemoteShell.open(conn, min(target.connect_timeout_s, timeout_s))
        except ShellLost as exc:
            slot.shells -= 1
            slot.sessions.release()
            if conn.is_closed():
                return None  # the connection died, not the shell: try again next time
            slot.no_shell_on = conn
            log.warning("%s: no read shell (%s); every command gets its own session", target.node, exc)
            return None
        except BaseException:
            slot.shells -= 1
            slot.sessions.release()
            raise
        self._stats.shells_opened += 1
        return shell

    def _take_fresh(self, slot: _Slot, conn: asyncssh.SSHClientConnection, commands: list[str],
                    ) -> tuple[RemoteShell, list[Answer] | None] | None:
        """The shell opened ahead with this connection, if it is alive and what was sent down it
        ahead (if anything) is exactly `commands`: with those commands' answers to come (None:
        nothing was sent). A shell with other commands outstanding is closed, their answers
        unread: they were asked for a guess the settings did not confirm."""
        fresh, slot.fresh_shell = slot.fresh_shell, None
        if fresh is None or fresh.shell is None:
            return None
        if fresh.conn is conn and fresh.shell.alive and fresh.sent in ((), tuple(commands)):
            return fresh.shell, list(fresh.answers) if fresh.sent else None
        _abandon(fresh.answers)
        self._drop_shell(slot, fresh.shell)
        return None

    def _drop_shell(self, slot: _Slot, shell: RemoteShell) -> None:
        shell.close()
        slot.shells -= 1
        slot.sessions.release()

    # -- connections -----------------------------------------------------------------------

    def _slot(self, target: SshTarget) -> _Slot:
        slot = self._slots.get(target.key)
        if slot is None:
            slot = self._slots[target.key] = _Slot(asyncio.Semaphore(self._max_sessions))
        return slot

    def _discard(self, target: SshTarget, conn: asyncssh.SSHClientConnection) -> None:
        slot = self._slot(target)
        if slot.conn is conn:
            slot.conn = None
        conn.abort()  # why abort, not close: it is already dead or dying, don't wait on it

    async def _connection(self, target: SshTarget) -> asyncssh.SSHClientConnection:
        if self._closed:  # e.g. a read whose shell the closing pool ended: no new connection
            raise RuntimeError("SshPool is closed")
        slot = self._slot(target)
        if (conn := slot.live()) is not None:
            return conn  # hot path: no lock once connected
        async with slot.lock:
            if (conn := slot.live()) is not None:
                return conn  # someone else connected while we waited for the lock
            self._check_backoff(target, slot)
            return await self._connect_slot(target, slot)

    def _check_backoff(self, target: SshTarget, slot: _Slot) -> None:
        wait = slot.retry_at - self._clock()
        if slot.last_error is None or wait <= 0:
            return
        self._stats.backoff_rejections += 1
        # The reader (a status, an alert) needs why the node is unreachable, not our schedule.
        log.debug("%s: not retrying the connection for another %.1fs", target.node, wait)
        raise slot.last_error(target.node, slot.last_reason)

    async def _connect_slot(self, target: SshTarget, slot: _Slot) -> asyncssh.SSHClientConnection:
        if slot.conn is not None:
            log.info("%s: connection to %s was closed; reconnecting", target.node, target.address)
        replacing = slot.ever_connected
        ahead = self._ahead.pop(target.connection, None)
        try:
            if ahead is not None:
                conn = await self._adopt(target, slot, ahead)
            else:
                conn = await _connect(target, self._early.pop((target.host, target.port), None))
        except SshError as err:
            self._record_failure(target, slot, err)
            raise
        if self._closed:  # close() ran while we were connecting: don't leak the connection
            conn.close()
            raise RuntimeError("SshPool is closed")
        if slot.failures:
            log.info("%s: connected again after %d failed attempts", target.node, slot.failures)
        slot.conn, slot.ever_connected = conn, True
        slot.failures, slot.last_error = 0, None
        self._stats.connections_opened += 1
        self._stats.reconnects += replacing
        return conn

    async def _adopt(self, target: SshTarget, slot: _Slot,
                     ahead: asyncio.Task[_Opened]) -> asyncssh.SSHClientConnection:
        """The connection opened ahead for this very target (its errors are the connect's),
        with its read shell kept for the first read_all."""
        opened = await ahead
        conn = opened.conn
        conn.set_keepalive(target.keepalive_interval_s, target.keepalive_count_max)
        if opened.shell is not None:
            await slot.sessions.acquire()
            slot.shells += 1
            slot.fresh_shell = opened
            self._stats.shells_opened += 1
        return conn

    def _record_failure(self, target: SshTarget, slot: _Slot, err: SshError) -> None:
        slot.conn = None
        slot.failures += 1
        delay = min(self._backoff_initial_s * 2 ** (slot.failures - 1), self._backoff_max_s)
        slot.retry_at = self._clock() + delay
        slot.last_error = type(err)
        slot.last_reason = err.message.removeprefix(f"{target.node}: ")
        self._stats.connect_failures += 1
        # One line per outage, not per attempt: a node down for an hour is not a log flood.
        log.log(logging.WARNING if slot.failures == 1 else logging.DEBUG, "%s: %s", target.node,
                slot.last_reason)
        log.debug("%s: next connection attempt in %.1fs", target.node, delay)


# -- helpers outside the class: no pool state involved ----------------------------------


async def _open_and_wait(
    conn: asyncssh.SSHClientConnection, command: str, stdin: str | None
) -> asyncssh.SSHCompletedProcess:
    try:
        process = await conn.create_process(
            command,
            input=stdin or None,
            # Why DEVNULL: without input the remote stdin must see EOF, or a reader would hang.
            stdin=asyncssh.PIPE if stdin else asyncssh.DEVNULL,
            encoding="utf-8",
            errors="replace",
        )
    except asyncssh.ChannelOpenError as exc:
        if exc.code == asyncssh.OPEN_CONNECT_FAILED:  # raised before any exec was sent
            raise _NotStarted(exc.reason) from exc
        raise
    try:
        return await process.wait()
    finally:
        process.close()  # why: on timeout/cancel the session must not linger on the shared conn


def _text(data: object) -> str:
    if data is None:
        return ""
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return str(data)


def _timed_out(target: SshTarget, argv: tuple[str, ...], timeout_s: float) -> SshTimeout:
    msg = f"`{argv[0]}` did not finish within {timeout_s:g}s (it may still be running)"
    return SshTimeout(target.node, msg)


def _lost_mid_command(argv: tuple[str, ...], exc: BaseException | None) -> str:
    why = f": {_describe(exc)}" if exc is not None else ""
    return f"connection lost while `{argv[0]}` was running; it may or may not have run{why}"


def _abandon(answers: Sequence[Answer]) -> None:
    """Answers nobody will wait for (their shell was dropped): no "never retrieved" noise."""
    for answer in answers:
        if not answer.done():
            answer.cancel()
        elif not answer.cancelled():
            answer.exception()


def _checked(target: SshTarget, done: Completed) -> Completed | SshError:
    """`done`, or the SudoRefused it really is."""
    try:
        _raise_for_status(target, done, False)
    except SshError as err:
        return err
    return done


def _raise_for_status(target: SshTarget, done: Completed, check: bool) -> None:
    if target.sudo and done.exit_status == _SUDO_STATUS:
        match = _SUDO_REFUSAL.search(done.stderr)
        if match is not None:
            line = done.stderr[match.start():].splitlines()[0].strip()
            msg = f"sudo refused `{done.argv[0]}` for {target.user}: {line}"
            raise SudoRefused(target.node, msg)
    if check and done.exit_status != 0:
        raise CommandFailed(target.node, done.argv, done.exit_status, done.stderr)


# Why: asyncssh runs chacha20-poly1305 (its default first choice) in Python with a new cipher
# context per packet; AES-GCM runs inside OpenSSL. Measured ~3x less CPU per command. The
# rest of asyncssh's list stays as fallback for servers that offer no GCM.
_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes256-ctr",
            "chacha20-poly1305@openssh.com")


async def _connect(target: SshTarget,
                   early: Future[socket.socket] | None = None) -> asyncssh.SSHClientConnection:
    """`early`: this node's TCP connect, already under way (bot.early); its errors are the
    connect's, and the handshake over it checks the host key exactly as over our own."""
    known = _load_known_hosts(target)
    keys = _load_client_keys(target)
    try:
        started = time.monotonic()
        sock = await _early_socket(early, target.connect_timeout_s) if early is not None else None
        # One connect_timeout_s for the TCP connect and the handshake together, as without `early`.
        left = max(target.connect_timeout_s - (time.monotonic() - started), 0.001)
        return await asyncssh.connect(
            target.host,
            target.port,
            sock=sock,
            username=target.user,
            client_keys=keys,
            known_hosts=known,  # never None: that would accept any host key
            # Why: behave the same on every machine; no ~/.ssh/config, no agent keys.
            config=None,
            agent_path=None,
            preferred_auth="publickey",
            connect_timeout=left,
            login_timeout=target.connect_timeout_s,
            keepalive_interval=target.keepalive_interval_s,
            keepalive_count_max=target.keepalive_count_max,
            encryption_algs=_CIPHERS,
        )
    except (asyncssh.Error, OSError) as exc:
        raise _connect_error(target, known, exc) from exc


@dataclass(frozen=True, slots=True)
class _Opened:
    conn: asyncssh.SSHClientConnection
    shell: RemoteShell | None  # None: the node gave no read shell (the pool tries again)
    sent: tuple[str, ...] = ()  # command lines written down the shell ahead
    answers: tuple[Answer, ...] = ()  # theirs, in order


Ahead = dict[Connection, "asyncio.Task[_Opened]"]


def connect_ahead(targets: Iterable[tuple[SshTarget, Sequence[Sequence[str]]]],
                  early: EarlySockets) -> Ahead:
    """Start each target's connection and its first read shell now, on the running loop (the
    pool's), and write the given read commands down that shell: a cold status does this from
    its guess of the config while the settings are still importing and validating
    (bot.early). A target's TCP connect comes from `early` when it is there. Only read
    commands may be given: if the settings then ask anything else, they are never read."""
    ahead: Ahead = {}
    for target, reads in targets:
        if target.connection not in ahead:
            sock = early.pop((target.host, target.port), None)
            ahead[target.connection] = asyncio.create_task(_open_ahead(target, reads, sock))
    return ahead


async def _open_ahead(target: SshTarget, reads: Sequence[Sequence[str]],
                      early: Future[socket.socket] | None) -> _Opened:
    sent = tuple(build_command(argv, target.sudo) for argv in reads)
    conn = await _connect(target, early)
    try:
        shell = await RemoteShell.open(conn, target.connect_timeout_s)
        return _Opened(conn, shell, sent, tuple(shell.send(*sent)) if sent else ())
    except ShellLost:
        return _Opened(conn, None)  # the pool tries a shell again, and says so if it fails
    except BaseException:
        conn.close()
        raise


async def _unused(ahead: Ahead) -> list[asyncssh.SSHClientConnection]:
    """Stop what was opened ahead and never taken; the connections that had opened, to close."""
    tasks = list(ahead.values())
    ahead.clear()
    for task in tasks:
        task.cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    opened = [d for d in done if isinstance(d, _Opened)]
    for each in opened:
        _abandon(each.answers)
    return [each.conn for each in opened]


async def _early_socket(early: Future[socket.socket], timeout_s: float) -> socket.socket:
    try:
        async with asyncio.timeout(timeout_s):
            return await asyncio.wrap_future(early)
    except BaseException:
        close_when_done(early)  # timed out or cancelled: nobody else will take it
        raise


def _load_known_hosts(target: SshTarget) -> asyncssh.SSHKnownHosts:
    path = target.known_hosts
    if not path.is_file():
        raise HostKeyError(
            target.node,
            f"known_hosts file {path} is missing: refusing to connect to {target.address} "
            "without verifying its host key",
        )
    try:
        return _read_known_hosts(path, path.stat().st_mtime_ns)
    except (OSError, ValueError, asyncssh.KeyImportError) as exc:
        raise HostKeyError(target.node, f"cannot read known_hosts {path}: {exc}") from exc


@functools.lru_cache(maxsize=64)
def _read_known_hosts(path: Path, mtime_ns: int) -> asyncssh.SSHKnownHosts:
    """Parsed once per file version and shared by every connection: each connection keeps its
    known_hosts object, and a fleet's file parsed per connection cost ~300 KB a connection.
    A changed file (new mtime) is read again, so a rotated key takes effect on reconnect."""
    return asyncssh.read_known_hosts(str(path))


def _load_client_keys(target: SshTarget) -> Sequence[asyncssh.SSHKeyPair]:
    if not target.client_keys:
        raise AuthError(target.node, "no client keys configured")
    try:
        return asyncssh.load_keypairs([str(path) for path in target.client_keys])
    except (OSError, ValueError, asyncssh.KeyImportError) as exc:
        paths = ", ".join(str(path) for path in target.client_keys)
        raise AuthError(target.node, f"cannot load client key ({paths}): {exc}") from exc


def _connect_error(
    target: SshTarget, known: asyncssh.SSHKnownHosts, exc: BaseException
) -> SshError:
    node, where = target.node, target.address
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return HostKeyError(node, _host_key_message(target, known))
    if isinstance(exc, asyncssh.PermissionDenied):
        return AuthError(node, f"{target.user}@{where} refused our key: {_describe(exc)}")
    if isinstance(exc, TimeoutError):  # before OSError: TimeoutError is one
        return SshTimeout(node, f"connect to {where} took over {target.connect_timeout_s:g}s")
    return Unreachable(node, f"cannot connect to {where}: {_describe(exc)}")


def _host_key_message(target: SshTarget, known: asyncssh.SSHKnownHosts) -> str:
    listed = known.match(target.host, target.host, target.port)[0]
    problem = "does not match" if listed else "is not listed in"
    return (
        f"host key of {target.address} {problem} known_hosts {target.known_hosts}: "
        "refusing to connect"
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncssh.DisconnectError):
        return exc.reason or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
