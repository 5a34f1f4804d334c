"""Answers are never dropped silently: failed edits, failed response_url replies, thread replies
sent to the channel too, and usage errors that must say what is wrong. Signed HTTP in, the fake
Slack out, real SSH to the demo cluster."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest

from bot.approvals import State
from tests.fakes.botharness import CHANNEL, Harness, running_bot
from tests.fakes.signing import slash_command_body, thread_message_event
from tests.fakes.slack import BOT_ID, BOT_USER_ID, Call

USER, BOSS = "U0USER", "U0BOSS"


def text_of(call: Call) -> str:
    return json.dumps(call.params.get("blocks", [])) + str(call.params.get("text", ""))


def healthy(call: Call) -> bool:
    return call.ok and "is healthy" in text_of(call)


# --------------------------------------------------------------- the final answer (chat.update)


@pytest.mark.parametrize("break_edit", ["deleted", "rate_limited"])
async def test_failed_edit_of_the_progress_message_is_posted_anew(break_edit: str) -> None:
    async with running_bot(watch=False) as h:
        if break_edit == "deleted":  # someone deleted "gathering status…" meanwhile
            h.slack.fail("chat.update", error="message_not_found")
        else:  # still 429 once slack_sdk's 5 retries are spent
            h.slack.rate_limit("chat.update", times=6, retry_after=0)
        await h.slash("status prod-haproxy")
        progress = await h.slack.wait_for("chat.postMessage")
        answer = await h.slack.wait_for("chat.postMessage", healthy, timeout=15)
        assert answer.params["channel"] == CHANNEL and answer is not progress
        assert not any(c.ok for c in h.slack.calls if c.method == "chat.update")


async def test_answer_that_cannot_be_posted_anywhere_tells_the_user_why() -> None:
    async with running_bot(watch=False) as h:
        # An answer Slack refuses everywhere; a one-line notice still gets through.
        h.slack.fail("chat.update", error="msg_too_long")
        h.slack.fail("chat.postMessage", error="msg_too_long", after=1)  # after the progress post
        h.slack.fail("response_url", error="msg_too_long")
        h.slack.fail("chat.postEphemeral", error="msg_too_long")
        await h.slash("status prod-haproxy")
        notice = await h.slack.wait_for("response_url", lambda c: c.ok, timeout=15)
        assert notice.params["response_type"] == "ephemeral"
        assert "could not be posted" in text_of(notice) and "msg_too_long" in text_of(notice)


async def test_answer_lost_everywhere_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="bot.slack.replies")
    async with running_bot(watch=False) as h:
        h.slack.fail("chat.update", error="msg_too_long")
        h.slack.fail("chat.postMessage", error="msg_too_long", after=1)
        h.slack.fail("response_url", error="msg_too_long", times=2)
        h.slack.fail("chat.postEphemeral", error="msg_too_long", times=2)
        await h.slash("status prod-haproxy")
        await h.slack.wait_for("chat.postEphemeral", lambda c: "could not be posted" in text_of(c),
                               timeout=15)
        await _logged(caplog, "the answer could not be posted here")
        lost = [r.getMessage() for r in caplog.records if "could not tell" in r.getMessage()]
        assert len(lost) == 2 and "msg_too_long" in lost[-1]  # the answer, then the notice about it


async def _logged(caplog: pytest.LogCaptureFixture, needle: str, timeout: float = 5.0) -> None:
    """Log records arrive after the call the fake saw: poll, bounded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(needle in r.getMessage() for r in caplog.records):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no log line with {needle!r}")


# --------------------------------------------------------------- response_url replies


async def test_rate_limited_response_url_is_retried() -> None:
    async with running_bot(watch=False) as h:
        h.slack.rate_limit("response_url", times=1, retry_after=0)
        status, body, _ = await h.slash("cleanup prod-haproxy")  # healthy: refused after the ack
        assert status == 200 and "ephemeral" not in body
        delivered = await h.slack.wait_for("response_url", lambda c: c.ok, timeout=10)
        assert "nothing to clean up" in text_of(delivered)
        assert [c.status for c in h.slack.calls if c.method == "response_url"] == [429, 200]
        assert not [c for c in h.slack.calls if c.method == "chat.postEphemeral"]


