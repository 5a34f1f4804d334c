"""Persistent read shells: many read-only commands over one long-lived SSH session.

A status asks every node four questions (crm_mon, daemons, Corosync quorum and links) and a
watcher asks again every few seconds. Opening an SSH session per command costs the node a
fork of sshd plus a login shell, and costs us about ten packets and ~1 ms of CPU. A read
shell is one `exec /bin/sh` session kept open per (connection, concurrent command): each
command is written to its stdin as one framed line, and comes back as stdout and stderr that
each end in a marker carrying a fresh random nonce.

Why this is safe:
* Only read commands go this way (`SshPool.read`). Remediation always gets its own exec
  session, so what an approver approved runs alone, with its own exit status.
* The command line is still built by `bot.ssh.build_command` (argv, `shlex`-quoted, no
  newline), and its stdin is /dev/null so it can never read the next framed line.
* The nonce is 96 random bits per command, so a node's output (a resource named like a
  marker) cannot end a command early or forge an exit status.

The frame is POSIX sh. Our loopback SSH server (`bot.demo.sshd`) speaks the same frame via
`unframe`; the lab tests run it through OpenSSH and dash on a real cluster.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections import deque
from dataclasses import dataclass

import asyncssh

__all__ = ["SHELL_COMMAND", "RemoteShell", "ShellLost", "frame", "unframe"]

# The exec request that starts a read shell: whatever the login shell, it becomes /bin/sh
# reading commands from stdin (non-interactive: no prompt, no job control, no rc files).
SHELL_COMMAND = "exec /bin/sh"
_HANDSHAKE = ":"  # the shell's no-op builtin: proves the frame works before any real use


class ShellLost(Exception):
    """The shell session ended (or never framed an answer): the command may not have run."""


def new_nonce() -> str:
    return secrets.token_hex(12)


def frame(command: str, nonce: str) -> str:
    """One line of sh: run `command` with no stdin, then mark the end of stdout (with the
    exit status) and of stderr. The leading newline of each marker lets output that does
    not end in a newline still be cut exactly."""
    if "\n" in command or "\r" in command:
        raise ValueError("a framed command must be one line")
    if not re.fullmatch(r"[0-9a-f]{16,64}", nonce):
        raise ValueError("nonce must be lowercase hex")
    return (f"{command} </dev/null; s=$?; printf '\\n%s %d\\n' {nonce} \"$s\"; "
            f"printf '\\n%s\\n' {nonce} >&2\n")


_FRAME = re.compile(r"(?P<command>.+) </dev/null; s=\$\?; printf '\\n%s %d\\n' (?P<nonce>[0-9a-f]{16,64}) "
                    r"\"\$s\"; printf '\\n%s\\n' (?P=nonce) >&2")


def unframe(line: str) -> tuple[str, str] | None:
    """(command, nonce) of a framed line, or None: the serving side of `frame`."""
    match = _FRAME.fullmatch(line.rstrip("\n"))
    return None if match is None else (match["command"], match["nonce"])


def stdout_marker(nonce: str, status: int) -> str:
    return f"\n{nonce} {status}\n"


def stderr_marker(nonce: str) -> str:
    return f"\n{nonce}\n"


@dataclass(slots=True)
class _Pending:
    nonce: bytes
    done: asyncio.Future[tuple[int, bytes, bytes]]
    out: tuple[int, bytes] | None = None  # (exit status, stdout) once stdout's marker came
    err: bytes | None = None


class _ShellSession(asyncssh.SSHClientSession[bytes]):
    """Collects framed answers, in the order the commands were written, from the shell's
    stdout and stderr. Several may be outstanding: sh runs them one after another."""

    def __init__(self) -> None:
        self._out = bytearray()
        self._err = bytearray()
        self._queue: deque[_Pending] = deque()
        self._started = False  # a command was sent: from now on, idle output is an error
        self.ended = False

    @property
    def _pending(self) -> _Pending | None:
        return self._queue[0] if self._queue else None

    def expect(self, nonce: str) -> asyncio.Future[tuple[int, bytes, bytes]]:
        if self.ended:
            raise ShellLost("the shell session has ended")
        # Before the first command, keep what came (a login banner): the handshake's answer
        # absorbs it. Later the buffers are empty, or the shell was ended by idle output.
        self._started = True
        done: asyncio.Future[tuple[int, bytes, bytes]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(nonce.encode(), done))
        return done

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if self._pending is None and self._started:
            # Output while no command runs (something the last one left running in the
            # background): the next answer could not be told apart from it. Retire the shell.
            self.ended = True
            return
        if datatype == asyncssh.EXTENDED_DATA_STDERR:
            self._err += data
        else:
            self._out += data
        self._advance()

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        while self._queue:
            pending = self._queue.popleft()
            if not pending.done.done():
                pending.done.set_exception(ShellLost(f"the shell session ended: {exc or 'closed'}"))

    def exit_status_received(self, status: int) -> None:
        self.ended = True  # the shell exited; connection_lost follows and fails any waiter

    def _advance(self) -> None:
        """Complete the oldest outstanding commands whose both markers came; what follows a
        marker already belongs to the next command."""
        while (pending := self._pending) is not None:
            if pending.out is None:
                pending.out = _cut_stdout(self._out, pending.nonce)
            if pending.err is None:
                pending.err = _cut(self._err, b"\n" + pending.nonce + b"\n")
            if pending.out is None or pending.err is None:
                return
            self._queue.popleft()
            if not pending.done.done():
                status, out = pending.out
                pending.done.set_result((status, out, pending.err))


def _cut(buf: bytearray, marker: bytes) -> bytes | None:
    """If buf holds marker: everything before it (removed from buf with the marker); else None."""
    at = buf.find(marker)
    if at < 0:
        return None
    data = bytes(buf[:at])
    del buf[: at + len(marker)]
    return data


def _cut_stdout(buf: bytearray, nonce: bytes) -> tuple[int, bytes] | None:
    """Stdout's answer ends with "\\n<nonce> <status>\\n": the status and everything before it."""
    start = buf.find(b"\n" + nonce + b" ")
    if start < 0:
        return None
    end = buf.find(b"\n", start + len(nonce) + 2)
    if end < 0:
        return None  # the status has not fully arrived yet
    status = bytes(buf[start + len(nonce) + 2: end])
    if not re.fullmatch(rb"-?\d{1,4}", status):
        return None
    data = bytes(buf[:start])
    del buf[: end + 1]
    return int(status), data


