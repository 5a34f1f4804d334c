"""Two real `clusterbot run` replicas on a real (throwaway) PostgreSQL: a killed leader, a
database restart under load, a leader cut off from the database, a planned handover and a
rolling upgrade with a schema migration (issue 15)."""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
from datetime import datetime
from pathlib import Path

import psycopg

from bot.leader import Timing
from tests.fakes.nodes import fake_cluster
from tests.fakes.slack import FakeSlack
from tests.fakes.tcpproxy import TcpProxy
from tests.integration.replicas import FAST, WAIT_S, Record, Replica, replicas
from tests.integration.test_failover import CRASH, approval_race, incident_then_kill_leader
from tests.pg import PgServer

ROOT = Path(__file__).parents[2]
TIMING = Timing(retry_s=float(FAST["leader_retry_s"]), check_s=float(FAST["leader_check_s"]),
                timeout_s=float(FAST["leader_timeout_s"]))


def at(record: Record) -> float:
    return datetime.fromisoformat(str(record["ts"])).timestamp()


def delivered(replica: Replica, after: int = 0) -> list[Record]:
    return [r for r in replica.records[after:] if str(r.get("msg")).startswith("alert ")
            and " delivered to " in str(r.get("msg"))]


async def test_pg_follower_takes_over_a_killed_leaders_incident(tmp_path: Path, pg_url: str) -> None:
    async with fake_cluster(tmp_path) as fc, FakeSlack() as slack, \
            replicas(slack, fc, tmp_path, store=pg_url) as group:
        await incident_then_kill_leader(group)


async def test_pg_an_approval_clicked_through_both_replicas_runs_once(tmp_path: Path, pg_url: str) -> None:
    await approval_race(tmp_path, pg_url)


async def test_pg_sigterm_hands_over_without_a_duplicate_or_a_gap(tmp_path: Path, pg_url: str) -> None:
    async with fake_cluster(tmp_path) as fc, FakeSlack() as slack, \
            replicas(slack, fc, tmp_path, store=pg_url) as group:
        a = await group.start("a")
        await a.leading()
        b = await group.start("b")
        fc.set_scenario(CRASH)
        root = await group.wait_post(lambda c: not c.params.get("thread_ts"))
        a.proc.send_signal(signal.SIGTERM)
        fc.set_scenario("a_healthy")  # while the leader hands over: someone must still say it
        assert await a.stop() == 0
        await b.leading()
        thread = root.response["ts"]
        await group.slack.wait_for("chat.update", lambda c: c.params.get("ts") == thread
                                   and "resolved" in str(c.params.get("text")).lower(), timeout=WAIT_S)
        back = [c for c in group.replies(thread) if "node3 is back ONLINE" in str(c.params.get("text"))]
        assert len(back) == 1 and len(group.roots()) == 1
        texts = [str(c.params.get("text")) for c in group.posts()]
        assert len(texts) == len(set(texts)), texts


async def test_pg_a_leader_cut_off_from_the_database_posts_nothing_more(tmp_path: Path, pg_url: str,
                                                                        pg_server: PgServer) -> None:
    async with TcpProxy("127.0.0.1", pg_server.port) as proxy, fake_cluster(tmp_path) as fc, \
            FakeSlack() as slack, replicas(slack, fc, tmp_path, store=pg_url) as group:
        behind = pg_url.replace(f":{pg_server.port}/", f":{proxy.port}/")
        a = await group.start("a", CLUSTERBOT_STORE_URL=behind)
        await a.leading()
        b = await group.start("b")
        fc.set_scenario(CRASH)
        await a.wait_log(lambda r: r.get("kind") == "root" and " delivered to " in str(r.get("msg")))
        mark = len(a.records)
        proxy.cut()
        lost = await a.wait_log(lambda r: r.get("role") == "follower", after=mark)
        # The server frees the lock once its keepalives give up on the silent client; the proxy
        # stands in for them (its own kernel would answer the probes).
        await asyncio.sleep(TIMING.lock_free_s - TIMING.step_down_s)  # the server's wait, not a sync
        await proxy.sever_upstream()
        fc.set_scenario("a_healthy")
        gained = await b.wait_log(lambda r: r.get("role") == "leader")
        assert at(lost) < at(gained), "the cut-off leader must stop before the follower starts"
        await b.wait_log(lambda r: " delivered to " in str(r.get("msg"))
                         and "node3 is back ONLINE" in str(r.get("msg")))  # the new leader posts it
        assert not delivered(a, mark), "the deposed leader posted after it was cut off"
        assert not [r for r in a.records[mark:] if str(r.get("msg")).startswith("slack chat.")]
        assert len(group.roots()) == 1


