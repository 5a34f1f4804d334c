"""The decisions of the incident lifecycle (bot/watch/lifecycle.py), pure: no store, no loop, no
clock but the numbers passed in."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from bot.pacemaker.diff import Flapping, IncidentDraft, incidents
from bot.pacemaker.health import Severity
from bot.watch.lifecycle import (
    FLAPPING,
    EndFlap,
    FlapClock,
    OpenFlap,
    Silence,
    calmed,
    follow_up,
    resumed,
    toggle,
)
from bot.watch.records import IncidentRecord
from tests.unit.test_watch_core import K, ev

LIMIT, WINDOW = 2, 100.0


def vip_down(vip: str = "vip1") -> IncidentDraft:
    return incidents([ev(K.VIP_STOPPED, vip, group=f"vip_stopped:{vip}")])[0]


def fresh() -> FlapClock:
    return FlapClock(Flapping(limit=LIMIT, window=WINDOW))


def toggled(clock: FlapClock, times: list[float]) -> FlapClock:
    for t in times:
        clock = toggle(clock, vip_down(), t, None).clock
    return clock


def test_a_key_toggling_within_the_limit_is_alerted_and_nothing_is_due() -> None:
    out = toggle(toggled(fresh(), [0.0]), vip_down(), 1.0, None)
    assert not out.quiet and out.effect is None and out.clock.due is None
    assert out.clock.flaps.count("vip_stopped:vip1", 1.0) == 2


def test_one_toggle_over_the_limit_opens_the_flap_and_is_due_a_window_later() -> None:
    out = toggle(toggled(fresh(), [0.0, 1.0]), vip_down(), 2.0, None)
    assert out.quiet
    assert out.effect == OpenFlap("vip_stopped:vip1", ("vip_stopped:vip1",), 3, WINDOW)
    assert out.clock.due == 2.0 + WINDOW


def test_toggles_older_than_the_window_do_not_count() -> None:
    out = toggle(toggled(fresh(), [0.0, 1.0]), vip_down(), 1.0 + WINDOW, None)
    assert not out.quiet and out.effect is None


def test_an_open_flap_keeps_a_key_quiet_and_widens_only_for_new_conditions() -> None:
    clock = fresh()
    same = toggle(clock, vip_down(), 5.0, ["vip_stopped:vip1"])
    assert same.quiet and same.effect is None and same.clock.due == 5.0 + WINDOW
    other = incidents([ev(K.VIP_STOPPED, "vip2", group="vip_stopped:vip1")])[0]
    wider = toggle(clock, other, 5.0, ["vip_stopped:vip1"])
    assert wider.quiet and wider.effect == Silence(("vip_stopped:vip1", "vip_stopped:vip2"))


def test_what_a_key_causes_counts_no_toggle_of_its_own() -> None:
    caused = replace(vip_down(), key="node:node3")  # the VIP went down because node3 did
    out = toggle(fresh(), caused, 0.0, None)
    assert out.clock.flaps.count("node:node3", 0.0) == 0 and not out.quiet


def test_the_due_time_only_moves_earlier() -> None:
    assert FlapClock(Flapping(), 50.0).watch(80.0).due == 50.0
    assert FlapClock(Flapping(), 50.0).watch(20.0).due == 20.0


def test_nothing_calms_before_it_is_due() -> None:
    clock = replace(toggled(fresh(), [0.0, 1.0, 2.0]), due=102.0)
    assert calmed(clock, [(7, FLAPPING + "vip_stopped:vip1")], 101.0) == (clock, ())


def test_a_flap_calms_a_whole_window_after_its_last_toggle_and_says_how_long() -> None:
    clock = replace(toggled(fresh(), [0.0, 1.0, 2.0]), due=102.0)
    after, ended = calmed(clock, [(7, FLAPPING + "vip_stopped:vip1")], 130.0)
    assert ended == (EndFlap(7, timedelta(seconds=130.0 - 102.0 + WINDOW)),)
    assert after.due is None


def test_a_flap_still_toggling_stays_open_and_is_due_again_at_its_own_calm() -> None:
    clock = replace(toggled(fresh(), [0.0, 1.0, 2.0, 60.0]), due=102.0)
    after, ended = calmed(clock, [(7, FLAPPING + "vip_stopped:vip1")], 110.0)
    assert ended == () and after.due == 60.0 + WINDOW


def test_after_a_restart_an_open_flap_counts_the_restart_as_its_last_toggle() -> None:
    clock = resumed(fresh(), [FLAPPING + "vip_stopped:vip1"], 500.0)
    assert clock.due == 500.0 + WINDOW
    assert clock.flaps.stable_since("vip_stopped:vip1") == 500.0
    assert calmed(clock, [(3, FLAPPING + "vip_stopped:vip1")], 500.0 + WINDOW)[1] == (
        EndFlap(3, timedelta(seconds=WINDOW)),)


# ---------------------------------------------------------------- following up an open incident


def fence_failed() -> IncidentDraft:
    failed = ev(K.FENCE_FAILED, "node3", group="node:node3")
    return incidents([replace(failed, severity=Severity.CRITICAL)])[0]


def test_news_no_worse_than_the_incident_is_a_quiet_reply_that_counts_its_conditions() -> None:
    news = follow_up(IncidentRecord.new(holds=("x",)), Severity.CRITICAL, vip_down())
    assert (news.times, news.escalate, news.loud, news.broadcast) == (1, False, False, False)
    assert news.record.open == ["vip_stopped:vip1", "x"]


def test_news_leaves_a_condition_another_incident_holds_with_it_but_keeps_its_own() -> None:
    holding = IncidentRecord.new(holds=("vip_stopped:vip1",))
    assert follow_up(holding, Severity.CRITICAL, vip_down("vip1"),
                     held_elsewhere={"vip_stopped:vip1"}).record.open == ["vip_stopped:vip1"]
    news = follow_up(IncidentRecord.new(holds=("x",)), Severity.CRITICAL, vip_down("vip2"),
                     held_elsewhere={"vip_stopped:vip2"})
    assert news.record.open == ["x"] and news.times == 1  # told all the same


def test_worse_news_edits_the_root_and_is_said_in_the_channel() -> None:
    news = follow_up(IncidentRecord.new(), Severity.WARNING, vip_down())  # vip_down is CRITICAL
    assert news.escalate and news.loud and not news.broadcast


def test_a_critical_one_shot_is_loud_once_then_its_retries_are_counted_quietly() -> None:
    first = follow_up(IncidentRecord.new(), Severity.CRITICAL, fence_failed())
    assert first.loud and first.times == 1
    again = follow_up(first.record, Severity.CRITICAL, fence_failed())
    assert not again.loud and again.times == 2 and again.record.shots == {"fence_failed:node3": 2}


def test_a_reopened_incident_edits_its_root_and_broadcasts_the_reply_unless_already_loud() -> None:
    quiet = follow_up(IncidentRecord.new(), Severity.CRITICAL, vip_down(), reopened=True)
    assert quiet.escalate and quiet.broadcast and not quiet.loud
    loud = follow_up(IncidentRecord.new(), Severity.CRITICAL, vip_down(), reopened=True, loud=True)
    assert loud.loud and not loud.broadcast
