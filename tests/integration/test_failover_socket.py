"""Two real `clusterbot run` replicas in Socket Mode on one state (issue 15): each holds its own
WebSocket to the fake Slack, which spreads envelopes across the open connections as Slack does;
both answer, an approval clicked through both runs once, and when the leader is SIGKILLed the
other answers every command and takes over watching."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.demo.cluster import DemoCluster
from tests.fakes.signing import app_mention_event, block_actions_payload, slash_command_payload
from tests.fakes.slack import ACK_DEADLINE_SECONDS, Ack, Call, FakeSlack, SocketConnection
from tests.integration.replicas import ALERTS, CHANNEL, WAIT_S, Replica, Replicas, replicas

BOSS = "U0BOSS"
APPROVE = "clusterbot:approve"


async def start_socket(group: Replicas, name: str) -> tuple[Replica, SocketConnection]:
    """A replica in Socket Mode (an app token) and the connection it opened."""
    before = {c.number for c in group.slack.connections if c.open}
    replica = await group.start(name, SLACK_APP_TOKEN=group.slack.app_token)
    now = await group.slack.socket_connections(len(before) + 1, timeout=WAIT_S)
    return replica, next(c for c in now if c.number not in before)


async def command(slack: FakeSlack, text: str, connection: SocketConnection | None = None) -> Ack:
    """`/cluster TEXT` as an envelope, to `connection` or wherever the fake spreads it; its ack,
    within Slack's deadline, from the replica that got it."""
    url = slack.response_url(channel=CHANNEL, user="U0USER")
    eid = await slack.socket_send("slash_commands", slash_command_payload(
        text=text, user_id="U0USER", channel_id=CHANNEL, response_url=url), connection=connection)
    ack = await slack.wait_ack(eid, timeout=WAIT_S)
    assert not ack.late, f"acked after {ack.elapsed:.2f}s (Slack gives {ACK_DEADLINE_SECONDS}s)"
    sent = next(e for e in slack.envelopes if e.envelope_id == eid)
    assert ack.connection == sent.connection
    return ack


async def status(slack: FakeSlack) -> int:
    """`/cluster status prod-haproxy`, answered in the channel; the connection that took it."""
    mark = len(slack.calls)
    ack = await command(slack, "status prod-haproxy")
    await slack.wait_for("chat.update", lambda c: c.params.get("channel") == CHANNEL
                         and "prod-haproxy" in _text(c), timeout=WAIT_S, since=mark)
    return ack.connection


async def click(slack: FakeSlack, request: str, connection: SocketConnection) -> Ack:
    url = slack.response_url(channel=CHANNEL, user=BOSS, message_ts="1.0", kind="actions")
    eid = await slack.socket_send("interactive", block_actions_payload(
        action_id=APPROVE, value=request, user_id=BOSS, channel_id=CHANNEL, message_ts="1.0",
        response_url=url), connection=connection)
    ack = await slack.wait_ack(eid, timeout=WAIT_S)
    assert not ack.late and ack.connection == connection.number, ack
    return ack


def _text(call: Call) -> str:
    return json.dumps(call.params.get("blocks", [])) + str(call.params.get("text", ""))


@dataclass
class Pair:
    """Two Socket Mode replicas on one state, `a` leading, the demo's virtual_ip_2 failed."""

    slack: FakeSlack
    demo: DemoCluster
    a: Replica
    to_a: SocketConnection
    b: Replica
    to_b: SocketConnection


@asynccontextmanager
async def socket_pair(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    store = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    async with FakeSlack() as slack, DemoCluster() as demo, \
            replicas(slack, demo, tmp_path, store=store, approvers=[BOSS]) as group:
        await demo.demo_command(("fail", "virtual_ip_2"))
        a, to_a = await start_socket(group, "a")
        await a.leading()
        b, to_b = await start_socket(group, "b")
        yield Pair(slack, demo, a, to_a, b, to_b)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_socket_mode_replicas_all_answer_race_an_approval_and_survive_a_killed_leader(
        tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> None:
    async with socket_pair(tmp_path, backend, request) as pair:
        slack, demo, a, to_a, b, to_b = pair.slack, pair.demo, pair.a, pair.to_a, pair.b, pair.to_b
        assert a.said("Socket Mode: connected") and b.said("Socket Mode: connected")
        assert not b.said("leadership gained")

        # Slack spreads commands over both connections: each replica answers its share in time.
        took = [await status(slack) for _ in range(4)]
        assert sorted(took) == sorted([to_a.number, to_b.number] * 2)

        # A fix requested through the follower; its approval clicked through both at once.
        await command(slack, "cleanup prod-haproxy virtual_ip_2", connection=to_b)
        root = await slack.wait_for("chat.postMessage", lambda c: "requested by" in _text(c),
                                    timeout=WAIT_S)
        fix = next(e["value"] for block in root.params["blocks"] if block["type"] == "actions"
                   for e in block["elements"] if e.get("action_id") == APPROVE)
        await asyncio.gather(click(slack, fix, to_a), click(slack, fix, to_b))
        await slack.wait_for("chat.postMessage", lambda c: "verified" in _text(c), timeout=WAIT_S)
        cleanups = [c for s in demo.servers.values() for c in s.commands if "pcs resource cleanup" in c]
        assert cleanups == ["sudo -n pcs resource cleanup virtual_ip_2"]

        # The leader dies: its socket closes, every command reaches the survivor, which leads.
        after = len(b.records)
        a.kill()
        await asyncio.wait_for(to_a.closed.wait(), WAIT_S)
        assert [await status(slack) for _ in range(2)] == [to_b.number] * 2
        await b.leading(after=after)
        node = sorted(demo.servers)[-1]
        mark = len(slack.calls)
        await demo.demo_command(("kill", node))
        await slack.wait_for("chat.postMessage", lambda c: c.params.get("channel") == ALERTS
                             and not c.params.get("thread_ts") and node in _text(c),
                             timeout=WAIT_S, since=mark)
        assert await b.stop() == 0


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_an_event_slack_sends_again_to_the_other_replica_files_one_request(
        tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> None:
    """Slack re-sends an events_api envelope it thinks was lost (retry_attempt), to any open
    connection: the other replica must not handle the same event_id again. Here a mention that
    files a fix, sent to `a` and again to `b`, files it once."""
    async with socket_pair(tmp_path, backend, request) as pair:
        slack, a, to_a, b, to_b = pair.slack, pair.a, pair.to_a, pair.b, pair.to_b
        mention = app_mention_event(text="cleanup prod-haproxy virtual_ip_2", ts="1700000001.000100",
                                    channel_id=CHANNEL)
        await slack.wait_ack(await slack.socket_send("events_api", mention, connection=to_a), timeout=WAIT_S)
        await slack.wait_for("chat.postMessage", lambda c: "requested by" in _text(c), timeout=WAIT_S)
        again = await slack.socket_send("events_api", mention, retry_attempt=1, retry_reason="timeout",
                                        connection=to_b)
        assert (await slack.wait_ack(again, timeout=WAIT_S)).connection == to_b.number
        await status(slack)  # answered after the retry was taken
        await status(slack)
        requests = [c for c in slack.calls if c.method == "chat.postMessage" and "requested by" in _text(c)]
        assert len(requests) == 1
        assert b.said("Slack sent event") and not a.said("Slack sent event")
