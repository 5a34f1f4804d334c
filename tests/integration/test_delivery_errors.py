"""Alert delivery against replies that are not Slack's: a proxy's error page, a bug, a long outage.

The Slack side is the fake Slack over loopback HTTP with the real slack_sdk client; the store
is the bot's real SQLite outbox. The deliverer must never die: a dead one leaves every later
alert silently queued in the outbox.
"""

from __future__ import annotations

import asyncio
import inspect
import io
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.delivery import Deliverer, doc_json
from bot.errors import SlackError
from bot.metrics import Metrics
from bot.poster import SlackPoster, TextPoster
from bot.render.doc import Doc
from bot.settings import Settings
from bot.slack.client import web_client
from bot.store import AsyncStore
from tests.fakes.botharness import running_bot
from tests.fakes.slack import FakeSlack

pytestmark = pytest.mark.integration

ALERTS = "C0ALERTS"
# What Envoy in front of an API answers when its upstream is gone (seen from corporate proxies).
ENVOY = ("upstream connect error or disconnect/reset before headers. retried and the latest reset "
         "reason: remote connection failure, transport failure reason: delayed connect error: 111")
FAST = 0.05  # backoff and idle pause for these tests: retries come quickly, loops stay bounded


def now() -> datetime:
    return datetime.now(UTC)


def alert(verdict: str) -> dict[str, Any]:
    return {"doc": doc_json(Doc(verdict=verdict, fallback=verdict)), "channel": ALERTS}


@dataclass
class Rig:
    slack: FakeSlack
    store: AsyncStore
    poster: SlackPoster
    metrics: Metrics

    def deliverer(self, poster: Any = None) -> Deliverer:
        return Deliverer(self.store, poster or self.poster, now, max_backoff_s=FAST)


@asynccontextmanager
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with FakeSlack() as slack, aiohttp.ClientSession() as session:
        settings = Settings(slack_bot_token=slack.bot_token, slack_api_url=slack.api_url,
                            state_dir=str(tmp_path))
        metrics = Metrics()
        store = await AsyncStore.open(tmp_path / "outbox.sqlite3")
        try:
            yield Rig(slack, store, SlackPoster(web_client(settings, session, metrics=metrics)), metrics)
        finally:
            await store.close()


@asynccontextmanager
async def delivering(d: Deliverer) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(d.run(idle_s=FAST))
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def undelivered(store: AsyncStore) -> int:
    return len(await store.due(now() + timedelta(days=1)))


async def drained(store: AsyncStore) -> bool:
    return await undelivered(store) == 0


# ---------------------------------------------------------------- the Slack client


@pytest.mark.parametrize("status,content_type,page,shown", [
    (502, "text/plain", ENVOY, "HTTP 502, not a Slack API reply: upstream connect error"),
    (200, "text/plain", "Access denied by the web filter\n(policy 12)",
     "HTTP 200, not a Slack API reply: Access denied by the web filter (policy 12)"),
    (502, "text/html", "<h1>502 Bad Gateway</h1>", "HTTP 502, not a Slack API reply: (text/html"),
    (200, "application/json", "<html>maintenance</html>", "HTTP 200, not a Slack API reply: <html>maint"),
], ids=["envoy-502", "plain-200", "html-502", "bad-json-200"])
async def test_a_reply_that_is_not_slacks_json_is_one_clear_slack_error(
        tmp_path: Path, status: int, content_type: str, page: str, shown: str) -> None:
    async with rig(tmp_path) as r:
        r.slack.set_down(True, status=status, page=page, content_type=content_type)
        with pytest.raises(SlackError) as caught:
            await r.poster.client.chat_postMessage(channel=ALERTS, text="node3 went OFFLINE")
    message = str(caught.value)
    assert message.startswith("Slack chat.postMessage: ") and shown in message
    assert "\n" not in message and len(message) < 250  # the body is cut short
    assert 'result="bad_reply"' in r.metrics.render().decode()


# ---------------------------------------------------------------- the deliverer


