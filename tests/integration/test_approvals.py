"""Approval-gated remediation end to end: signed Slack requests over HTTP, the fake Slack, the demo
cluster over real SSH. The one invariant: no command runs without its approvals, and none twice."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.approvals import Approve, State
from bot.runtime import open_store
from tests.fakes.botharness import SECRET, Harness, running_bot
from tests.fakes.signing import block_actions_body, events_body, sign, thread_message_event

BOSS, ALICE, BOB, USER, STRANGER = "U0BOSS", "U0ALICE", "U0BOB", "U0USER", "U0STRANGER"
CLEANUP = "pcs resource cleanup virtual_ip_2"


def text_of(call: Any) -> str:
    return json.dumps(call.params.get("blocks", [])) + str(call.params.get("text", ""))


async def ask(h: Harness, text: str = "cleanup prod-haproxy virtual_ip_2", user: str = USER) -> Any:
    """File a request by slash command; returns the stored Request once its root is posted."""
    mark = len(h.slack.calls)
    status, body, _ = await h.slash(text, user=user)
    assert (status == 200 and body in ("", "{}")) or "ephemeral" not in body, body
    await h.slack.wait_for("chat.postMessage", lambda c: "requested by" in text_of(c), since=mark)
    # The confirmation to the requester comes after the root's ts is stored.
    await h.slack.wait_for("response_url", lambda c: "posted: it runs after" in json.dumps(c.params),
                           since=mark)
    return (await h.bot.runtime.store.pending_requests())[-1]


async def settle(h: Harness) -> None:
    await h.remediation.wait_idle()


async def state(h: Harness, rid: str) -> State:
    req = await h.bot.runtime.store.get_request(rid)
    assert req is not None
    return req.state


async def ephemeral_to(h: Harness, user: str, needle: str) -> None:
    await h.slack.wait_for("chat.postEphemeral", lambda c: c.params.get("user") == user
                           and needle in str(c.params.get("text")), timeout=10)


async def test_happy_path_runs_once_and_verifies() -> None:
    async with running_bot(cluster={"approvers": (BOSS,)}) as h:
        await h.demo.demo_command(("fail", "virtual_ip_2"))
        req = await ask(h)
        assert req.argv == ("pcs", "resource", "cleanup", "virtual_ip_2") and req.node == "node1"
        root = next(c for c in h.slack.calls if "requested by" in text_of(c))
        assert "sudo -n pcs resource cleanup virtual_ip_2" in text_of(root)
        assert "failed action monitor of virtual_ip_2 on node2" in text_of(root)
        daemons_before = len(h.node_commands("systemctl is-active"))
        await h.click("clusterbot:approve", req.id, BOSS, message_ts=root.response["ts"])
        await h.slack.wait_for("chat.postMessage", lambda c: "verified" in text_of(c), timeout=30)
        await settle(h)
        assert await state(h, req.id) is State.SUCCEEDED
        assert h.node_commands(CLEANUP) == [f"sudo -n {CLEANUP}"]
        # The re-check before running and each verify poll ask every node everything (a status
        # may reuse seconds-old daemon answers; a decision to run a command may not).
        assert len(h.node_commands("systemctl is-active")) - daemons_before >= 9
        edits = [text_of(c) for c in h.slack.calls if c.method == "chat.update"
                 and c.params.get("ts") == root.response["ts"]]
        assert any("SUCCEEDED" in e for e in edits) and "Approve" not in edits[-1]
        thread = [text_of(c) for c in h.slack.calls if c.params.get("thread_ts") == root.response["ts"]]
        assert any("exited 0" in t for t in thread) and any("is healthy" in t for t in thread)
        assert h.demo.sim.snapshot().failures == ()


async def test_unauthorized_self_and_stranger_are_refused() -> None:
    async with running_bot(cluster={"approvers": (BOSS, USER)}) as h:
        await h.demo.demo_command(("fail", "virtual_ip_2"))
        req = await ask(h, user=USER)
        await h.click("clusterbot:approve", req.id, STRANGER)
        await ephemeral_to(h, STRANGER, "not an approver")
        await h.click("clusterbot:approve", req.id, USER)
        await ephemeral_to(h, USER, "your own request")
        await h.click("clusterbot:cancel", req.id, STRANGER)
        await ephemeral_to(h, STRANGER, "")
        await settle(h)
        assert await state(h, req.id) is State.PENDING and h.node_commands(CLEANUP) == []


async def test_approval_by_user_group_membership() -> None:
    async with running_bot(cluster={"approvers": ("S0OPS",)}) as h:
        h.slack.usergroup_members["S0OPS"] = [ALICE]
        await h.demo.demo_command(("fail", "virtual_ip_2"))
        req = await ask(h)
        await h.click("clusterbot:approve", req.id, BOB)
        await ephemeral_to(h, BOB, "not an approver")
        await h.click("clusterbot:approve", req.id, ALICE)
        await h.slack.wait_for("chat.postMessage", lambda c: "verified" in text_of(c), timeout=30)
        await settle(h)
        assert await state(h, req.id) is State.SUCCEEDED and len(h.node_commands(CLEANUP)) == 1


async def test_two_approvals_required_and_double_click() -> None:
    async with running_bot(cluster={"approvers": (ALICE, BOB), "approvals_required": 2}) as h:
        await h.demo.demo_command(("fail", "virtual_ip_2"))
        req = await ask(h)
        await asyncio.gather(*(h.click("clusterbot:approve", req.id, ALICE) for _ in range(3)))
        await ephemeral_to(h, ALICE, "already approved")
        await settle(h)
        assert await state(h, req.id) is State.PENDING and h.node_commands(CLEANUP) == []
        await h.click("clusterbot:approve", req.id, BOB)
        await h.slack.wait_for("chat.postMessage", lambda c: "verified" in text_of(c), timeout=30)
        await settle(h)
        assert await state(h, req.id) is State.SUCCEEDED and len(h.node_commands(CLEANUP)) == 1


async def test_approvers_racing_and_slack_retries_run_once() -> None:
    async with running_bot(cluster={"approvers": (ALICE, BOB)}) as h:
        await h.demo.demo_command(("fail", "virtual_ip_2"))
        req = await ask(h)
        url = h.slack.response_url(channel="C0CHAN", message_ts="1.0", kind="actions")
        body = block_actions_body(action_id="clusterbot:approve", value=req.id, user_id=ALICE,
                                  message_ts="1.0", response_url=url)
        retry = {**sign("test-signing-secret", body), "X-Slack-Retry-Num": "1",
                 "X-Slack-Retry-Reason": "http_timeout"}
        await asyncio.gather(
            h.post(body, "application/x-www-form-urlencoded"),
            h.post(body, "application/x-www-form-urlencoded", retry),
            h.click("clusterbot:approve", req.id, BOB),
            h.click("clusterbot:approve", req.id, BOB))
        await settle(h)
        await h.slack.wait_for("chat.postMessage", lambda c: "verified" in text_of(c), timeout=30)
        assert len(h.node_commands(CLEANUP)) == 1


async def test_deny_then_approve_is_refused() -> None:
    async with running_bot(cluster={"approvers": (BOSS,)}) as h:
        await h.demo.demo_command(("fail", "virtual_ip_2"))
        req = await ask(h)
        await h.click("clusterbot:deny", req.id, BOSS)
        await h.slack.wait_for("chat.update", lambda c: "DENIED" in text_of(c))
        await h.click("clusterbot:approve", req.id, BOSS)
        await ephemeral_to(h, BOSS, "denied")
        await settle(h)
        assert await state(h, req.id) is State.DENIED and h.node_commands(CLEANUP) == []


async def test_requester_cancels_and_thread_replies_decide() -> None:
    async with running_bot(cluster={"approvers": (BOSS,)}) as h:
        await h.demo.demo_command(("fail", "virtual_ip_2"))
        req = await ask(h)
        ts = (await h.bot.runtime.store.get_request(req.id)).message_ts
        await h.event(thread_message_event(text="approve", ts="1700000099.000100", thread_ts=ts,
                                           user_id=STRANGER, channel_id=req.channel))
        await ephemeral_to(h, STRANGER, "not an approver")
        await h.event(thread_message_event(text="cancel", ts="1700000099.000200", thread_ts=ts,
                                           user_id=USER, channel_id=req.channel))
        await h.slack.wait_for("chat.update", lambda c: "CANCELLED" in text_of(c))
        assert await state(h, req.id) is State.CANCELLED and h.node_commands(CLEANUP) == []
        # A thread reply "approve" by an approver on another request runs it.
        req2 = await ask(h)
        ts2 = (await h.bot.runtime.store.get_request(req2.id)).message_ts
        await h.event(thread_message_event(text="Approve", ts="1700000099.000300", thread_ts=ts2,
                                           user_id=BOSS, channel_id=req2.channel))
        await h.slack.wait_for("chat.postMessage", lambda c: "verified" in text_of(c), timeout=30)
        assert len(h.node_commands(CLEANUP)) == 1


async def test_a_thread_reply_slack_sends_again_is_decided_once() -> None:
    """Slack re-sends the event of a `deny` reply it thinks was lost: the request is denied once,
    and the approver hears nothing about a second, already-decided denial."""
    async with running_bot(cluster={"approvers": (BOSS,)}) as h:
        await h.demo.demo_command(("fail", "virtual_ip_2"))
        req = await ask(h)
        ts = (await h.bot.runtime.store.get_request(req.id)).message_ts
        body = events_body(thread_message_event(text="deny", ts="1700000099.000400", thread_ts=ts,
                                                user_id=BOSS, channel_id=req.channel))
        await h.post(body, "application/json")
        await h.slack.wait_for("chat.update", lambda c: "DENIED" in text_of(c))
        await h.post(body, "application/json", {**sign(SECRET, body), "X-Slack-Retry-Num": "1"})
        await h.slash("status prod-haproxy")  # answered after the retry was taken
        await h.slack.wait_for("chat.update", lambda c: "prod-haproxy" in text_of(c)
                               and "DENIED" not in text_of(c), timeout=10)
        await settle(h)
        assert [c for c in h.slack.calls if c.method == "chat.postEphemeral"] == []
        denials = [e for e in await h.bot.runtime.store.audit_all() if e.request_id == req.id
                   and e.event == "deny"]
        assert len(denials) == 1 and await state(h, req.id) is State.DENIED


async def test_expiry_with_an_injected_clock() -> None:
    async with running_bot(cluster={"approvers": (BOSS,)}) as h:
        await h.demo.demo_command(("fail", "virtual_ip_2"))
        req = await ask(h)
        real = h.remediation.clock
        h.remediation.clock = lambda: real() + timedelta(minutes=16)
        await h.click("clusterbot:approve", req.id, BOSS)
        await ephemeral_to(h, BOSS, "expired")
        await h.slack.wait_for("chat.update", lambda c: "EXPIRED" in text_of(c))
        assert await state(h, req.id) is State.EXPIRED and h.node_commands(CLEANUP) == []


FORGED = ["deadbeefdeadbeef", "", "x; rm -rf /", "../../etc/passwd", "1' OR '1'='1", "A" * 500]


async def test_forged_payloads_run_nothing() -> None:
    async with running_bot(cluster={"approvers": (BOSS,)}) as h:
        await h.demo.demo_command(("fail", "virtual_ip_2"))
        req = await ask(h)
        await h.click("clusterbot:deny", req.id, BOSS)
        for value in [*FORGED, req.id]:  # the denied request's own id too
            await h.click("clusterbot:approve", value, BOSS)
        await h.click("clusterbot:request_fix", "99999", BOSS)
        await settle(h)
        assert h.node_commands("sudo -n pcs ") == []
        audit = [e.event for e in await h.bot.runtime.store.audit_tail(50)]
        assert audit.count("approve-unknown") == len(FORGED)


async def test_restart_with_a_pending_request() -> None:
    async with running_bot(cluster={"approvers": (BOSS,)}) as h:
        await h.demo.demo_command(("fail", "virtual_ip_2"))
        req = await ask(h)
        await h.restart()
        await h.click("clusterbot:approve", req.id, BOSS)
        await h.slack.wait_for("chat.postMessage", lambda c: "verified" in text_of(c), timeout=30)
        await h.remediation.wait_idle()
        assert await state(h, req.id) is State.SUCCEEDED and len(h.node_commands(CLEANUP)) == 1


async def test_cluster_moved_between_request_and_approval() -> None:
    async with running_bot(cluster={"approvers": (BOSS,)}) as h:
        await h.demo.demo_command(("fail", "virtual_ip_2"))
        req = await ask(h)
        await h.demo.demo_command(("kill", "node3"))
        await h.click("clusterbot:approve", req.id, BOSS)
        await h.slack.wait_for("chat.update", lambda c: "REFUSED" in text_of(c), timeout=20)
        await settle(h)
        assert await state(h, req.id) is State.REFUSED and h.node_commands(CLEANUP) == []


async def test_unsafe_requests_refused_up_front() -> None:
    async with running_bot(cluster={"approvers": (BOSS,)}) as h:
        await h.demo.demo_command(("kill", "node3"))
        await h.watcher.wait_polls(1)
        for text, needle in (("standby prod-haproxy node2", "healthy node"),
                             ("resync prod-haproxy node1", "would lose quorum"),
                             ("cleanup prod-haproxy virtual_ip_1", "nothing to clean up"),
                             ("unstandby prod-haproxy node1", "not in standby")):
            mark = len(h.slack.calls)
            await h.slash(text)
            call = await h.slack.wait_for("response_url", since=mark, timeout=10)
            assert needle in json.dumps(call.params) and call.params["response_type"] == "ephemeral"
        assert await h.bot.runtime.store.pending_requests() == []


INJECTIONS = [
    "virtual_ip_2;id", "virtual_ip_2$(id)", "`id`", "virtual_ip_2&&reboot", "'virtual_ip_2'",
    '"virtual_ip_2"', "virtual_\u0456p_2", "virtual_ip_2\u200b", "a" * 70, "virtual_ip_2|sh",
    "../virtual_ip_2", "-rf", "--node=node1", "node1>x",
]


@pytest.mark.parametrize("payload", INJECTIONS)
async def test_injection_in_every_argument_runs_nothing(payload: str) -> None:
    async with running_bot(cluster={"approvers": (BOSS,)}) as h:
        await h.demo.demo_command(("fail", "virtual_ip_2"))
        for text in (f"cleanup prod-haproxy {payload}", f"cleanup prod-haproxy virtual_ip_2 {payload}",
                     f"move prod-haproxy {payload} node3", f"move prod-haproxy virtual_ip_2 {payload}",
                     f"resync prod-haproxy {payload}", f"standby {payload} node2"):
            status, _, _ = await h.slash(text)
            assert status == 200
        await h.watcher.wait_polls(1)
        assert await h.bot.runtime.store.pending_requests() == []
        assert h.node_commands("sudo -n pcs ") == [] and h.node_commands("systemctl restart") == []


async def test_failing_command_is_reported() -> None:
    bad = {"cleanup": ("pcs", "resource", "cleanup", "{resource?}", "--no-such-option")}
    async with running_bot(cluster={"approvers": (BOSS,), "templates": bad}) as h:
        await h.demo.demo_command(("fail", "virtual_ip_2"))
        req = await ask(h)
        await h.click("clusterbot:approve", req.id, BOSS)
        await h.slack.wait_for("chat.update", lambda c: "FAILED" in text_of(c), timeout=20)
        out = await h.slack.wait_for("chat.postMessage", lambda c: ":x: exited" in text_of(c))
        assert "--no-such-option" in h.node_commands("cleanup")[0] and "exited" in text_of(out)
        assert await state(h, req.id) is State.FAILED


async def test_lock_contention_fails_closed() -> None:
    async with running_bot(cluster={"approvers": (BOSS,)}) as h:
        await h.demo.demo_command(("fail", "virtual_ip_2"))
        req = await ask(h)
        store = h.bot.runtime.store
        assert await store.try_lock("prod-haproxy", "someone-else", h.remediation.clock())
        await h.click("clusterbot:approve", req.id, BOSS)
        note = await h.slack.wait_for("chat.postMessage", lambda c: "refused before running" in text_of(c),
                                      timeout=20)
        assert "another remediation (someone-else) is running" in text_of(note)
        await settle(h)
        # Ended, not left APPROVED: a restart must not run it unasked once the lock is free.
        assert h.node_commands(CLEANUP) == [] and await state(h, req.id) is State.REFUSED
        assert await store.unlock("prod-haproxy", "someone-else")
        await h.restart()
        await h.remediation.wait_idle()
        assert h.node_commands(CLEANUP) == [] and await state(h, req.id) is State.REFUSED


async def test_slack_failing_to_edit_the_request_never_strands_it() -> None:
    # Someone deleted the request's message: every edit fails. The store decides, so the
    # approved command still runs once, finishes, and frees the cluster's lock.
    async with running_bot(cluster={"approvers": (BOSS,)}) as h:
        await h.demo.demo_command(("fail", "virtual_ip_2"))
        req = await ask(h)
        h.slack.fail("chat.update", error="message_not_found", times=50)
        await h.click("clusterbot:approve", req.id, BOSS)
        await h.slack.wait_for("chat.postMessage", lambda c: "verified" in text_of(c), timeout=30)
        await settle(h)
        assert await state(h, req.id) is State.SUCCEEDED and len(h.node_commands(CLEANUP)) == 1
        assert await h.bot.runtime.store.lock_holder("prod-haproxy") is None
        assert not any(c.ok for c in h.slack.calls if c.method == "chat.update")


async def test_an_approval_whose_window_passed_while_the_bot_was_down_does_not_run() -> None:
    async with running_bot(cluster={"approvers": (BOSS,)}, approval_ttl_s=2.0) as h:
        await h.demo.demo_command(("fail", "virtual_ip_2"))
        req = await ask(h)

        async def approved_then_window_ends() -> None:
            # The bot died right after the approval was stored, before it could start the command.
            store = open_store(h.bot.settings)
            try:
                store.apply(req.id, Approve(BOSS), now=req.created_at, is_approver=True)
            finally:
                store.close()
            await asyncio.sleep((req.expires_at - datetime.now(UTC)).total_seconds() + 0.2)
        await h.restart(down_while=approved_then_window_ends)
        await h.remediation.wait_idle()
        assert await state(h, req.id) is State.REFUSED and h.node_commands(CLEANUP) == []
        note = (await h.bot.runtime.store.get_request(req.id)).note
        assert note is not None and "approval window has passed" in note


async def test_a_request_the_bot_cannot_post_is_not_filed() -> None:
    # A private channel the bot was not invited to: Slack refuses the post. Nothing may wait in
    # the store (or the audit log) for approvals nobody can give; the user is told why.
    async with running_bot(watch=False, cluster={"approvers": (BOSS,)}) as h:
        await h.demo.demo_command(("fail", "virtual_ip_2"))
        h.slack.fail("chat.postMessage", error="not_in_channel", times=1)
        await h.slash("cleanup prod-haproxy virtual_ip_2", channel="G0PRIVATE")
        told = await h.slack.wait_for("response_url", lambda c: "could not post" in json.dumps(c.params),
                                      timeout=15)
        said = json.dumps(told.params)
        assert "not_in_channel" in said and "/invite @clusterbot" in said
        store = h.bot.runtime.store
        assert await store.pending_requests() == []
        assert not any(e.event == "request" for e in await store.audit_tail(20))
        req = await ask(h)  # the next request, in a channel the bot is in, is filed as usual
        assert req.message_ts is not None


async def test_request_fix_button_on_an_alert() -> None:
    async with running_bot(cluster={"approvers": (BOSS,)}) as h:
        await h.watcher.wait_polls(1)  # a change seen by the watcher, not a state it found at start
        await h.demo.demo_command(("fail", "virtual_ip_2"))
        alert = await h.slack.wait_for("chat.postMessage", lambda c: "Request fix" in text_of(c), timeout=20)
        blocks = alert.params["blocks"]
        button = next(e for b in blocks if b["type"] == "actions" for e in b["elements"])
        await h.click(button["action_id"], button["value"], USER)
        await h.slack.wait_for("chat.postMessage", lambda c: "requested by <@U0USER>" in text_of(c))
        # Stored once Slack answered the post (a request nobody can see is never filed).
        for _ in range(100):
            if await h.bot.runtime.store.pending_requests():
                break
            await asyncio.sleep(0.02)
        req = (await h.bot.runtime.store.pending_requests())[-1]
        assert req.action == "cleanup" and "virtual_ip_2" in req.args


async def test_audit_log_records_everything() -> None:
    async with running_bot(cluster={"approvers": (BOSS,)}) as h:
        await h.demo.demo_command(("fail", "virtual_ip_2"))
        req = await ask(h)
        await h.click("clusterbot:approve", req.id, BOSS)
        await h.slack.wait_for("chat.postMessage", lambda c: "verified" in text_of(c), timeout=30)
        await settle(h)
        audit = await h.bot.runtime.store.audit_tail(20)
        events = [(e.actor, e.event) for e in audit if e.request_id == req.id]
        assert [e for _, e in events][:1] == ["request"] and (BOSS, "approve") in events
        assert any(e == "finish" for _, e in events)
        await h.slash("audit 5", user=BOSS)
        call = await h.slack.wait_for("response_url", lambda c: "audit entries" in json.dumps(c.params))
        assert call.params["response_type"] == "ephemeral"


async def test_audit_jsonl_export() -> None:
    import sys

    async with running_bot(cluster={"approvers": (BOSS,)}) as h:
        await h.demo.demo_command(("fail", "virtual_ip_2"))
        req = await ask(h)
        await h.click("clusterbot:deny", req.id, BOSS)
        await h.slack.wait_for("chat.update", lambda c: "DENIED" in text_of(c))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "audit", "--jsonl", stdout=asyncio.subprocess.PIPE,
            env={"CLUSTERBOT_STATE_DIR": str(h.bot.settings.state_dir), "PATH": "/usr/bin:/bin"})
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    rows = [json.loads(line) for line in out.decode().splitlines()]
    assert [r["event"] for r in rows if r["request_id"] == req.id] == ["request", "deny"]
    assert rows[-1]["actor"] == BOSS and rows[-1]["state_to"] == "denied"
