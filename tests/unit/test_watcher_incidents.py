"""The watcher's incidents over real poll sequences from the 3-node lab: where each message goes,
who is paged, how a flap ends, and that a store error loses no alert.

Watcher.observe() is driven directly with the real captures (as tests/unit/test_diff.py does), a
real SQLite store and a fake clock; the outbox rows are what Slack would get, in order.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.collect import Ask
from bot.errors import StoreUnavailable
from bot.pacemaker.health import Severity
from bot.pacemaker.merge import ClusterReport
from bot.pacemaker.model import FenceEvent, NodeView
from bot.pacemaker.snapshot import snapshot
from bot.settings import ClusterConfig, Settings
from bot.store import AsyncStore, Incident, IncidentState, Store
from bot.watcher import Watcher
from tests.fakes.stores import SyncView
from tests.unit.test_diff import PROD, report, with_node

MENTION = "<!subteam^S0ONCALL>"
CLUSTER = ClusterConfig(name="prod-haproxy", nodes=("node1", "node2", "node3"), vips=PROD.vips,
                        everywhere=PROD.everywhere, mention=MENTION)
WINDOW_S = 600.0  # the default flap window
VIP2_PAGE = f"{MENTION} :red_circle: *prod-haproxy*: virtual_ip_2 STOPPED (was on node2)"
Change = Callable[[NodeView], NodeView]


class Clock:
    def __init__(self) -> None:
        self.wall = datetime(2024, 1, 1, tzinfo=UTC)
        self.mono = 0.0

    def now(self) -> datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def tick(self, seconds: float = 5.0) -> None:
        self.wall += timedelta(seconds=seconds)
        self.mono += seconds


@dataclass
class Bot:
    watcher: Watcher
    store: SyncView  # what the watcher wrote, read through its own store
    clock: Clock

    def see(self, *reports: ClusterReport) -> None:
        for r in reports:
            self.clock.tick()
            asyncio.run(self.watcher.observe(CLUSTER, r))

    def outbox(self) -> list[tuple[str, int | None, str]]:
        """(kind, incident id, verdict) of every queued message, in order."""
        return [(item.kind, _incident_of(item.payload), _verdict(item.payload))
                for item in self.store.due(self.clock.now(), limit=1000)]

    def thread(self, inc: Incident) -> list[str]:
        return [text for kind, i, text in self.outbox() if kind == "reply" and i == inc.id]

    def channel(self) -> list[str]:
        """Messages that reach the channel itself: roots, and the thread replies also sent to
        the channel (a plain thread reply notifies nobody)."""
        return [_verdict(item.payload) for item in self.store.due(self.clock.now(), limit=1000)
                if item.kind == "root" or item.payload.get("broadcast")]

    def roots(self) -> list[str]:
        """Top-level messages: one per incident, whatever it grew into."""
        return [text for kind, _, text in self.outbox() if kind == "root"]

    def open(self, key: str) -> Incident | None:
        return self.store.find_open_incident(CLUSTER.name, key)

    def incident(self, key: str) -> Incident:
        """The latest incident with this key, open or resolved."""
        found = [i for i in map(self.store.get_incident, range(1, 100)) if i is not None and i.key == key]
        assert found, f"no incident {key}"
        return found[-1]


def _incident_of(payload: Mapping[str, Any]) -> int | None:
    inc = payload.get("incident")
    return int(inc) if inc is not None else None


def _verdict(payload: Mapping[str, Any]) -> str:
    return str(payload["doc"]["verdict"])


def make(target: str | Path = ":memory:", clock: Clock | None = None,
         opener: Callable[[str | Path], Store] = Store.open) -> Bot:
    clock = clock or Clock()
    store = AsyncStore(target, opener)
    watcher = Watcher(settings=Settings(clusters=(CLUSTER,)), collect=_no_collect, store=store,
                      clock=clock.now, monotonic=clock.monotonic)
    return Bot(watcher, SyncView(store), clock)


async def _no_collect(cluster: ClusterConfig, *, ask: Ask) -> ClusterReport:
    raise AssertionError("observe() only")


def compose(*changes: Change) -> Change:
    def change(v: NodeView) -> NodeView:
        for c in changes:
            v = c(v)
        return v
    return change


def fence(status: str, reason: str | None = None) -> Change:
    done = datetime(2024, 1, 1, 0, 0, 12, tzinfo=UTC)
    return lambda v: replace(v, fence_history=(FenceEvent("reboot", "node3", status, exit_reason=reason,
                                                          completed=done),))


def vip2_stopped(v: NodeView) -> NodeView:
    return replace(v, instances=tuple(replace(i, active=False, nodes=()) if i.id == "virtual_ip_2" else i
                                      for i in v.instances))


def clone_down_on(node: str) -> Change:
    def change(v: NodeView) -> NodeView:
        down = [i.id == "loadbalancer" and node in i.nodes for i in v.instances]
        return replace(v, instances=tuple(replace(i, active=False) if d else i
                                          for i, d in zip(v.instances, down, strict=True)))
    return change


NODE1_STANDBY = with_node("node1", standby=True)  # a long maintenance: the cluster is never healthy


# ---------------------------------------------------------------- recovery text


def test_a_recovery_while_another_problem_remains_does_not_say_healthy() -> None:
    bot = make()
    bot.see(report("a_healthy"), report("b_standby"), report("b_standby", with_node("node3", online=False)))
    back = report("a_healthy", with_node("node3", online=False))  # node2 leaves standby, node3 still down
    bot.see(back)
    assert not back.healthy
    node2 = bot.incident("node:node2")
    assert node2.state is IncidentState.RESOLVED
    said = bot.thread(node2)[-1]
    assert "healthy again" not in said
    assert "this part recovered after 10s" in said and "node3 is OFFLINE" in said
    # The notification says the same: a phone must not show "recovered" while node3 is down.
    (pushed,) = [item.payload["doc"]["fallback"] for item in bot.store.due(bot.clock.now(), limit=1000)
                 if _verdict(item.payload) == said]
    assert "this part recovered after 10s; still wrong:" in pushed and "node3 is OFFLINE" in pushed


def test_a_recovery_of_the_whole_cluster_is_notified_as_healthy() -> None:
    bot = make()
    bot.see(report("a_healthy"), report("b_standby"), report("a_healthy"))
    node2 = bot.incident("node:node2")
    said = bot.thread(node2)[-1]
    (pushed,) = [item.payload["doc"]["fallback"] for item in bot.store.due(bot.clock.now(), limit=1000)
                 if _verdict(item.payload) == said]
    assert "healthy again after" in said and "the cluster is healthy again after 5s" in pushed


# ---------------------------------------------------------------- recoveries in a busy poll


def test_fenced_and_clean_in_one_poll_goes_to_the_node_thread_and_clears_unclean() -> None:
    bot = make()
    bot.see(report("a_healthy", NODE1_STANDBY),
            report("a_healthy", compose(NODE1_STANDBY, with_node("node3", online=False, unclean=True))))
    node3 = bot.incident("node:node3")
    roots = len(bot.channel())
    bot.see(report("a_healthy", compose(NODE1_STANDBY, with_node("node3", online=False), fence("success"))))
    assert len(bot.channel()) == roots  # no new channel message: it is node3's incident's news
    assert "node3 is clean again" in bot.thread(node3)[-1]
    now = bot.open("node:node3")
    assert now is not None and now.payload["open"] == ["node_offline:node3"]
    bot.see(report("a_healthy", compose(NODE1_STANDBY, fence("success"))))  # node3 is back
    assert bot.incident("node:node3").state is IncidentState.RESOLVED


def test_a_recovery_absorbed_by_another_problem_closes_its_own_incident() -> None:
    bot = make()
    clone_down = compose(NODE1_STANDBY, clone_down_on("node3"))
    bot.see(report("a_healthy", NODE1_STANDBY), report("a_healthy", clone_down))
    clone = bot.incident("resource:loadbalancer-clone")
    # node3 goes offline: the clone is no longer expected there, in the same poll as node3's problem.
    bot.see(report("a_healthy", compose(clone_down, with_node("node3", online=False))))
    assert bot.open("node:node3") is not None
    assert bot.incident("resource:loadbalancer-clone").state is IncidentState.RESOLVED
    said = bot.thread(clone)
    assert said[0] == (":large_green_circle: loadbalancer-clone is no longer expected on node3: "
                       "node3 cannot run resources now")
    assert "this part recovered" in said[1]


# ---------------------------------------------------------------- paging


def test_a_failed_fencing_pages() -> None:
    bot = make()
    bot.see(report("a_healthy"), report("a_healthy", fence("failed", "timed out")))
    (alert,) = bot.channel()
    assert alert.startswith(f"{MENTION} :red_circle:") and "fencing (reboot) of node3 FAILED" in alert


def test_an_escalation_to_critical_pages_and_turns_the_root_red() -> None:
    bot = make()
    bot.see(report("a_healthy"), report("a_healthy", with_node("node3", standby=True)))
    (root,) = bot.channel()
    assert MENTION not in root and root.startswith(":large_yellow_circle:")
    node3 = bot.incident("node:node3")
    bot.see(report("a_healthy", with_node("node3", standby=True, online=False, unclean=True)))
    assert bot.incident("node:node3").severity is Severity.CRITICAL
    (edit,) = [text for kind, i, text in bot.outbox() if kind == "edit" and i == node3.id]
    assert edit.startswith(f"{MENTION} :red_circle:") and "node3 is UNCLEAN" in edit
    page = bot.channel()[-1]
    assert page.startswith(f"{MENTION} :red_circle:") and "node3 is UNCLEAN" in page
    assert "`node:node3`" in page and "escalated to CRITICAL" in page
    assert "node3 is UNCLEAN" in bot.thread(node3)[-1]  # the thread keeps the whole story


def test_a_cluster_already_critical_at_first_sight_pages() -> None:
    bot = make()
    bot.see(report("d_two_nodes_down"))
    (alert,) = bot.channel()
    assert alert.startswith(f"{MENTION} :red_circle:")


def test_a_start_when_no_node_answered_says_what_is_wrong_once_they_answer() -> None:
    # No earlier view to diff against: without this, "unhealthy at start" was all anyone heard,
    # while the cluster's real problem (a stopped VIP) was never named.
    bot = make()
    blind = {n: "ssh: connection timed out" for n in ("node1", "node2", "node3")}
    bot.see(report("a_healthy", **blind))
    initial = bot.open("initial")
    assert initial is not None and len(bot.channel()) == 1
    bot.see(report("a_healthy", vip2_stopped))
    (reply,) = bot.thread(initial)
    assert "answers now, and is unhealthy" in reply
    docs = [item.payload["doc"] for item in bot.store.due(bot.clock.now(), limit=100)]
    assert any("virtual_ip_2" in line for d in docs[1:] for s in d["sections"] for line in s["lines"])
    assert [k for k, _, _ in bot.outbox()] == ["root", "edit", "reply"]
    bot.see(report("a_healthy", vip2_stopped))  # said once
    assert len(bot.outbox()) == 3


# ---------------------------------------------------------------- flapping


def flap_then_stay_down(bot: Bot) -> None:
    up, down = report("a_healthy"), report("a_healthy", vip2_stopped)
    bot.see(up)
    for _ in range(3):
        bot.see(down, up)
    bot.see(down)
    assert bot.open("flapping:vip:virtual_ip_2") is not None
    assert _hosting(bot)  # the last stop was quiet: told in the VIP's own incident, open while it flaps


def _hosting(bot: Bot) -> bool:
    """Issue 14: a flap is told in the flapping key's own incident, which stays open while it flaps."""
    flap, vip = bot.open("flapping:vip:virtual_ip_2"), bot.open("vip:virtual_ip_2")
    return flap is not None and vip is not None and flap.payload["host"] == vip.id


