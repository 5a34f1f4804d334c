"""Alerts end to end: the demo cluster over real SSH, the watcher, the fake Slack over HTTP."""

from __future__ import annotations

import json

from tests.fakes.botharness import ALERTS, Harness, running_bot


def text_of(call: object) -> str:
    params = call.params  # type: ignore[attr-defined]
    return json.dumps(params.get("blocks", [])) + str(params.get("text", ""))


async def test_kill_a_node_one_incident_then_recovery_in_thread() -> None:
    async with running_bot() as h:
        await h.watcher.wait_polls(2)
        assert h.roots() == []  # healthy at start: nothing to say
        await h.demo.demo_command(("kill", "node2"))
        root = await h.slack.wait_for("chat.postMessage", lambda c: c.params.get("channel") == ALERTS)
        text = text_of(root)
        assert "node2 went OFFLINE" in text and "virtual_ip_2 moved node2 \\u2192 node3" in text
        await h.watcher.wait_polls(5)
        assert len(h.roots()) == 1  # one incident, never posted twice
        await h.demo.demo_command(("heal", "node2"))
        ts = root.response["ts"]
        edit = await h.slack.wait_for("chat.update", lambda c: c.params.get("ts") == ts, timeout=20)
        assert "resolved after" in text_of(edit)
        replies = [c for c in h.slack.calls
                   if c.method == "chat.postMessage" and c.params.get("thread_ts") == ts]
        assert any("ONLINE" in text_of(r) for r in replies)
        assert any("healthy again" in text_of(r) for r in replies)
        assert len(h.roots()) == 1 and not h.slack.violations


async def test_restart_mid_incident_repeats_nothing() -> None:
    async with running_bot() as h:
        await h.demo.demo_command(("kill", "node3"))
        await h.slack.wait_for("chat.postMessage", lambda c: c.params.get("channel") == ALERTS)
        await h.watcher.wait_polls(2)
        await h.restart()
        await h.watcher.wait_polls(4)
        assert len(h.roots()) == 1
        await h.demo.demo_command(("heal", "node3"))
        await h.slack.wait_for("chat.update", lambda c: "resolved after" in text_of(c), timeout=20)


async def test_change_while_the_bot_was_down_is_reported() -> None:
    async with running_bot() as h:
        await h.watcher.wait_polls(2)

        async def crash() -> None:
            await h.demo.demo_command(("kill", "node1"))

        await h.restart(down_while=crash)
        root = await h.slack.wait_for("chat.postMessage", lambda c: c.params.get("channel") == ALERTS)
        assert "node1 went OFFLINE" in text_of(root)


async def test_slack_down_alerts_delivered_later_in_order() -> None:
    async with running_bot() as h:
        await h.watcher.wait_polls(1)
        h.slack.set_down(True)
        await h.demo.demo_command(("kill", "node2"))
        await h.watcher.wait_polls(3)
        await h.demo.demo_command(("heal", "node2"))
        await h.watcher.wait_polls(3)
        h.slack.set_down(False)
        edit = await h.slack.wait_for("chat.update", lambda c: c.ok and "resolved after" in text_of(c),
                                      timeout=90)
        delivered = [c for c in h.slack.calls if c.ok and c.method in ("chat.postMessage", "chat.update")
                     and c.params.get("channel") == ALERTS]
        kinds = [("root" if c.method == "chat.postMessage" and not c.params.get("thread_ts")
                  else "edit" if c.method == "chat.update" else "reply") for c in delivered]
        assert kinds[0] == "root" and kinds[-1] == "edit" and "reply" in kinds
        assert "node2 went OFFLINE" in text_of(delivered[0])
        assert edit.params["ts"] == delivered[0].response["ts"]


async def flap_node2(h: Harness, times: int) -> None:
    """Crash and heal node2 `times` times, one watcher poll after each."""
    for _ in range(times):
        for verb in ("kill", "heal"):
            await h.demo.demo_command((verb, "node2"))
            await h.watcher.wait_polls(1)


async def test_flapping_becomes_one_quiet_incident() -> None:
    async with running_bot() as h:
        await h.watcher.wait_polls(1)
        await flap_node2(h, 6)
        # Issue 14: one root for the node, its flapping told in that thread and shown in the channel.
        (root,) = h.roots()
        assert "node2" in text_of(root)
        ts = root.response["ts"]
        flapping = [c for c in h.slack.calls
                    if c.method == "chat.postMessage" and "is flapping" in text_of(c)]
        assert len(flapping) == 1
        assert flapping[0].params.get("thread_ts") == ts and flapping[0].params.get("reply_broadcast")
        await flap_node2(h, 3)
        assert len(h.roots()) == 1  # quiet while it keeps flapping


async def test_a_flap_that_calmed_down_is_resolved_in_its_thread() -> None:
    # Healthy and stable at the end: the collector hands back the very same report every poll
    # (detail_every=1000: no periodic detail refresh either), so the resolution must not wait for
    # a change in the report.
    async with running_bot(flap_window_s=3.0, flap_limit=2, detail_every=1000) as h:
        await h.watcher.wait_polls(1)
        await flap_node2(h, 3)
        flap = await h.slack.wait_for("chat.postMessage", lambda c: c.ok and "is flapping" in text_of(c))
        ts = flap.params["thread_ts"]  # told in node2's incident (issue 14), whose root ends resolved
        edit = await h.slack.wait_for("chat.update", lambda c: c.params.get("ts") == ts
                                      and "resolved after" in text_of(c), since=h.slack.calls.index(flap),
                                      timeout=15)
        assert "resolved after" in text_of(edit)
        replies = [text_of(c) for c in h.slack.calls
                   if c.method == "chat.postMessage" and c.params.get("thread_ts") == ts]
        assert any("healthy again" in r for r in replies)
        await h.watcher.wait_polls(2)  # a second flapping key calms a few microseconds later
        assert await h.bot.runtime.store.open_incidents(h.bot.settings.clusters[0].name) == []
        assert not h.slack.violations
