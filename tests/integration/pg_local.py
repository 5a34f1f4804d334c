"""Stopgap until tests/pg.py (the shared throwaway PostgreSQL) reaches main: a real server from
initdb + pg_ctl as the unprivileged `postgres` user, on a free loopback port. Replaced, not kept."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest


class PgServer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.port = _free_port()

    def _as_postgres(self, *argv: str) -> None:
        run = ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else list(argv)
        subprocess.run(run, check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        self._as_postgres("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        self._as_postgres("pg_ctl", "-D", str(self.data), "-w", "-l", str(self.root / "log"), "-o",
                          f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off",
                          "start")

    def stop(self) -> None:
        self._as_postgres("pg_ctl", "-D", str(self.data), "-w", "-m", "fast", "stop")

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def new_database(self) -> str:
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    if shutil.which("initdb") is None:
        pytest.fail("PostgreSQL binaries (initdb, pg_ctl) are not on PATH")
    root = Path(tempfile.mkdtemp(prefix="cbpg-"))
    shutil.chown(root, "postgres") if os.geteuid() == 0 else None
    server = PgServer(root)
    server.init()
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
