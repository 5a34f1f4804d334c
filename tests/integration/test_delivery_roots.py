"""An incident whose first alert never reached Slack: its follow-ups must still make sense.

The bot was out of the alert channel (or the channel refused the message) when node3 crashed, so
the root alert was dropped. Once it can post again, "node3 is back ONLINE" alone, top level, would
tell on-call nothing: it starts the incident's thread instead, says what it follows, and the rest
of the incident threads under it.

Real pieces throughout: the cluster's SSH nodes answer with the lab captures, the watcher renders
the incidents into the bot's SQLite outbox, and the deliverer posts to the fake Slack over HTTP.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.collect import Collector
from bot.ssh import SshPool
from bot.watcher import Watcher
from tests.fakes.nodes import fake_cluster
from tests.fakes.slack import Call
from tests.integration.test_delivery_errors import Rig, now, rig

pytestmark = pytest.mark.integration

CHANNEL = "alerts"  # where the watcher sends a cluster with no alert channel configured


@dataclass
class Watched:
    rig: Rig
    poll: Callable[[str], Coroutine[Any, Any, object]]  # scenario -> one watcher poll of it


@asynccontextmanager
async def watched(tmp_path: Path) -> AsyncIterator[Watched]:
    """prod-haproxy, healthy and polled once, watched into the rig's store."""
    async with rig(tmp_path) as r, fake_cluster(tmp_path) as fc, SshPool() as pool:
        watcher = Watcher(fc.settings, Collector(pool, fc.settings).collect, r.store, now)

        async def poll(scenario: str) -> object:
            fc.set_scenario(scenario)
            return await watcher.poll(fc.config)

        await poll("a_healthy")
        yield Watched(r, poll)


async def crash_dropped_then_healed(w: Watched, *, dropped: int) -> None:
    """node3 crashes while Slack refuses the first `dropped` posts, then heals; all delivered."""
    deliverer = w.rig.deliverer()
    await w.poll("c_node3_crashed")
    w.rig.slack.fail("chat.postMessage", error="not_in_channel", times=dropped)
    assert await deliverer.deliver_due() == 1  # the root, dropped: nothing else is queued
    await w.poll("a_healthy")
    assert await deliverer.deliver_due() == 3  # two follow-ups and the resolved edit


def posted(w: Watched) -> list[Call]:
    return [c for c in w.rig.slack.calls if c.method == "chat.postMessage" and c.ok]


def shown(call: Call) -> str:
    return json.dumps(call.params.get("blocks", []), ensure_ascii=False) + str(call.params.get("text"))


async def test_follow_ups_of_a_dropped_alert_start_a_thread_that_says_so(tmp_path: Path) -> None:
    async with watched(tmp_path) as w:
        await crash_dropped_then_healed(w, dropped=1)
        first, recovery = posted(w)
        assert "node3 is back ONLINE" in shown(first) and not first.params.get("thread_ts")
        assert "This incident's first alert could not be posted (Slack said `not_in_channel`)" in shown(first)
        assert "The lost alert: *prod-haproxy*: node3 went OFFLINE" in shown(first)
        ts = first.response["ts"]
        assert "healthy again" in shown(recovery) and recovery.params["thread_ts"] == ts
        edit = await w.rig.slack.wait_for("chat.update", lambda c: c.ok)
        assert edit.params["ts"] == ts and "resolved after" in shown(edit)
        assert not w.rig.slack.violations


async def test_a_follow_up_dropped_too_leaves_the_thread_to_the_next(tmp_path: Path) -> None:
    async with watched(tmp_path) as w:
        await crash_dropped_then_healed(w, dropped=2)  # still not in the channel for "ONLINE"
        (recovery,) = posted(w)
        assert "healthy again" in shown(recovery) and not recovery.params.get("thread_ts")
        assert "could not be posted (Slack said `not_in_channel`)" in shown(recovery)
        edit = await w.rig.slack.wait_for("chat.update", lambda c: c.ok)
        assert edit.params["ts"] == recovery.response["ts"]


async def test_after_a_restart_the_follow_up_still_says_its_alert_was_lost(tmp_path: Path) -> None:
    async with watched(tmp_path) as w:
        await w.poll("c_node3_crashed")
        w.rig.slack.fail("chat.postMessage", error="not_in_channel")
        await w.rig.deliverer().deliver_due()
        await w.poll("a_healthy")
        await w.rig.deliverer().deliver_due()  # a new deliverer: the bot restarted in between
        first, recovery = posted(w)
        assert not first.params.get("thread_ts") and "first alert could not be posted, so" in shown(first)
        assert recovery.params["thread_ts"] == first.response["ts"]