async def test_deliverer_outlives_a_proxy_error_page_then_delivers(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        r.slack.set_down(True, status=502, page=ENVOY)
        await r.store.enqueue("root", alert("node3 went OFFLINE"), now=now())
        async with delivering(r.deliverer()) as task:
            first = await r.slack.wait_for("chat.postMessage", lambda c: c.status == 502)
            await r.slack.wait_for("chat.postMessage", lambda c: c.status == 502,
                                   since=r.slack.calls.index(first) + 1)  # it retried: still alive
            assert not task.done() and await undelivered(r.store) == 1
            r.slack.set_down(False)
            posted = await r.slack.wait_for("chat.postMessage", lambda c: c.ok)
            assert "node3 went OFFLINE" in str(posted.params)
            await _until(lambda: drained(r.store))


@dataclass
class FailsFirst:
    """The real Slack poster behind a bug that bites the first `times` posts."""

    inner: SlackPoster
    times: int

    async def post(self, channel: str, doc: Doc, thread_ts: str | None = None) -> str:
        if self.times > 0:
            self.times -= 1
            raise KeyError("ts")  # what a reply without "ts" would do in SlackPoster.post
        return await self.inner.post(channel, doc, thread_ts)

    async def update(self, channel: str, ts: str, doc: Doc) -> None:
        await self.inner.update(channel, ts, doc)


async def test_deliverer_outlives_an_unexpected_error_and_logs_its_traceback_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="bot.delivery")
    async with rig(tmp_path) as r:
        item = await r.store.enqueue("root", alert("node3 went OFFLINE"), now=now())
        await r.store.enqueue("root", alert("node2 went OFFLINE"), now=now())
        async with delivering(r.deliverer(FailsFirst(r.poster, times=3))):
            await r.slack.wait_for("chat.postMessage", lambda c: c.ok and "node2" in str(c.params))
    posted = [str(c.params) for c in r.slack.calls if c.method == "chat.postMessage"]
    assert len(posted) == 2 and "node3" in posted[0]  # kept, retried, and still first in line
    failures = [rec for rec in caplog.records if f"alert {item} not delivered" in rec.getMessage()]
    assert len(failures) == 3 and all("unexpected KeyError" in f.getMessage() for f in failures)
    assert [bool(f.exc_info) for f in failures] == [True, False, False]


async def test_backoff_stays_bounded_after_a_very_long_outage(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        item = await r.store.enqueue("root", alert("node3 went OFFLINE"), now=now())
        for _ in range(1100):  # ~18 hours of 60 s retries: 2.0 ** 1100 no longer fits a float
            await r.store.mark_failed(item, now())
        r.slack.fail("chat.postMessage", error="internal_error")
        assert await r.deliverer().deliver_due() == 0
        (retry,) = await r.store.due(now() + timedelta(days=1))
        assert retry.attempts == 1101 and retry.next_attempt_at <= now() + timedelta(seconds=FAST)


# ---------------------------------------------------------------- a refused token


def refusals(caplog: pytest.LogCaptureFixture, code: str) -> list[logging.LogRecord]:
    """The loud, error-level reports that Slack refuses the token with `code`."""
    return [rec for rec in caplog.records if rec.levelno == logging.ERROR and code in rec.getMessage()]


async def test_a_revoked_token_keeps_every_alert_queued_until_it_is_fixed(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="bot.delivery")
    async with rig(tmp_path) as r, aiohttp.ClientSession() as session:
        revoked = Settings(slack_bot_token="xoxb-revoked", slack_api_url=r.slack.api_url,
                           state_dir=str(tmp_path))
        await r.store.enqueue("root", alert("node3 went OFFLINE"), now=now())
        await r.store.enqueue("root", alert("node2 went OFFLINE"), now=now())
        async with delivering(r.deliverer(SlackPoster(web_client(revoked, session)))):
            await _until(lambda: len(_refused(r.slack, "invalid_auth")) >= 3)  # refused, retried, ...
        assert await undelivered(r.store) == 2 and len(refusals(caplog, "invalid_auth")) == 1
        async with delivering(r.deliverer()):  # the token is fixed and the bot restarted
            await r.slack.wait_for("chat.postMessage", lambda c: c.ok and "node2" in str(c.params))
    posted = [str(c.params) for c in r.slack.calls if c.method == "chat.postMessage" and c.ok]
    assert len(posted) == 2 and "node3" in posted[0]  # nothing lost, still in order


@pytest.mark.parametrize("code", ["not_authed", "account_inactive", "token_revoked", "token_expired",
                                  "missing_scope"])
async def test_a_token_error_is_retried_and_logged_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, code: str) -> None:
    caplog.set_level(logging.WARNING, logger="bot.delivery")
    async with rig(tmp_path) as r:
        r.slack.fail("chat.postMessage", error=code, times=3)
        item = await r.store.enqueue("root", alert("node3 went OFFLINE"), now=now())
        async with delivering(r.deliverer()):
            posted = await r.slack.wait_for("chat.postMessage", lambda c: c.ok)
            await _until(lambda: drained(r.store))
    assert "node3 went OFFLINE" in str(posted.params) and len(_refused(r.slack, code)) == 3
    assert len(refusals(caplog, code)) == 1  # one error for the outage, not one per retry
    assert not [rec for rec in caplog.records if f"alert {item} dropped" in rec.getMessage()]


