"""README "Running it in production", the nodes' side: the `clusterbot` user with a /bin/sh shell,
no password but not locked, and the bot's key as `restrict,from="BOT_IP" KEY`. Against a real
OpenSSH sshd on 127.0.0.1 the bot's own SSH client runs its read shells and exec sessions through
that line; from any other address the key is refused.
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bot.errors import AuthError
from bot.ssh import SshPool, SshTarget
from tests import sudokit
from tests.integration.buildkit import sh

SSHD = Path("/usr/sbin/sshd")
START_TIMEOUT_S = 10.0

pytestmark = pytest.mark.skipif(
    (why := sudokit.skip_reason() or (None if SSHD.exists() else "needs OpenSSH's sshd")) is not None,
    reason=why or "")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def sshd(bot_ip: str) -> Iterator[tuple[str, SshTarget]]:
    """sshd on a free loopback port; a node user whose authorized_keys is the README's line."""
    with sudokit.system_user("/bin/sh") as user, tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        d.chmod(0o755)  # the user reads its authorized_keys (sshd reads it as the user)
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", d / "host_key")
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "clusterbot@test", "-f", d / "id_ed25519")
        keys = d / "authorized_keys"
        keys.write_text(f'restrict,from="{bot_ip}" {(d / "id_ed25519.pub").read_text()}')
        keys.chmod(0o644)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation; systemd makes it
        port = free_port()
        (d / "sshd_config").write_text(
            f"ListenAddress 127.0.0.1:{port}\nHostKey {d / 'host_key'}\nPidFile {d / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {keys}\nAllowUsers {user}\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\n"
            "StrictModes no\n")  # /tmp above the key file is world-writable; production has ~/.ssh
        (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {(d / 'host_key.pub').read_text()}")
        server = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(d / "sshd_config")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not listening(port):
                if server.poll() is not None or time.monotonic() > deadline:
                    server.kill()
                    pytest.fail(f"sshd did not start: {server.communicate(timeout=10)[1]}")
                time.sleep(0.05)
            yield user, SshTarget(node="node1", host="127.0.0.1", port=port, user=user,
                                  client_keys=(d / "id_ed25519",), known_hosts=d / "known_hosts", sudo=False)
        finally:
            server.terminate()
            server.communicate(timeout=10)


async def test_the_readme_login_line_lets_the_bot_read_and_run() -> None:
    with sshd("127.0.0.1") as (user, target):
        async with SshPool() as pool:
            read = await pool.read(target, ("id", "-un"), timeout_s=10)
            ran = await pool.run(target, ("sh", "-c", "echo $0", "exec session"), timeout_s=10)
            stats = pool.stats
    assert read.exit_status == 0 and read.stdout.strip() == user
    assert stats.shell_commands == 1  # the read went over a read shell (`exec /bin/sh`)
    assert ran.exit_status == 0 and ran.stdout.strip() == "exec session"


async def test_the_key_is_refused_from_another_address() -> None:
    with sshd("10.224.77.250") as (_, target):
        async with SshPool() as pool:
            with pytest.raises(AuthError):
                await pool.read(target, ("id", "-un"), timeout_s=10)