async def test_long_retry_after_is_not_waited_for() -> None:
    async with running_bot(watch=False) as h:
        h.slack.rate_limit("response_url", times=1, retry_after=60)
        started = time.monotonic()
        await h.slash("cleanup prod-haproxy")
        shown = await h.slack.wait_for("chat.postEphemeral", lambda c: c.ok, timeout=10)
        assert time.monotonic() - started < 8.0
        assert shown.params["user"] == USER and "nothing to clean up" in text_of(shown)


async def test_expired_response_url_falls_back_to_post_ephemeral() -> None:
    async with running_bot(watch=False) as h:
        expired = f"{h.slack.base_url}/hooks/commands/long-gone"
        body = slash_command_body(text="cleanup prod-haproxy", user_id=USER, channel_id=CHANNEL,
                                  response_url=expired)
        await h.post(body, "application/x-www-form-urlencoded")
        shown = await h.slack.wait_for("chat.postEphemeral", lambda c: c.ok, timeout=10)
        assert shown.params["channel"] == CHANNEL and shown.params["user"] == USER
        assert "nothing to clean up" in text_of(shown)
        assert [c.status for c in h.slack.calls if c.method == "response_url"] == [404]  # never retried


async def test_refusal_lost_everywhere_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bot.slack.replies")
    async with running_bot(watch=False) as h:
        h.slack.rate_limit("response_url", times=3, retry_after=0)
        h.slack.fail("chat.postEphemeral", error="channel_not_found")
        await h.slash("cleanup prod-haproxy")
        await h.slack.wait_for("chat.postEphemeral", timeout=10)
        await _logged(caplog, "could not tell")
        lost = [r for r in caplog.records if "could not tell" in r.getMessage()]
        assert len(lost) == 1 and lost[0].levelno == logging.WARNING
        line = lost[0].getMessage()
        assert "U0USER" in line and "HTTP 429" in line and "channel_not_found" in line
        assert [c.status for c in h.slack.calls if c.method == "response_url"] == [429, 429, 429]


# --------------------------------------------------------------- approvals in threads


async def _request(h: Harness) -> tuple[str, str, str]:
    await h.demo.demo_command(("fail", "virtual_ip_2"))
    await h.slash("cleanup prod-haproxy virtual_ip_2")
    await h.slack.wait_for("response_url", lambda c: "posted" in text_of(c), timeout=15)
    req = (await h.bot.runtime.store.pending_requests())[-1]
    return req.id, req.channel, req.message_ts


async def test_approve_also_sent_to_channel_counts() -> None:
    async with running_bot(watch=False, cluster={"approvers": (BOSS,)}) as h:
        rid, channel, thread = await _request(h)
        # The bot's own broadcast saying "approve" is never a decision.
        own = thread_message_event(text="approve", ts="1700000099.000050", thread_ts=thread,
                                   user_id=BOT_USER_ID, channel_id=channel)
        own["event"].update(subtype="thread_broadcast", bot_id=BOT_ID)
        await h.event(own)
        reply = thread_message_event(text="approve", ts="1700000099.000100", thread_ts=thread,
                                     user_id=BOSS, channel_id=channel)
        reply["event"]["subtype"] = "thread_broadcast"  # "Also send to #channel" was ticked
        status, _, _ = await h.event(reply)
        assert status == 200
        await h.slack.wait_for("chat.postMessage", lambda c: "verified" in text_of(c), timeout=30)
        assert (await h.bot.runtime.store.get_request(rid)).state is not State.PENDING
        deciders = [e.actor for e in await h.bot.runtime.store.audit_tail(50)
                    if e.request_id == rid and e.event == "approve"]
        assert deciders == [BOSS]
        assert not [c for c in h.slack.calls if c.method == "chat.postEphemeral"
                    and c.params.get("user") == BOT_USER_ID]


# --------------------------------------------------------------- usage errors


async def test_audit_of_zero_entries_is_a_usage_error() -> None:
    async with running_bot(watch=False) as h:
        await h.slash("audit 0")
        shown = await h.slack.wait_for("response_url", timeout=10)
        assert shown.params["response_type"] == "ephemeral"
        text = text_of(shown)
        assert "1 to 50" in text and "empty" not in text and "last 0" not in text
