"""bot.shell's frame against a real /bin/sh (a local subprocess; nothing leaves the host).

The frame is POSIX sh, so the way to know it is right is to run it: each test writes framed
lines into a real shell and feeds its stdout and stderr, in whatever chunks the pipes give,
to the same session object the SSH pool uses.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import asyncssh
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.shell import _ShellSession, frame, new_nonce, unframe
from bot.ssh import build_command

WAIT_S = 10


class LocalShell:
    """/bin/sh on pipes, its output fed to a _ShellSession chunk by chunk."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.session = _ShellSession()
        assert proc.stdout is not None and proc.stderr is not None
        self._pumps = [asyncio.create_task(self._pump(proc.stdout, None)),
                       asyncio.create_task(self._pump(proc.stderr, asyncssh.EXTENDED_DATA_STDERR))]

    async def _pump(self, stream: asyncio.StreamReader, datatype: int | None) -> None:
        while chunk := await stream.read(4096):
            self.session.data_received(chunk, datatype)

    async def run(self, argv: list[str], nonce: str | None = None) -> tuple[int, bytes, bytes]:
        nonce = nonce or new_nonce()
        done = self.session.expect(nonce)
        assert self.proc.stdin is not None
        self.proc.stdin.write(frame(build_command(argv, sudo=False), nonce).encode())
        async with asyncio.timeout(WAIT_S):
            return await done

    async def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        async with asyncio.timeout(WAIT_S):
            await self.proc.wait()
            await asyncio.gather(*self._pumps)


@pytest.fixture
async def sh() -> AsyncIterator[LocalShell]:
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    shell = LocalShell(proc)
    try:
        yield shell
    finally:
        await shell.close()


async def test_output_without_trailing_newline_is_cut_exactly(sh: LocalShell) -> None:
    assert await sh.run(["printf", "%s", "no newline"]) == (0, b"no newline", b"")
    assert await sh.run(["printf", "a\\nb\\n\\n"]) == (0, b"a\nb\n\n", b"")
    assert await sh.run(["printf", ""]) == (0, b"", b"")


async def test_exit_status_and_stderr_belong_to_their_command(sh: LocalShell) -> None:
    assert await sh.run(["sh", "-c", "echo out; echo err >&2; exit 3"]) == (3, b"out\n", b"err\n")
    assert await sh.run(["true"]) == (0, b"", b"")
    status, out, err = await sh.run(["clusterbot-no-such-command"])
    assert (status, out) == (127, b"") and b"not found" in err


async def test_a_command_reading_stdin_cannot_swallow_the_next_line(sh: LocalShell) -> None:
    assert await sh.run(["cat"]) == (0, b"", b"")  # sees /dev/null, not our next frame
    assert await sh.run(["echo", "still", "here"]) == (0, b"still here\n", b"")


async def test_a_marker_with_another_nonce_does_not_end_the_command(sh: LocalShell) -> None:
    forged = new_nonce()
    script = f"printf '\\n{forged} 0\\n'; printf '\\n{forged}\\n' >&2; sleep 0.05; echo real"
    status, out, err = await sh.run(["sh", "-c", script])
    assert status == 0
    assert out == f"\n{forged} 0\nreal\n".encode()
    assert err == f"\n{forged}\n".encode()


async def test_large_output_arrives_whole(sh: LocalShell) -> None:
    script = "i=0; while [ $i -lt 20000 ]; do echo line$i; i=$((i+1)); done"
    status, out, _ = await sh.run(["sh", "-c", script])
    lines = out.decode().splitlines()
    assert status == 0 and len(lines) == 20000 and lines[-1] == "line19999"


async def test_arguments_arrive_as_literal_words(sh: LocalShell) -> None:
    hostile = "$(touch /tmp/clusterbot-pwned); `id` ; ' \" | & > x"
    assert await sh.run(["printf", "%s", hostile]) == (0, hostile.encode(), b"")


def test_frame_is_one_line_and_refuses_what_would_break_it() -> None:
    line = frame("crm_mon --one-shot", "ab" * 12)
    assert line.endswith("\n") and line.count("\n") == 1
    with pytest.raises(ValueError):
        frame("echo a\necho b", "ab" * 12)
    with pytest.raises(ValueError):
        frame("echo a", "not hex; rm -rf /")


def test_nonces_are_fresh_lowercase_hex() -> None:
    nonces = {new_nonce() for _ in range(1000)}
    assert len(nonces) == 1000
    assert all(re.fullmatch(r"[0-9a-f]{24}", n) for n in nonces)


@given(st.lists(st.text(alphabet=st.characters(blacklist_characters="\n\r\0",
                                               blacklist_categories=("Cs",)), max_size=20),
                min_size=1, max_size=6), st.sampled_from([True, False]))
def test_unframe_reads_back_what_frame_wrote(argv: list[str], sudo: bool) -> None:
    if sudo and argv[0].startswith("-"):
        argv[0] = "x" + argv[0]
    command, nonce = build_command(argv, sudo), new_nonce()
    assert unframe(frame(command, nonce)) == (command, nonce)


def test_unframe_refuses_anything_else() -> None:
    assert unframe("rm -rf /\n") is None
    assert unframe(frame("echo hi", "ab" * 12).replace("ab" * 12, "cd" * 12, 1)) is None


def test_answer_split_across_chunks_waits_for_both_markers() -> None:
    async def scenario() -> tuple[int, bytes, bytes]:
        session = _ShellSession()
        nonce = new_nonce()
        done = session.expect(nonce)
        stdout = f"<xml/>\n{nonce} 0\n".encode()
        for i in range(len(stdout)):  # one byte at a time: every cut point
            session.data_received(stdout[i:i + 1], None)
            assert not done.done()  # stderr's marker has not come yet
        session.data_received(f"warn\n{nonce}\n".encode(), asyncssh.EXTENDED_DATA_STDERR)
        return await done
    assert asyncio.run(scenario()) == (0, b"<xml/>", b"warn")


def test_session_end_fails_the_waiting_command() -> None:
    async def scenario() -> None:
        session = _ShellSession()
        done = session.expect(new_nonce())
        session.connection_lost(None)
        with pytest.raises(Exception, match="shell session ended"):
            await done
    asyncio.run(scenario())


async def test_output_after_an_answer_retires_the_shell(sh: LocalShell) -> None:
    # The command returns at once; its background child writes after the answer is complete.
    assert await sh.run(["sh", "-c", "(sleep 0.1; echo late) & exit 0"]) == (0, b"", b"")
    async with asyncio.timeout(WAIT_S):
        while not sh.session.ended:
            await asyncio.sleep(0.01)
    with pytest.raises(Exception, match="ended"):
        sh.session.expect(new_nonce())  # that output would have been read as the next answer


async def test_a_login_banner_before_the_first_command_is_absorbed() -> None:
    session = _ShellSession()
    session.data_received(b"Welcome to node1\n", None)  # printed before `exec /bin/sh`
    nonce = new_nonce()
    done = session.expect(nonce)
    session.data_received(f"\n{nonce} 0\n".encode(), None)
    session.data_received(f"\n{nonce}\n".encode(), asyncssh.EXTENDED_DATA_STDERR)
    status, out, _ = await done
    assert status == 0 and out == b"Welcome to node1\n" and not session.ended