def _refused(slack: FakeSlack, code: str) -> list[Any]:
    return [c for c in slack.calls if c.method == "chat.postMessage" and c.response.get("error") == code]


# ---------------------------------------------------------------- readiness


async def test_readyz_reports_a_stopped_deliverer() -> None:
    async with running_bot(metrics_port=0) as h:
        assert h.bot.ops is not None
        url = f"http://127.0.0.1:{h.bot.ops.port}/readyz"
        async with h.http.get(url) as resp:
            assert resp.status == 200 and (await resp.json())["checks"]["delivery"] is True
        (task,) = [t for t in h.bot.runtime.watching if t.get_name() == "deliverer"]
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        async with h.http.get(url) as resp:
            assert resp.status == 503 and (await resp.json())["checks"]["delivery"] is False


async def _until(done: Any, timeout: float = 5.0) -> None:
    """Poll a cheap condition the code under test has no event for (the store's outbox)."""
    async with asyncio.timeout(timeout):
        while not await _now(done()):
            await asyncio.sleep(0.01)


async def _now(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def test_the_deliverer_prunes_old_history_hourly_while_it_runs(tmp_path: Path) -> None:
    clock = [datetime(2026, 3, 1, tzinfo=UTC)]

    async def delivered(days_ago: int) -> int:
        item = await store.enqueue("root", {"channel": "C1"}, now=clock[0] - timedelta(days=days_ago))
        await store.mark_delivered(item, "1.1", now=clock[0] - timedelta(days=days_ago))
        return item

    async def kept() -> list[int]:
        rows = await store.call(lambda db: db.connection.execute("SELECT id FROM outbox ORDER BY id").rows)
        return [r["id"] for r in rows]

    async def until(wanted: list[int]) -> list[int]:
        for _ in range(200):  # bounded: the loop turns every 10 ms
            if await kept() == wanted:
                break
            await asyncio.sleep(0.01)
        return await kept()

    store = await AsyncStore.open(tmp_path / "state.sqlite3")
    try:
        await delivered(31)
        recent = await delivered(29)
        deliverer = Deliverer(store, TextPoster(io.StringIO()), lambda: clock[0],
                              retention=timedelta(days=30))
        task = asyncio.create_task(deliverer.run(idle_s=0.01))
        try:
            assert await until([recent]) == [recent]  # the first round prunes
            late = await delivered(40)  # old history appearing now waits for the next hourly prune
            clock[0] += timedelta(minutes=30)
            await asyncio.sleep(0.1)
            assert await kept() == [recent, late]
            clock[0] += timedelta(minutes=31)
            assert await until([recent]) == [recent]
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    finally:
        await store.close()


async def test_an_alert_whose_sender_died_mid_send_is_sent_again_marked_as_possibly_repeated(
        tmp_path: Path) -> None:
    """A leader that was killed between Slack's answer and recording it leaves its claim on the row:
    the next leader must send it (never lose it) and tell the reader the copy above is the same."""
    async with rig(tmp_path) as r:
        epoch = await r.store.take_leadership("a", now())
        died = await r.store.enqueue("root", alert("node3 went OFFLINE"), now=now())
        assert await r.store.claim_send(died, epoch)  # ... and the replica was killed here
        failed = await r.store.enqueue("root", alert("node2 went OFFLINE"), now=now())
        assert await r.store.claim_send(failed, epoch)
        await r.store.mark_failed(failed, now())  # Slack refused it: nobody has it, not in doubt
        epoch = await r.store.take_leadership("b", now())

        async def claim(item_id: int) -> bool:
            return await r.store.claim_send(item_id, epoch)

        deliverer = r.deliverer()
        deliverer.claim = claim
        async with delivering(deliverer):
            await _until(lambda: drained(r.store))
        posts = {str(c.params["text"]): str(c.params.get("blocks")) for c in r.slack.calls
                 if c.method == "chat.postMessage" and c.ok}
        assert set(posts) == {"node3 went OFFLINE", "node2 went OFFLINE"}
        assert "Sent again after the bot failed over" in posts["node3 went OFFLINE"]
        assert "Sent again" not in posts["node2 went OFFLINE"]