class RemoteShell:
    """One open read shell; runs one command at a time (the pool hands it to one caller)."""

    def __init__(self, chan: asyncssh.SSHClientChannel[bytes], session: _ShellSession) -> None:
        self._chan = chan
        self._session = session
        self.commands = 0

    @classmethod
    async def open(cls, conn: asyncssh.SSHClientConnection, timeout_s: float) -> RemoteShell:
        """Start the shell and prove the frame round-trips; ShellLost if it does not (a forced
        command, a shell that is not sh, a node that refuses another session)."""
        session = _ShellSession()
        shell: RemoteShell | None = None
        try:
            async with asyncio.timeout(timeout_s):  # the session request and the handshake
                chan, _ = await conn.create_session(lambda: session, SHELL_COMMAND, encoding=None)
                shell = cls(chan, session)
                status, _, _ = await shell.run(_HANDSHAKE)
        except asyncssh.ChannelOpenError as exc:
            raise ShellLost(f"session refused: {exc.reason}") from exc
        except TimeoutError as exc:
            _close(shell)
            raise ShellLost(f"{SHELL_COMMAND} gave no framed answer within {timeout_s:g}s") from exc
        except (ShellLost, asyncssh.Error, OSError) as exc:
            _close(shell)
            raise ShellLost(f"no framed answer from {SHELL_COMMAND}: {exc}") from exc
        except BaseException:
            _close(shell)  # cancelled: never leave the session open on the node
            raise
        if status != 0:
            shell.close()
            raise ShellLost(f"{SHELL_COMMAND} answered the handshake with status {status}")
        return shell

    @property
    def alive(self) -> bool:
        return not self._session.ended and not self._chan.is_closing()

    async def run(self, command: str) -> tuple[int, bytes, bytes]:
        """(exit status, stdout, stderr). Cancelled or timed out, the shell must be closed:
        its next bytes would belong to the abandoned command."""
        (done,) = self.send(command)
        return await done

    def send(self, *commands: str) -> list[asyncio.Future[tuple[int, bytes, bytes]]]:
        """Write all the commands at once; their answers, in order. The node runs them back to
        back with no round trip in between. Same rule as `run` for abandoning any of them."""
        frames = []
        answers = []
        for command in commands:
            nonce = new_nonce()
            frames.append(frame(command, nonce))
            answers.append(self._session.expect(nonce))
        try:
            self._chan.write("".join(frames).encode())
        except (asyncssh.Error, OSError) as exc:
            raise ShellLost(f"cannot write to the shell session: {exc}") from exc
        self.commands += len(commands)
        return answers

    def close(self) -> None:
        self._session.ended = True
        self._chan.close()


def _close(shell: RemoteShell | None) -> None:
    if shell is not None:
        shell.close()
