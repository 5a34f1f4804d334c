"""The throwaway PostgreSQL fixture itself: a real server, fresh databases, stop and start."""

from __future__ import annotations

import os

import psycopg
import pytest

from tests.pg import PgServer


def test_each_test_gets_an_empty_database_on_a_running_server(pg_server: PgServer, pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
        who = conn.execute("SELECT current_user, inet_server_addr()::text").fetchone()
    assert tables == (0,)
    assert who == ("postgres", "127.0.0.1/32")
    assert pg_server.data.stat().st_uid != 0  # postgres never runs as root
    assert pg_server.data.stat().st_uid == (os.geteuid() if os.geteuid() else pg_server.uid)


def test_stop_refuses_connections_and_start_brings_it_back_on_the_same_url(pg_server: PgServer,
                                                                           pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (x int)")
        conn.execute("INSERT INTO kept VALUES (1)")
    pg_server.stop(mode="immediate")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(pg_url, connect_timeout=2)
    pg_server.start()
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT x FROM kept").fetchall() == [(1,)]
