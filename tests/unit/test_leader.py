"""The leader's timing arithmetic (bot/leader.py): a leader cut off from the database has
stopped before the server can free its lock for anyone else, whatever the settings."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bot.leader import KEEPALIVE_COUNT, KEEPALIVE_INTERVAL_S, Timing, timing
from bot.settings import Settings

# The settings' own bounds (bot/settings.py).
seconds = st.floats(min_value=0.1, max_value=60, allow_nan=False)


@given(check=seconds, timeout=seconds)
def test_a_cut_off_leader_stops_at_least_a_check_and_a_second_before_its_lock_frees(
        check: float, timeout: float) -> None:
    t = Timing(retry_s=1.0, check_s=check, timeout_s=timeout)
    # The server's keepalive clock may have started up to check_s before the cut (the last check
    # that got through); the leader's last check may start up to check_s after it.
    earliest_free = t.lock_free_s - check
    assert earliest_free >= t.step_down_s + 1
    assert t.lock_free_s == t.keepalive_idle_s + KEEPALIVE_COUNT * KEEPALIVE_INTERVAL_S


def test_the_defaults_give_the_documented_figures() -> None:
    t = timing(Settings())
    assert (t.retry_s, t.step_down_s, t.keepalive_idle_s, t.lock_free_s) == (1.0, 2.5, 5, 7)
