"""deploy/sudoers.d/clusterbot installed for a throwaway user: the real sudo judges, then it all goes.

Used by tests/integration/test_sudoers.py (every line, `sudo -l -U`) and tests/lab (the bot as
that user with `sudo = true` on the real cluster).
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.integration.buildkit import sh

SUDOERS = Path(__file__).parents[1] / "deploy" / "sudoers.d" / "clusterbot"
SECURE_PATH = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")
INCLUDE_DIR = Path("/etc/sudoers.d")


def skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root: adds a throwaway user and an /etc/sudoers.d include (CI runs it)"
    if not all(shutil.which(t) for t in ("sudo", "visudo", "runuser")):
        return "needs sudo, visudo and runuser (Debian: apt-get install sudo)"
    version = subprocess.run(["sudo", "-V"], capture_output=True, text=True, check=False).stdout
    found = re.search(r"Sudo version (\d+)\.(\d+)\.(\d+)", version)
    if not found or tuple(map(int, found.groups())) < (1, 9, 10):
        return f"needs sudo >= 1.9.10 for regular expressions: {version.splitlines()[:1]}"
    if not re.search(r"^[@#]includedir /etc/sudoers\.d$", Path("/etc/sudoers").read_text(), re.MULTILINE):
        return "/etc/sudoers does not include /etc/sudoers.d"
    return None


def for_user(text: str, user: str) -> str:
    """The file with USER in place of clusterbot; nothing else changed."""
    for old, new in (("Defaults:clusterbot ", f"Defaults:{user} "), ("\nclusterbot ALL", f"\n{user} ALL")):
        assert old in text, f"{old!r} not found: update for_user()"
        text = text.replace(old, new)
    return text


@contextmanager
def _passwd_lock() -> Iterator[None]:
    """The lock shadow-utils (useradd, passwd, ...) take before they change /etc/passwd."""
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.lckpwdf() == 0, f"lckpwdf: {os.strerror(ctypes.get_errno())}"
    try:
        yield
    finally:
        libc.ulckpwdf()


def _rewrite(path: Path, keep: Callable[[str], bool], add: str = "") -> None:
    """Change PATH in place (same inode), keeping its mode and owner."""
    with path.open("r+") as fh:
        lines = [ln for ln in fh.read().splitlines(keepends=True) if keep(ln)]
        fh.seek(0)
        fh.write("".join(lines) + add)
        fh.truncate()


@contextmanager
def system_user(shell: str) -> Iterator[str]:
    """A throwaway system user, added to /etc/passwd and /etc/shadow in place and removed the same
    way. Not useradd/userdel: they replace those files by rename, and a rename detaches every bind
    mount of the old file in other mount namespaces: the lab's nodes would lose their own
    /etc/shadow and with it root's SSH login, in the middle of someone's lab session."""
    user = f"cbsudo{uuid.uuid4().hex[:8]}"
    passwd, shadow = Path("/etc/passwd"), Path("/etc/shadow")
    with _passwd_lock():
        used = {int(ln.split(":")[2]) for ln in passwd.read_text().splitlines() if ln.count(":") >= 6}
        uid = next(u for u in range(64000, 65000) if u not in used)
        _rewrite(passwd, lambda _: True, f"{user}:x:{uid}:65534:clusterbot test:/nonexistent:{shell}\n")
        _rewrite(shadow, lambda _: True, f"{user}:*:20000:0:99999:7:::\n")  # no password, not locked
    try:
        yield user
    finally:
        with _passwd_lock():
            for path in (passwd, shadow):
                _rewrite(path, lambda ln: not ln.startswith(f"{user}:"))


@contextmanager
def installed(text_for: Callable[[str], str], shell: str) -> Iterator[str]:
    """A throwaway system user and `text_for(user)` as its /etc/sudoers.d include (visudo-checked
    before and after); yields the user's name, and removes both whatever happens."""
    with system_user(shell) as user:
        include = INCLUDE_DIR / user  # no dot in the name: sudo skips such files
        staging = INCLUDE_DIR / f"{user}.tmp"  # a dot: ignored by sudo until renamed
        try:
            with tempfile.TemporaryDirectory() as tmp:
                staged = Path(tmp) / "sudoers"
                staged.write_text(text_for(user))
                sh("visudo", "-c", "-q", "-f", staged)
                shutil.copyfile(staged, staging)
            staging.chmod(0o440)
            staging.rename(include)
            sh("visudo", "-c", "-q")  # the whole configuration, with it: else it goes at once (finally)
            yield user
        finally:
            include.unlink(missing_ok=True)
            staging.unlink(missing_ok=True)