async def test_pg_restart_under_load_loses_no_alert_and_keeps_answering(
        tmp_path: Path, pg_url: str, pg_server: PgServer) -> None:
    async with fake_cluster(tmp_path) as fc, FakeSlack() as slack, \
            replicas(slack, fc, tmp_path, store=pg_url) as group:
        a = await group.start("a")
        await a.leading()
        b = await group.start("b")
        stop = asyncio.Event()
        acks: list[int] = []

        async def load() -> None:  # status requests through both replicas the whole time
            n = 0
            while not stop.is_set() and n < 400:
                acks.append(await (a, b)[n % 2].slash(slack, "status prod-haproxy", "U0USER"))
                n += 1

        loading = asyncio.create_task(load())
        try:
            await asyncio.to_thread(pg_server.stop, "fast")
            fc.set_scenario(CRASH)  # happens while nobody can lead
            await asyncio.sleep(2 * float(FAST["poll_interval_s"]))  # the outage lasts a while
            await asyncio.to_thread(pg_server.start)
            root = await group.wait_post(lambda c: "node3 went OFFLINE" in str(c.params.get("text")))
        finally:
            stop.set()
            await loading
        assert acks and set(acks) == {200}, acks  # status needs no database
        assert len(group.roots()) == 1 and not root.params.get("thread_ts")
        leaders = [(at(r), r["role"], name) for name, rep in (("a", a), ("b", b)) for r in rep.records
                   if r.get("role")]
        assert _never_two_leaders(leaders), leaders
        for rep in (a, b):
            assert rep.proc.returncode is None, rep.stderr  # reconnected by itself


def _never_two_leaders(changes: list[tuple[float, str, str]]) -> bool:
    leading: set[str] = set()
    for _, role, name in sorted(changes):
        (leading.add if role == "leader" else leading.discard)(name)
        if len(leading) > 1:
            return False
    return True


async def test_pg_rolling_upgrade_with_a_schema_migration(tmp_path: Path, pg_url: str) -> None:
    newer = _newer_release(tmp_path / "newer")
    async with fake_cluster(tmp_path) as fc, FakeSlack() as slack, \
            replicas(slack, fc, tmp_path, store=pg_url) as group:
        a = await group.start("a")
        await a.leading()
        b = await group.start("b")
        fc.set_scenario(CRASH)
        root = await group.wait_post(lambda c: not c.params.get("thread_ts"))
        thread = root.response["ts"]
        assert await b.stop() == 0  # 1. the follower is upgraded: it migrates the schema on start
        b2 = await group.start("b-new", cwd=str(newer))
        await b2.wait_log(lambda r: "schema upgraded" in str(r.get("msg")))
        assert "upgrade_note" in _columns(pg_url)
        fc.set_scenario("a_healthy")  # the old release still leads, on the migrated schema
        await a.wait_log(lambda r: " delivered to " in str(r.get("msg"))
                         and "node3 is back ONLINE" in str(r.get("msg")))
        assert await a.stop() == 0  # 2. the old leader hands over to the upgraded one
        gained = len(b2.records)
        await b2.leading()
        fc.set_scenario(CRASH)  # the upgraded leader watches on
        await b2.wait_log(lambda r: " delivered to " in str(r.get("msg")), after=gained)
        a2 = await group.start("a-new", cwd=str(newer))  # 3. the other one upgraded too: it follows
        assert not a2.said("leadership gained") and not a2.said("schema upgraded")
        back = [c for c in group.replies(thread) if "node3 is back ONLINE" in str(c.params.get("text"))]
        assert len(back) == 1


def _newer_release(where: Path) -> Path:
    """This source tree with one more (additive) schema migration: the next release. Replicas
    started with it as their working directory import it (`python -m` puts the cwd first)."""
    for package in ("bot", "commands"):
        shutil.copytree(ROOT / package, where / package, ignore=shutil.ignore_patterns("__pycache__"))
    store = where / "bot" / "store" / "__init__.py"
    migration = ('def _schema_next(d: object) -> tuple[str, ...]:\n'
                 '    return ("ALTER TABLE incidents ADD COLUMN upgrade_note TEXT",)\n\n\n')
    text, n = re.subn(r"^_MIGRATIONS = \((.*)\)$",
                      lambda m: f"{migration}_MIGRATIONS = ({m[1]}, _schema_next)",
                      store.read_text(), count=1, flags=re.M)
    assert n == 1, "the store's migration list moved: update this test"
    store.write_text(text)
    return where


def _columns(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT column_name FROM information_schema.columns "
                            "WHERE table_name = 'incidents'").fetchall()
    return {r[0] for r in rows}

