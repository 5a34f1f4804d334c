"""Shared test setup: environment hygiene, fixture locations, real crm_mon captures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import pg
from tests.pg import PgServer

FIXTURES = Path(__file__).parent / "fixtures"
PCMK = FIXTURES / "pacemaker-2.1.5"
SCENARIOS = sorted(p.name for p in PCMK.iterdir() if p.is_dir())
NODES = ("node1", "node2", "node3")


def capture(scenario: str, node: str, kind: str = "crm_mon.xml") -> bytes:
    """A real capture from the 3-node Pacemaker 2.1.5 lab."""
    return (PCMK / scenario / f"{node}.{kind}").read_bytes()


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory,
                   ) -> Iterator[None]:
    # Settings read CLUSTERBOT_* and SLACK_*: a developer's shell must not leak into tests.
    for key in list(os.environ):
        # slack_sdk honours *_PROXY but not NO_PROXY: loopback traffic must never go to a proxy.
        if key.startswith(("CLUSTERBOT_", "SLACK_")) or key.lower() in (
                "http_proxy", "https_proxy", "all_proxy"):
            monkeypatch.delenv(key)
    # Nor may a test that leaves state_dir at its default share the host's /var/lib/clusterbot
    # (run as root, it would, and with whatever schema another checkout left there).
    monkeypatch.setenv("CLUSTERBOT_STATE_DIR", str(tmp_path_factory.mktemp("state")))
    yield


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One throwaway PostgreSQL for the session (tests/pg.py); fails, never skips, when missing."""
    with pg.pg_server() as server:
        yield server


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh empty database on the session's server (running again afterwards if a test stopped it)."""
    with pg.fresh_database(pg_server) as url:
        yield url
