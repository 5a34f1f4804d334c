"""Issue 14 on the real lab, end to end: the bot as `clusterbot run` wires it (HTTP mode, watcher,
deliverer, remediation) posting to the loopback fake Slack, while the real cluster fails.

One real event is one root in the alert channel, the rest in its thread; an approved fix's
effects open nothing and page nobody; a restart of the bot mid-incident repeats nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.server import start_bot
from commands import lookup
from commands.spec import Invocation, Source
from tests.fakes.slack import Call
from tests.lab.harness import ALERTS, LabBot, call_text, lab_bot, slack_settings
from tests.lab.labkit import anodectl

pytestmark = pytest.mark.lab
ASKER, APPROVER = "U0ASKER", "U0APPROVER"
SETTLE_S = 15.0


def _alerts(h: LabBot, since: int = 0) -> list[Call]:
    return [c for c in h.slack.calls[since:] if c.method == "chat.postMessage" and c.ok
            and c.params.get("channel") == ALERTS]


async def _root(h: LabBot, timeout: float = 60) -> Call:
    return await h.slack.wait_for("chat.postMessage", lambda c: c.ok and c.params.get("channel") == ALERTS
                                  and not c.params.get("thread_ts"), timeout=timeout)


async def _resolved(h: LabBot, root: Call, timeout: float = 120) -> Call:
    ts = root.response["ts"]
    return await h.slack.wait_for("chat.update", lambda c: c.params.get("ts") == ts
                                  and "resolved after" in call_text(c), timeout=timeout)


async def _settled(h: LabBot) -> None:
    """Long enough after the end for a held finding or a recovery tail to have been posted."""
    watcher = h.bot.runtime.watcher
    assert watcher is not None
    await watcher.wait_polls(int(SETTLE_S) + 3, timeout=SETTLE_S + 30)


async def test_a_power_cut_and_rejoin_is_one_root_with_the_rest_in_its_thread(tmp_path: Path) -> None:
    async with lab_bot(tmp_path / "state", watch=True) as h:
        await anodectl("node3", "crash")
        root = await _root(h)
        assert "node3" in call_text(root)
        await anodectl("node3", "start")
        await _resolved(h, root)
        await _settled(h)
        posts = _alerts(h)
        said = [call_text(c)[:200] for c in posts]
        assert [c for c in posts if not c.params.get("thread_ts")] == [root], said
        assert all(c.params.get("thread_ts") == root.response["ts"] for c in posts[1:])
        assert not h.slack.violations


async def test_a_failed_action_cleaned_up_with_approval_opens_nothing_and_pages_nobody(
        tmp_path: Path) -> None:
    async with lab_bot(tmp_path / "state", watch=True, approvers=(APPROVER,)) as h:
        await anodectl("node1", "break-resource", "virtual_ip_1")
        failure = await _root(h, timeout=90)  # the failure itself: one root, before anyone acts
        assert "virtual_ip_1" in call_text(failure)
        mark = len(h.slack.calls)
        rem = h.bot.runtime.services.remediation
        assert rem is not None
        spec = lookup("cleanup")
        assert spec is not None
        reply = await rem.request(Invocation("cleanup", ("lab", "virtual_ip_1"), user=ASKER, channel=ALERTS,
                                             source=Source.CONSOLE), spec)
        assert reply.request_id is not None
        assert await rem.decide(reply.request_id, APPROVER, "approve") is None
        await rem.wait_idle()
        await _resolved(h, failure)
        await _settled(h)
        after = _alerts(h, mark)
        roots = [c for c in after if not c.params.get("thread_ts")]
        # The request's own message is the only new root: the re-probe's stop opened nothing.
        assert len(roots) == 1 and "cleanup" in call_text(roots[0]), [call_text(c)[:200] for c in roots]
        # Nothing reached the channel but the request: no escalation, no page.
        assert not [c for c in after if c.params.get("reply_broadcast")]
        assert not h.slack.violations


async def test_a_restart_of_the_bot_mid_incident_repeats_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with lab_bot(state, watch=True) as h:
        await anodectl("node3", "crash")
        root = await _root(h)
        watcher = h.bot.runtime.watcher
        assert watcher is not None
        await watcher.wait_polls(3)
        await h.bot.stop()
        mark = len(h.slack.calls)
        h.bot = await start_bot(slack_settings(h.slack, state), watch=True)
        restarted = h.bot.runtime.watcher
        assert restarted is not None
        await restarted.wait_polls(5)
        assert _alerts(h, mark) == [], "a restart must repeat nothing"
        await anodectl("node3", "start")
        await _resolved(h, root)
        await _settled(h)
        assert [c for c in _alerts(h) if not c.params.get("thread_ts")] == [root]
        assert not h.slack.violations
