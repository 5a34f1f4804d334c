"""Slack's redelivered events (bot.slack.redelivery): handled once when the store can say
so, handled anyway when it cannot, without waiting on a database that does not answer."""

from __future__ import annotations

import asyncio
import time

import pytest

from bot.errors import ConfigError, StoreUnavailable
from bot.slack import redelivery as slack_app


def seen_once() -> slack_app.FirstSight:
    seen: set[str] = set()

    async def first_sight(key: str) -> bool:
        fresh = key not in seen
        seen.add(key)
        return fresh
    return first_sight


async def test_the_same_event_id_is_redelivered_the_second_time_only() -> None:
    first_sight = seen_once()
    body = {"event_id": "Ev0123ABCD"}
    assert [await slack_app.redelivered(body, first_sight) for _ in range(3)] == [False, True, True]
    assert not await slack_app.redelivered({"event_id": "Ev0123ABCE"}, first_sight)


@pytest.mark.parametrize("event_id", [None, "", 42, "not-an-event", "Ev" + "a" * 80, "Ev1; DROP"])
async def test_a_missing_or_odd_event_id_is_never_a_key(event_id: object) -> None:
    async def first_sight(key: str) -> bool:
        raise AssertionError(f"asked about {key!r}")
    assert not await slack_app.redelivered({"event_id": event_id}, first_sight)


@pytest.mark.parametrize("error", [StoreUnavailable("the state database is unavailable: gone"),
                                   ConfigError("schema version 4 is newer than this clusterbot's 3")])
async def test_a_store_that_cannot_say_means_the_event_is_handled(error: Exception,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    async def first_sight(key: str) -> bool:
        raise error
    assert not await slack_app.redelivered({"event_id": "Ev0123ABCD"}, first_sight)
    assert [r.getMessage() for r in caplog.records] == [
        f"cannot tell whether Slack event Ev0123ABCD was handled already ({error}); handling it"]


async def test_a_store_that_hangs_is_given_up_on_within_the_bound() -> None:
    async def first_sight(key: str) -> bool:
        await asyncio.sleep(3600)
        return True
    started = time.monotonic()
    assert not await slack_app.redelivered({"event_id": "Ev0123ABCD"}, first_sight)
    assert time.monotonic() - started < slack_app.FIRST_SIGHT_WAIT_S + 10  # not the hour it would hang