def test_a_flap_that_calmed_down_stopped_is_alerted_and_the_flap_ends_pointing_at_it() -> None:
    bot = make()
    flap_then_stay_down(bot)
    pages = len(bot.channel())
    flap = bot.incident("flapping:vip:virtual_ip_2")
    for _ in range(int(WINDOW_S // 5) - 1):  # still quiet just short of a calm window
        bot.see(report("a_healthy", vip2_stopped))
    assert _hosting(bot) and len(bot.channel()) == pages  # still quiet
    bot.see(report("a_healthy", vip2_stopped))
    vip = bot.open("vip:virtual_ip_2")
    assert vip is not None and vip.severity is Severity.CRITICAL
    assert bot.channel()[-1].startswith(VIP2_PAGE)
    assert bot.incident(flap.key).state is IncidentState.RESOLVED
    ended = bot.thread(vip)[-1]  # the flap is told in the flapping VIP's own incident (issue 14)
    assert "has not changed for 10m00s" in ended and "incident `vip:virtual_ip_2`" in ended
    bot.see(*[report("a_healthy", vip2_stopped)] * 200)  # said once
    assert len([t for t in bot.channel() if "virtual_ip_2 STOPPED" in t]) == 3


def test_a_flap_that_calmed_down_stopped_is_alerted_while_the_report_stays_the_same() -> None:
    bot = make()
    flap_then_stay_down(bot)
    same = report("a_healthy", vip2_stopped)

    async def collect(cluster: ClusterConfig, *, ask: Ask) -> ClusterReport:
        return same  # nothing new from any node: poll() skips observe()

    bot.watcher.collect = collect
    for _ in range(int(WINDOW_S // 5) + 1):
        bot.clock.tick()
        asyncio.run(bot.watcher.poll(CLUSTER))
    assert bot.open("flapping:vip:virtual_ip_2") is None
    vip = bot.open("vip:virtual_ip_2")
    assert vip is not None and vip.severity is Severity.CRITICAL


def test_a_flap_left_open_by_a_restart_ends_after_one_calm_window(tmp_path: Path) -> None:
    clock = Clock()
    bot = make(tmp_path / "state.db", clock)
    flap_then_stay_down(bot)
    bot.store.close()
    bot = make(tmp_path / "state.db", clock)  # the flap's toggles were in memory only
    bot.see(*[report("a_healthy", vip2_stopped)] * (int(WINDOW_S // 5) + 1))
    assert bot.open("flapping:vip:virtual_ip_2") is None
    assert bot.open("vip:virtual_ip_2") is not None


# ---------------------------------------------------------------- store errors


class FailingStore(Store):
    """The disk fills up (or another writer holds the lock) while the watcher writes its outbox."""

    failures = 0

    def enqueue(self, kind: str, payload: Mapping[str, object], *, now: datetime) -> int:
        if self.failures:
            self.failures -= 1
            raise sqlite3.OperationalError("database or disk is full")
        return super().enqueue(kind, payload, now=now)


def failing(path: Path, clock: Clock | None = None) -> tuple[Bot, FailingStore]:
    """A bot whose store fails when told to: the FailingStore its AsyncStore writes through."""
    bot = make(path, clock, opener=lambda target: FailingStore(Store.open(target).connection))
    store = bot.store.store.blocking(lambda db: db)
    assert isinstance(store, FailingStore)
    return bot, store


def test_a_store_error_mid_poll_leaves_no_trace_and_the_next_poll_alerts(tmp_path: Path) -> None:
    bot, store = failing(tmp_path / "state.db")
    bot.see(report("a_healthy"))
    healthy = bot.store.load_watch_state(CLUSTER.name)
    store.failures = 1
    with pytest.raises(StoreUnavailable, match="disk is full"):
        bot.see(report("c_node3_crashed"))
    assert bot.store.load_watch_state(CLUSTER.name) == healthy
    assert bot.store.open_incidents(CLUSTER.name) == [] and bot.outbox() == []
    bot.see(report("c_node3_crashed"))
    assert bot.channel() == [":large_yellow_circle: *prod-haproxy*: node3 went OFFLINE; "
                             "virtual_ip_3 moved node3 → node1"]
    assert bot.open("node:node3") is not None


def test_a_store_error_in_a_poll_is_news_again_while_the_report_stays_the_same(tmp_path: Path) -> None:
    # The collector hands back the very same report object while nothing changes: the report
    # whose writes failed must not count as seen, or its change would never be alerted.
    bot, store = failing(tmp_path / "state.db")
    current = report("a_healthy")

    async def collect(cluster: ClusterConfig, *, ask: Ask) -> ClusterReport:
        return current

    bot.watcher.collect = collect
    asyncio.run(bot.watcher.poll(CLUSTER))
    current = report("a_healthy", vip2_stopped)
    store.failures = 1
    with pytest.raises(StoreUnavailable):
        asyncio.run(bot.watcher.poll(CLUSTER))
    bot.clock.tick()
    asyncio.run(bot.watcher.poll(CLUSTER))
    vip = bot.open("vip:virtual_ip_2")
    assert vip is not None and vip.severity is Severity.CRITICAL


def test_a_store_error_then_a_restart_still_alerts(tmp_path: Path) -> None:
    clock = Clock()
    bot, store = failing(tmp_path / "state.db", clock)
    bot.see(report("a_healthy"))
    store.failures = 1
    with pytest.raises(StoreUnavailable):
        bot.see(report("c_node3_crashed"))
    bot.store.close()
    bot = make(tmp_path / "state.db", clock)
    bot.see(report("c_node3_crashed"))
    assert bot.open("node:node3") is not None and len(bot.channel()) == 1


def test_a_first_sight_that_failed_is_first_sight_again(tmp_path: Path) -> None:
    bot, store = failing(tmp_path / "state.db")
    store.failures = 1
    with pytest.raises(StoreUnavailable):
        bot.see(report("c_node3_crashed"))
    bot.see(report("c_node3_crashed"))
    (alert,) = bot.channel()
    assert "was already unhealthy when clusterbot started watching" in alert


def test_another_writer_holding_the_lock_delays_the_alert_but_does_not_lose_it(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    bot = make(path)
    # The test need not wait the full 2 s.
    bot.store.store.blocking(lambda db: db.connection.execute("PRAGMA busy_timeout = 50"))
    bot.see(report("a_healthy"))
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # e.g. the CLI, writing
    with pytest.raises(StoreUnavailable, match="locked"):
        bot.see(report("c_node3_crashed"))
    other.execute("ROLLBACK")
    other.close()
    bot.see(report("c_node3_crashed"))
    assert bot.open("node:node3") is not None and len(bot.channel()) == 1


def test_a_flap_that_went_quiet_on_a_healthy_toggle_and_calmed_down_stopped_is_paged() -> None:
    # The toggle that makes the key flap is a start: the cluster is healthy, so the VIP's incident
    # is resolved ("healthy again") while the picture from before the flap shows the VIP down.
    bot = make()
    up, down = report("a_healthy"), report("a_healthy", vip2_stopped)
    bot.see(up, down)
    bot.clock.tick(WINDOW_S)  # that toggle is forgotten: the next start is the fifth toggle
    bot.see(up, down, up, down)
    bot.see(up)
    flap = bot.incident("flapping:vip:virtual_ip_2")
    # Issue 14: the flap is told in the VIP's incident, which stays open while the flap is.
    assert flap.payload["host"] == bot.incident("vip:virtual_ip_2").id
    bot.see(down, *[down] * int(WINDOW_S // 5))  # quiet, then stopped for a whole calm window
    vip = bot.open("vip:virtual_ip_2")
    assert vip is not None and vip.severity is Severity.CRITICAL
    assert bot.channel()[-1].startswith(VIP2_PAGE)
    ended = bot.thread(vip)[-1]
    assert "recovered" not in ended and "but it is not fine" in ended
    assert "incident `vip:virtual_ip_2`" in ended


def flap_then_come_back(bot: Bot) -> None:
    up = report("a_healthy")
    bot.see(up)
    for _ in range(4):
        bot.see(report("a_healthy", vip2_stopped), up)
    assert _hosting(bot)


NODE2_STANDBY_VIP2_STOPPED = compose(with_node("node2", standby=True), vip2_stopped)


def test_a_flap_that_ends_in_another_incident_is_not_paged_again() -> None:
    bot = make()
    flap_then_come_back(bot)
    both = report("a_healthy", NODE2_STANDBY_VIP2_STOPPED)
    bot.see(both)  # node2's incident takes the stop with it, and pages
    node2 = bot.open("node:node2")
    assert node2 is not None and "vip_stopped:virtual_ip_2" in node2.payload["open"]
    pages = bot.channel()
    bot.see(*[both] * (int(WINDOW_S // 5) + 1))
    assert bot.open("flapping:vip:virtual_ip_2") is None
    assert bot.channel() == pages and bot.open("vip:virtual_ip_2") is None  # ended with its flap
    ended = bot.thread(bot.incident("vip:virtual_ip_2"))[-1]  # told in the VIP's incident (issue 14)
    assert "but it is not fine" in ended and "incident `node:node2`" in ended


def vip2_on(node: str) -> Change:
    return lambda v: replace(v, instances=tuple(replace(i, active=True, nodes=(node,))
                                                if i.id == "virtual_ip_2" else i for i in v.instances))


def test_a_flap_that_ends_started_closes_the_stop_another_incident_holds() -> None:
    bot = make()
    flap_then_come_back(bot)
    bot.see(report("a_healthy", NODE2_STANDBY_VIP2_STOPPED))
    node2 = bot.incident("node:node2")
    moved = report("a_healthy", compose(with_node("node2", standby=True), vip2_on("node1")))
    bot.see(*[moved] * (int(WINDOW_S // 5) + 2))  # the start is quiet: the VIP is still flapping
    assert bot.open("flapping:vip:virtual_ip_2") is None
    now = bot.open("node:node2")
    assert now is not None and now.payload["open"] == ["node_standby:node2"]
    assert "virtual_ip_2 moved node2 → node1" in bot.thread(node2)[-1]


def test_a_flap_opened_by_an_older_clusterbot_ends_with_its_net_change() -> None:
    # An older clusterbot kept only the cluster before the flap, not the latest change of each key.
    bot = make()
    flap_then_stay_down(bot)
    flap = bot.open("flapping:vip:virtual_ip_2")
    assert flap is not None
    before = snapshot(report("a_healthy"), CLUSTER.expectations).to_json()
    older = {k: v for k, v in flap.payload.items() if k != "latest"}
    bot.store.update_incident(flap.id, payload={**older, "before": before})
    bot.see(*[report("a_healthy", vip2_stopped)] * (int(WINDOW_S // 5) + 1))
    assert bot.open("flapping:vip:virtual_ip_2") is None
    vip = bot.open("vip:virtual_ip_2")
    assert vip is not None and vip.severity is Severity.CRITICAL


# ---------------------------------------------------------------- one-shot events


def fence_failures(attempts: int) -> Change:
    """Pacemaker retrying a failing fence device: node3's failed reboots, one every 40 s."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    history = tuple(FenceEvent("reboot", "node3", "failed", exit_reason="timed out",
                               completed=start + timedelta(seconds=40 * i)) for i in range(attempts))
    return lambda v: replace(v, fence_history=history)


def test_a_failing_fence_device_pages_once_and_its_retries_go_to_the_thread() -> None:
    bot = make()
    unclean = compose(NODE1_STANDBY, with_node("node3", online=False, unclean=True))
    bot.see(report("a_healthy", NODE1_STANDBY), report("a_healthy", unclean))
    node3, roots = bot.incident("node:node3"), len(bot.channel())
    for attempts in range(1, 11):  # stonith-max-attempts=10, an attempt every 40 s (8 polls)
        bot.see(*[report("a_healthy", compose(unclean, fence_failures(attempts)))] * 8)
    (page,) = bot.channel()[roots:]
    assert page.startswith(f"{MENTION} :red_circle:") and "fencing (reboot) of node3 FAILED" in page
    retried = ":red_circle: fencing (reboot) of node3 FAILED: timed out · 10 times in this incident"
    assert bot.thread(node3)[-1] == retried
    assert bot.open("flapping:node:node3") is None  # retries are no toggles
    bot.see(*[report("a_healthy", compose(unclean, fence_failures(10)))] * (int(WINDOW_S // 5) + 1))
    assert len(bot.channel()) == roots + 1  # and no summary of them later
    bot.see(report("a_healthy", compose(NODE1_STANDBY, fence_failures(10))))  # node3 is back
    assert bot.incident("node:node3").state is IncidentState.RESOLVED


def test_a_fence_during_a_flap_is_said_when_it_happens_not_when_the_flap_calms() -> None:
    bot = make()
    up, down = report("a_healthy"), report("a_healthy", with_node("node3", online=False))
    bot.see(up)
    for _ in range(2):
        bot.see(down, up)
    bot.see(down)
    assert bot.open("flapping:node:node3") is not None
    back_unfenced = report("a_healthy", fence("failed", "timed out"))  # node3's return is a quiet toggle
    bot.see(back_unfenced)
    (failed,) = [t for t in bot.channel() if "FAILED" in t]
    assert failed.startswith(f"{MENTION} :red_circle:")
    bot.see(*[back_unfenced] * (int(WINDOW_S // 5) + 1))
    assert bot.open("flapping:node:node3") is None
    assert [t for t in bot.channel() if "FAILED" in t] == [failed]
