"""A throwaway PostgreSQL server for tests: initdb + pg_ctl in a private temp dir, loopback only.

One server per test session (initdb costs ~1 s), a fresh database per test. As root (CI) the
server runs as the unprivileged `nobody`, since postgres refuses to run as root; otherwise as the
current user. It listens on a free 127.0.0.1 port (the failover tests put a TCP proxy in front of
it) and on a socket in its own directory, with fsync off: nothing here must survive a power cut.

    server.url("db")                     # postgresql://postgres@127.0.0.1:PORT/db
    server.stop(mode="immediate")        # an outage (immediate: like a crash, no checkpoint)
    server.start(); server.restart()

PostgreSQL missing is a test failure with the package to install, never a skip: CI installs it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

TOOLS = ("initdb", "pg_ctl", "postgres")
START_TIMEOUT_S = 60  # pg_ctl -w waits this long for the server to accept connections
RUN_AS_ROOT_USER = "nobody"
SUPERUSER = "postgres"
# Small and fast: a test server is one of several on a loaded 2-core machine. fsync off only: the
# OS keeps what was written through a server crash (stop -m immediate), so a commit still holds;
# synchronous_commit off would lose the last commits of a crash and fake alert loss in outage tests.
SERVER_OPTIONS = {
    "fsync": "off", "full_page_writes": "off",
    "shared_buffers": "16MB", "max_connections": "200", "listen_addresses": "'127.0.0.1'",
    "log_min_messages": "warning", "log_connections": "off",
}


def find_bindir() -> Path:
    """The directory with initdb, pg_ctl and postgres: pg_config's, else Debian's newest, else PATH."""
    candidates: list[Path] = []
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, timeout=10,
                             check=True)
        candidates.append(Path(out.stdout.strip()))
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
                    if Path(p).parent.name.isdigit() else 0, reverse=True)
    candidates += [Path(p) for p in debian]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for directory in candidates:
        if all((directory / tool).is_file() for tool in TOOLS):
            return directory
    pytest.fail("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found via pg_config, "
                "/usr/lib/postgresql/*/bin or PATH: install Debian's `postgresql` package (.ci/run does)",
                pytrace=False)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgServer:
    bindir: Path
    root: Path  # private: data/, sock/, server.log
    port: int = 0
    uid: int | None = None  # run the server as this user (set when we are root)
    gid: int | None = None
    running: bool = False
    databases: list[str] = field(default_factory=list)

    @classmethod
    def create(cls) -> PgServer:
        bindir = find_bindir()
        root = Path(tempfile.mkdtemp(prefix="clusterbot-pg-"))
        server = cls(bindir, root)
        if os.geteuid() == 0:
            user = pwd.getpwnam(RUN_AS_ROOT_USER)
            server.uid, server.gid = user.pw_uid, user.pw_gid
            os.chown(root, user.pw_uid, user.pw_gid)
        root.chmod(0o700)
        try:
            server._run("initdb", "-D", str(server.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                        "--no-locale", "--no-sync")
            (server.root / "sock").mkdir()
            if server.uid is not None:
                os.chown(server.root / "sock", server.uid, server.gid or 0)
            server.start()
        except BaseException:
            server.destroy()
            raise
        return server

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str = "postgres", *, port: int | None = None) -> str:
        """A libpq URL over TCP; `port`: reach it through something else on loopback (a proxy)."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{port or self.port}/{database}"

    def _run(self, tool: str, *args: str, timeout: float = START_TIMEOUT_S + 30) -> None:
        env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "TZ": "UTC"}
        out = subprocess.run([str(self.bindir / tool), *args], capture_output=True, text=True, env=env,
                             cwd=self.root, timeout=timeout, check=False, user=self.uid, group=self.gid,
                             extra_groups=[] if self.uid is not None else None)
        if out.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{tool} {' '.join(args)} exited {out.returncode}: "
                               f"{out.stderr.strip()}\n{log}")

    def start(self) -> None:
        """Start (again, on the same port once it has one: clients reconnect to the same URL)."""
        if self.running:
            return
        options = {**SERVER_OPTIONS, "unix_socket_directories": f"'{self.root / 'sock'}'"}
        for attempt in range(3):
            if not self.port or attempt:
                self.port = free_port()  # another process may take it before postgres binds: retry
            opts = " ".join(f"-c {k}={v}" for k, v in {**options, "port": str(self.port)}.items())
            try:
                self._run("pg_ctl", "start", "-w", "-t", str(START_TIMEOUT_S), "-D", str(self.data),
                          "-l", str(self.log), "-o", opts)
            except RuntimeError:
                if attempt == 2 or "could not bind" not in self.log.read_text(errors="replace"):
                    raise
                continue
            self.running = True
            return

    def stop(self, mode: str = "fast") -> None:
        """fast: disconnect clients and shut down cleanly; immediate: like a crash (recovery next start)."""
        if self.running:
            self._run("pg_ctl", "stop", "-w", "-m", mode, "-D", str(self.data))
            self.running = False

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def create_database(self) -> str:
        """A fresh empty database; its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.databases.append(name)
        return self.url(name)

    def drop_database(self, url: str) -> None:
        import psycopg

        name = url.rsplit("/", 1)[1]
        self.start()  # a test that left the server down
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def destroy(self) -> None:
        with contextlib.suppress(RuntimeError, OSError, subprocess.SubprocessError):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def pg_server() -> Iterator[PgServer]:
    server = PgServer.create()
    try:
        yield server
    finally:
        server.destroy()


@contextlib.contextmanager
def fresh_database(server: PgServer) -> Iterator[str]:
    url = server.create_database()
    try:
        yield url
    finally:
        server.drop_database(url)
