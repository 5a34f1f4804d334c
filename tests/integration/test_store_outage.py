"""PostgreSQL down under a running bot (store_url, the real throwaway server, the fake Slack over
HTTP, the demo cluster over SSH): `/cluster status` keeps answering, a remediation request and an
approval click are refused in one line with nothing written, and once the server is back the bot
has reconnected by itself and the same click runs the command once. A node that crashed during the
outage is alerted once the database is back, once. `clusterbot audit` reads PostgreSQL too."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.approvals import State
from bot.leader import Role
from bot.store import AsyncStore
from tests.fakes.botharness import running_bot
from tests.fakes.signing import app_mention_event
from tests.integration.test_approvals import BOSS, CLEANUP, ask, settle, state, text_of
from tests.pg import PgServer

pytestmark = pytest.mark.integration


async def test_outage_refuses_decisions_in_one_line_and_status_keeps_answering(
        pg_server: PgServer, pg_url: str) -> None:
    async with running_bot(watch=False, cluster={"approvers": (BOSS,)}, store_url=pg_url) as h:
        await h.demo.demo_command(("fail", "virtual_ip_2"))
        req = await ask(h)
        root = next(c for c in h.slack.calls if "requested by" in text_of(c))
        await asyncio.to_thread(pg_server.stop, "immediate")  # like a crash of the database host
        try:
            mark = len(h.slack.calls)
            await h.slash("status prod-haproxy")
            final = await h.slack.wait_for("chat.update", lambda c: "prod-haproxy" in text_of(c),
                                           since=mark, timeout=15)
            assert "virtual_ip_2" in text_of(final)

            # A mention too, though whether Slack sent it before cannot be checked now.
            mark = len(h.slack.calls)
            await h.event(app_mention_event(text="status prod-haproxy", ts="1700000009.000100"))
            final = await h.slack.wait_for("chat.update", lambda c: "prod-haproxy" in text_of(c),
                                           since=mark, timeout=15)
            assert "virtual_ip_2" in text_of(final)

            mark = len(h.slack.calls)
            await h.slash("cleanup prod-haproxy virtual_ip_2")
            refused = await h.slack.wait_for("response_url", since=mark, timeout=15)
            said = json.dumps(refused.params)
            assert refused.params["response_type"] == "ephemeral"
            assert ("`cleanup` refused: the state database is unavailable" in said
                    or "`cleanup` refused: cannot connect to PostgreSQL" in said), said
            assert not [c for c in h.slack.calls[mark:] if "requested by" in text_of(c)]  # nothing posted

            mark = len(h.slack.calls)
            await h.click("clusterbot:approve", req.id, BOSS, message_ts=root.response["ts"])
            told = await h.slack.wait_for("chat.postEphemeral", lambda c: c.params.get("user") == BOSS,
                                          since=mark, timeout=15)
            line = str(told.params.get("text"))
            assert "your approve was not recorded" in line and "try again shortly" in line
            assert "\n" not in line
            await settle(h)
            assert h.node_commands(CLEANUP) == []
        finally:
            await asyncio.to_thread(pg_server.start)
        assert await state(h, req.id) is State.PENDING  # the refused click left no trace
        await h.click("clusterbot:approve", req.id, BOSS, message_ts=root.response["ts"])  # reconnects
        await h.slack.wait_for("chat.postMessage", lambda c: "verified" in text_of(c), timeout=30)
        await settle(h)
        assert await state(h, req.id) is State.SUCCEEDED
        assert h.node_commands(CLEANUP) == [f"sudo -n {CLEANUP}"]
        audit = [(e.actor, e.event) for e in await h.bot.runtime.store.audit_all() if e.request_id == req.id]
        assert audit.count((BOSS, "approve")) == 1


async def test_a_change_during_an_outage_is_alerted_once_the_database_is_back(
        pg_server: PgServer, pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="bot.watcher")
    async with running_bot(store_url=pg_url) as h:
        await h.watcher.wait_polls(2)  # healthy, and seen so
        await asyncio.to_thread(pg_server.stop, "immediate")
        try:
            h.demo.sim.crash("node3")
            # A poll that saw the crash but could not record it; then the leader, unable to confirm
            # its lock, stops watching (bot/leader.py) until the database is back.
            async with asyncio.timeout(15):
                while not [r for r in caplog.records if "not recorded" in r.getMessage()]:
                    await asyncio.sleep(0.05)
            assert not [c for c in h.roots() if "node3" in text_of(c)]
        finally:
            await asyncio.to_thread(pg_server.start)
        await h.slack.wait_for("chat.postMessage", lambda c: "node3 went OFFLINE" in text_of(c)
                               and not c.params.get("thread_ts"), timeout=30)
        # The leader lock's session died with the server: the bot takes it again (a new epoch)
        # and watches on with a new watcher.
        async with asyncio.timeout(30):
            while h.bot.leadership.role is not Role.LEADER or h.bot.leadership.epoch < 2:
                await asyncio.sleep(0.05)  # the role has no event to await; a bounded poll of it
        await h.watcher.wait_polls(3)
        assert len([c for c in h.roots() if "node3" in text_of(c)]) == 1  # once, not once per poll
    refused = [r.getMessage() for r in caplog.records if "not recorded" in r.getMessage()]
    assert all("the state database is unavailable" in m or "cannot connect to PostgreSQL" in m
               for m in refused) and not [r for r in caplog.records if r.exc_info]


def test_audit_export_reads_postgresql_and_is_one_line_when_it_is_down(
        pg_server: PgServer, pg_url: str, tmp_path: Path) -> None:
    async def seed() -> None:
        store = await AsyncStore.open(pg_url)
        await store.append_audit(now=datetime(2026, 12, 2, tzinfo=UTC), actor="U0BOSS", event="probe")
        await store.close()

    env = {"CLUSTERBOT_STORE_URL": pg_url, "CLUSTERBOT_STATE_DIR": str(tmp_path / "unused"),
           "PATH": "/usr/bin:/bin"}

    def audit() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bot", "audit", "--jsonl"], env=env, text=True,
                              capture_output=True, timeout=120, check=False)

    out = audit()  # a database the bot never ran against: said in one line, and left empty
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and "no clusterbot state yet" in out.stderr, out.stderr
    assert _tables(pg_url) == []
    asyncio.run(seed())
    out = audit()
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [(r["actor"], r["event"]) for r in rows] == [("U0BOSS", "probe")]
    pg_server.stop("immediate")
    try:
        out = audit()
    finally:
        pg_server.start()
    assert out.returncode != 0 and out.stdout == ""
    assert out.stderr.startswith("clusterbot: cannot connect to PostgreSQL: ") and out.stderr.count("\n") == 1


def _tables(url: str) -> list[str]:
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return sorted(r[0] for r in rows)
