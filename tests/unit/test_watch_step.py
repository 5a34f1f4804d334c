"""One poll's incident decisions (bot/watch/step.py), pure: real lab captures in, typed effects
out; no store, no loop, no Slack. Across polls the effects are folded into the incidents the next
poll knows, as the store would keep them (`Book`)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest

from bot.pacemaker.health import Severity
from bot.pacemaker.merge import ClusterReport
from bot.render.doc import Doc
from bot.watch.effects import (
    Counted,
    Effect,
    IncidentView,
    OpenIncident,
    Post,
    ReopenIncident,
    ResolveIncident,
    RootStory,
    SaveState,
    UpdateIncident,
)
from bot.watch.fixes import Fix
from bot.watch.records import IncidentRecord, MessageKind, New, Ref
from bot.watch.step import INITIAL_KEY, Decide, Known, Memory, Rules, Step, needed, observe, unchanged
from tests.unit.test_diff import NODES, PROD, report
from tests.unit.test_watch_core import at
from tests.unit.test_watcher_incidents import MENTION, vip2_stopped

E = TypeVar("E", bound=Effect)
T0 = datetime(2024, 1, 1, tzinfo=UTC)
WINDOW = 100.0
RULES = Rules("prod-haproxy", "C0ALERTS", MENTION, NODES, PROD, settle_s=15.0, flap_limit=4,
              flap_window_s=WINDOW, unreachable_after=3)
VIP2 = "vip:virtual_ip_2"
HEALTHY = report("a_healthy")
STOPPED = report("a_healthy", vip2_stopped)


@dataclass
class Book:
    """The incidents and messages the effects of each poll leave, kept as the store would."""

    memory: Memory = field(default_factory=Memory)
    incidents: dict[int, IncidentView] = field(default_factory=dict)
    posts: list[Post] = field(default_factory=list)
    fixes: tuple[Fix, ...] = ()
    t: float = 0.0

    @property
    def now(self) -> datetime:
        return T0 + timedelta(seconds=self.t)

    def poll(self, rep: ClusterReport, *, after: float = 5.0, decide: Decide = observe) -> Step:
        self.t += after
        done = decide(self.memory, rep, Known(tuple(self.incidents.values()), self.fixes), RULES,
                      self.now, self.t)
        self.memory = done.memory
        ids: dict[New, int] = {}

        def idof(ref: Ref) -> int:
            return ref if isinstance(ref, int) else ids[ref]

        for e in done.effects:
            if isinstance(e, OpenIncident):
                ids[e.ref] = len(self.incidents) + 1
                host = e.record.host
                record = e.record if host is None else IncidentRecord({**e.record.raw, "host": idof(host)})
                self.incidents[ids[e.ref]] = IncidentView(ids[e.ref], e.key, True, e.severity, e.title, e.at,
                                                          None, record)
            elif isinstance(e, UpdateIncident):
                inc = self.incidents[idof(e.ref)]
                self.incidents[idof(inc.ref)] = replace(inc, severity=e.severity or inc.severity,
                                                   title=e.title or inc.title, record=e.record or inc.record)
            elif isinstance(e, ReopenIncident | ResolveIncident):
                inc = self.incidents[idof(e.ref)]
                ended = e.at if isinstance(e, ResolveIncident) else None
                self.incidents[idof(inc.ref)] = replace(inc, open=ended is None, resolved_at=ended)
            elif isinstance(e, Post):
                self.posts.append(replace(e, incident=None if e.incident is None else idof(e.incident)))
        return done

    def open(self, key: str) -> IncidentView | None:
        return next((i for i in self.incidents.values() if i.open and i.key == key), None)


def of(done: Step, kind: type[E]) -> list[E]:
    return [e for e in done.effects if isinstance(e, kind)]


def loud(done: Step) -> list[Post]:
    """What reaches the channel itself: roots, and thread replies also shown there."""
    return [p for p in of(done, Post) if p.kind is MessageKind.ROOT or p.broadcast]


# ---------------------------------------------------------------- open, join, reopen, resolve


def test_a_stopped_vip_opens_one_critical_incident_whose_root_names_it() -> None:
    book = Book()
    book.poll(HEALTHY)
    done = book.poll(STOPPED)
    (opened,) = of(done, OpenIncident)
    assert (opened.key, opened.severity, opened.channel) == (VIP2, Severity.CRITICAL, "C0ALERTS")
    assert opened.ref == New(1) and opened.record.open == ["vip_stopped:virtual_ip_2"]
    (root,) = loud(done)
    assert root.kind is MessageKind.ROOT and root.incident == New(1)
    assert isinstance(root.doc, RootStory) and root.doc.incident == New(1)  # rendered with its id
    assert Counted(Severity.CRITICAL) in done.effects
    assert isinstance(done.effects[0], SaveState) and done.effects[0].state == done.memory.state


def test_a_quorum_loss_joins_the_open_incident_of_the_node_that_left_and_escalates_it() -> None:
    book = Book()
    book.poll(HEALTHY)
    book.poll(report("c_node3_crashed"))
    node3 = book.open("node:node3")
    assert node3 is not None and node3.severity is Severity.WARNING
    done = book.poll(report("d_two_nodes_down"))
    assert of(done, OpenIncident) == []  # one cause, one incident
    assert {p.incident for p in of(done, Post)} == {node3.ref}
    assert any(u.ref == node3.ref and u.severity is Severity.CRITICAL for u in of(done, UpdateIncident))
    edits = [p for p in of(done, Post) if p.kind is MessageKind.EDIT]
    assert edits and isinstance(edits[-1].doc, RootStory)
    assert edits[-1].doc.draft.severity is Severity.CRITICAL
    assert [p.kind for p in loud(done)] == [MessageKind.REPLY]  # the escalation, said in the channel
    assert loud(done)[0].broadcast


def test_a_recovery_resolves_the_incident_in_its_thread_and_edits_its_root() -> None:
    book = Book()
    book.poll(HEALTHY)
    book.poll(STOPPED)
    done = book.poll(HEALTHY)
    assert of(done, ResolveIncident) == [ResolveIncident(1, book.now)]
    assert Counted(None) in done.effects
    assert [(p.kind, p.incident) for p in of(done, Post)] == [
        (MessageKind.REPLY, 1), (MessageKind.REPLY, 1), (MessageKind.EDIT, 1)]
    assert loud(done) == [] and book.open(VIP2) is None


def test_the_same_cause_within_the_flap_window_reopens_its_incident_in_the_channel() -> None:
    book = Book()
    book.poll(HEALTHY)
    book.poll(STOPPED)
    book.poll(HEALTHY)
    done = book.poll(STOPPED, after=WINDOW - 10)
    assert of(done, OpenIncident) == [] and of(done, ReopenIncident) == [ReopenIncident(1)]
    assert [p.incident for p in loud(done)] == [1]  # not a new root: the thread, shown in the channel


def test_the_same_cause_after_the_flap_window_is_a_new_incident() -> None:
    book = Book()
    book.poll(HEALTHY)
    book.poll(STOPPED)
    book.poll(HEALTHY)
    done = book.poll(STOPPED, after=WINDOW + 10)
    assert of(done, ReopenIncident) == []
    assert [o.key for o in of(done, OpenIncident)] == [VIP2]


def test_a_reopened_incident_holds_only_its_new_news_not_what_it_held_when_the_cluster_healed() -> None:
    """Found by the state machine (issue 14): node2 bounced, its incident ended with the cluster
    healthy while still listing the bounce (nothing diffs a bounce's end); node2 bounced again in
    node3's recovery tail (node3's incident took it: which node bounced is a guess); then node2
    went OFFLINE and its incident, reopened, held the old bounce too: one condition, two incidents."""
    book = Book()
    book.poll(HEALTHY)
    for t, after in ((50.0, 5), (55.0, 5), (60.0, 5)):  # one of node2's bounces, then healthy
        book.poll(at("flapping_node", t), after=after)
    node2 = next(i for i in book.incidents.values() if i.key == "node:node2")
    assert not node2.open and node2.record.open == ["node_bounced:node2"]
    for t, after in ((9.5, 5), (10.5, 1), (14.5, 1)):  # node3 lost, back
        book.poll(at("power_cut_rejoin", t), after=after)
    for t in (17.25, 22.25):  # node2 bounces in node3's recovery tail
        book.poll(at("flapping_node", t))
    assert book.open("node:node3") is not None
    done = book.poll(at("flapping_node", 32.25))  # node2 OFFLINE: its incident again
    assert ReopenIncident(node2.ref) in done.effects
    assert held_twice(book) == {}
    reopened = book.open("node:node2")
    assert reopened is not None and reopened.record.open == ["member_lost:node2", "node_offline:node2"]


def held_twice(book: Book) -> dict[str, list[str]]:
    """The conditions more than one open incident holds, and by whom."""
    holders: dict[str, list[str]] = {}
    for inc in book.incidents.values():
        for cond in inc.record.open if inc.open else ():
            holders.setdefault(cond, []).append(inc.key)
    return {cond: keys for cond, keys in holders.items() if len(keys) > 1}


def test_news_told_in_a_nodes_incident_leaves_a_condition_another_incident_holds_there() -> None:
    """Every node bounced in one poll (one incident, node1's, holds the three bounces); node2's own
    incident, opened since, hears of node2's next bounce, but node1's keeps holding it: a condition
    held twice would be closed and told twice. Stretches of the real recordings, as the state
    machine strings them together."""
    book = Book()
    book.poll(HEALTHY)
    book.poll(at("monitor_failure_cleanup", 14.5), after=12)
    book.poll(at("quorum_loss", 14.0), after=12)
    node1 = book.open("node:node1")
    assert node1 is not None and "node_bounced:node2" in node1.record.open
    book.poll(at("maintenance", 6.0))
    done = book.poll(at("standby_unstandby", 7.25))
    node2 = book.open("node:node2")
    assert node2 is not None and "node_standby:node2" in node2.record.open
    told = [p for p in of(done, Post) if p.incident == node2.ref]
    assert told and "rejoined between two polls" in str(told[0].doc)
    assert held_twice(book) == {}


# ---------------------------------------------------------------- first sight, settling tail


def test_first_sight_of_an_unhealthy_cluster_opens_the_initial_incident_once() -> None:
    book = Book()
    done = book.poll(STOPPED)
    assert [(o.key, o.severity) for o in of(done, OpenIncident)] == [(INITIAL_KEY, Severity.CRITICAL)]
    assert [p.kind for p in of(done, Post)] == [MessageKind.ROOT]
    assert of(book.poll(STOPPED), OpenIncident) == []


def test_first_sight_of_a_healthy_cluster_only_saves_its_state() -> None:
    done = Book().poll(HEALTHY)
    assert [type(e) for e in done.effects] == [SaveState]


def test_the_first_view_after_a_blind_start_is_told_in_the_initial_incident() -> None:
    book = Book()
    book.poll(report("a_healthy", **dict.fromkeys(NODES, "ssh: connection timed out")))
    initial = book.open(INITIAL_KEY)
    assert initial is not None
    done = book.poll(STOPPED)
    assert of(done, OpenIncident) == []  # no earlier view to diff against: nothing else says it
    assert [(p.kind, p.incident) for p in of(done, Post)] == [
        (MessageKind.EDIT, initial.ref), (MessageKind.REPLY, initial.ref)]
    assert of(book.poll(STOPPED), Post) == []  # said once


def settling_ended(ago: float) -> Book:
    book = Book()
    book.poll(HEALTHY)
    ended = IncidentView(9, "node:node3", False, Severity.WARNING, "node3 went OFFLINE", T0,
                         book.now - timedelta(seconds=ago), IncidentRecord.new().with_settling(True))
    book.incidents[9] = ended
    return book


def test_an_incident_that_ended_still_wrong_hears_when_the_cluster_is_healthy_again() -> None:
    book = settling_ended(ago=30)
    done = book.poll(HEALTHY)
    (update,) = of(done, UpdateIncident)
    assert update.ref == 9 and update.record is not None and not update.record.settling
    assert [(p.kind, p.incident) for p in of(done, Post)] == [(MessageKind.REPLY, 9)]
    assert of(book.poll(HEALTHY), Post) == []  # told once


def test_the_settling_tail_is_not_told_after_the_flap_window() -> None:
    assert of(settling_ended(ago=WINDOW + 30).poll(HEALTHY), Post) == []


# ---------------------------------------------------------------- flapping


def flapping() -> tuple[Book, float]:
    """A VIP stopping and starting over the flap limit; it stays stopped. The time of its last toggle."""
    book = Book()
    book.poll(HEALTHY)
    for _ in range(3):
        book.poll(STOPPED)
        book.poll(HEALTHY)
    book.poll(STOPPED)
    return book, book.t


def test_a_flap_opens_one_flapping_incident_told_in_the_flapping_incident() -> None:
    book, _ = flapping()
    flap, vip = book.open("flapping:" + VIP2), book.open(VIP2)
    assert flap is not None and vip is not None
    assert flap.record.host == vip.ref and flap.record.silenced == ["vip_stopped:virtual_ip_2"]
    told = [p for p in book.posts if p.incident == vip.ref and "flapping" in str(p.doc)]
    assert told and told[0].kind is MessageKind.REPLY and told[0].broadcast


def test_while_it_flaps_the_key_stays_quiet() -> None:
    book, _ = flapping()
    for _ in range(2):
        for rep in (HEALTHY, STOPPED):
            done = book.poll(rep)
            assert loud(done) == [] and of(done, OpenIncident) == []


def test_a_flap_that_calmed_stopped_ends_after_a_calm_window_and_pages_what_it_left() -> None:
    book, last = flapping()
    flap = book.open("flapping:" + VIP2)
    assert flap is not None
    ended_at = None
    while ended_at is None and book.t < last + 3 * WINDOW:
        done = book.poll(STOPPED, decide=unchanged)
        if ResolveIncident(flap.ref, book.now) in done.effects:
            ended_at = book.t
            vip = book.open(VIP2)
            assert vip is not None and loud(done) and all(p.incident == vip.ref for p in loud(done))
    assert ended_at is not None and last + WINDOW <= ended_at < last + WINDOW + 10
    assert book.open("flapping:" + VIP2) is None


# ---------------------------------------------------------------- approved fixes


def cleanup(channel: str, ended: datetime | None = None) -> Fix:
    return Fix("req-1", "cleanup", ("virtual_ip_2",), "node1", channel, "111.222", ended)


def test_a_fixs_effects_go_to_its_request_and_never_page() -> None:
    book = Book(fixes=(cleanup("C0REQUESTS"),))
    book.poll(HEALTHY)
    done = book.poll(STOPPED)
    assert [(o.key, o.severity) for o in of(done, OpenIncident)] == [("fix:req-1", Severity.INFO)]
    assert [p.kind for p in loud(done)] == [MessageKind.ROOT]  # the plain root naming the fix
    assert MENTION not in str(loud(done)[0].doc) and not any(p.broadcast for p in of(done, Post))
    assert any(p.thread == "111.222" and p.channel == "C0REQUESTS" for p in of(done, Post))
    assert of(book.poll(HEALTHY), ResolveIncident) == []  # its root stays while the fix acts
    book.fixes = (cleanup("C0REQUESTS", ended=book.now - timedelta(seconds=RULES.settle_s + 1)),)
    assert [r.ref for r in of(book.poll(HEALTHY), ResolveIncident)] == [1]


def test_a_fix_requested_in_the_alert_channel_opens_nothing() -> None:
    book = Book(fixes=(cleanup("C0ALERTS"),))
    book.poll(HEALTHY)
    done = book.poll(STOPPED)
    assert of(done, OpenIncident) == [] and loud(done) == []
    assert [p.thread for p in of(done, Post)] == ["111.222"]


# ---------------------------------------------------------------- what a poll needs


def test_an_unchanged_report_is_decided_only_when_time_may_end_something() -> None:
    now = T0
    assert needed(None, True, now, 0.0, 15.0) is observe  # nothing known since the start
    assert needed(Memory(), False, now, 0.0, 15.0) is observe
    assert needed(Memory(fix_roots=None), True, now, 0.0, 15.0) is unchanged  # not looked up yet
    assert needed(Memory(fix_roots=False), True, now, 0.0, 15.0) is None  # no query at all
    book, _ = flapping()
    due = book.memory.flaps.due if book.memory.flaps is not None else None
    assert due is not None
    calm = replace(book.memory, fix_roots=False)
    assert needed(calm, True, now, due - 1, 15.0) is None
    assert needed(calm, True, now, due, 15.0) is unchanged


def test_a_reopened_incidents_recovery_counts_its_latest_outage_and_its_root_the_whole_incident() -> None:
    """virtual_ip_2 stopped for 5 s, came back, stopped again 60 s later and came back after 5 s:
    the second "healthy again" says 5s, not the 70s since the incident first opened; the root's
    "resolved after" is the whole incident."""
    book = Book()
    book.poll(HEALTHY)
    book.poll(STOPPED)
    first = book.poll(HEALTHY)
    book.poll(STOPPED, after=60)
    done = book.poll(HEALTHY)
    said = [p.doc.verdict for p in of(first, Post) + of(done, Post) if p.kind is MessageKind.REPLY
            and isinstance(p.doc, Doc) and "healthy again" in p.doc.verdict]
    assert [s.rsplit(" ", 1)[-1] for s in said] == ["5s", "5s"]
    edits = [p.doc.verdict for p in of(done, Post) if p.kind is MessageKind.EDIT and isinstance(p.doc, Doc)]
    assert len(edits) == 1 and "resolved after 1m10s" in edits[0]


@pytest.mark.parametrize("raw", [None, 42, "yesterday", "2024-01-01T00:00:05"])
def test_an_unreadable_or_zoneless_reopening_time_counts_from_the_opening(raw: object) -> None:
    """A stored payload is data (an older clusterbot, a hand edit): never a poll that fails."""
    record = IncidentRecord({"open": [], "reopened_at": raw})
    assert record.reopened_at is None
    assert IncidentRecord({}).with_reopened_at(T0).reopened_at == T0
