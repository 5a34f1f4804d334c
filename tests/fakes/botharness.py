"""A running clusterbot against the fake Slack and the demo cluster, for end-to-end tests."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

from bot.demo.cluster import DemoCluster
from bot.demo.sim import Simulator
from bot.server import Bot, start_bot
from bot.settings import Settings
from tests.fakes.signing import block_actions_body, events_body, sign, slash_command_body
from tests.fakes.slack import FakeSlack

SECRET = "test-signing-secret"
CHANNEL = "C0CHAN"


@dataclass
class Harness:
    slack: FakeSlack
    demo: DemoCluster
    bot: Bot
    http: aiohttp.ClientSession

    @property
    def events_url(self) -> str:
        assert self.bot.http is not None
        return f"http://127.0.0.1:{self.bot.http.port}/slack/events"

    async def post(self, body: bytes, content_type: str, headers: dict[str, str] | None = None
                   ) -> tuple[int, str, float]:
        hdrs = {"Content-Type": content_type, **(headers if headers is not None else sign(SECRET, body))}
        t0 = time.perf_counter()
        async with self.http.post(self.events_url, data=body, headers=hdrs) as resp:
            text = await resp.text()
            return resp.status, text, time.perf_counter() - t0

    async def slash(self, text: str, user: str = "U0USER", channel: str = CHANNEL,
                    headers: dict[str, str] | None = None) -> tuple[int, str, float]:
        url = self.slack.response_url(channel=channel, user=user)
        body = slash_command_body(text=text, user_id=user, channel_id=channel, response_url=url)
        return await self.post(body, "application/x-www-form-urlencoded", headers)

    async def restart(self, *, down_while: Any = None) -> None:
        """Stop the bot, optionally change the cluster while it is down, start a new one on the
        same state (SQLite) and cluster."""
        settings = self.bot.settings
        await self.bot.stop()
        if down_while is not None:
            await down_while()
        self.bot = await start_bot(settings)

    @property
    def watcher(self) -> Any:
        assert self.bot.runtime.watcher is not None
        return self.bot.runtime.watcher

    def roots(self, channel: str = "C0ALERTS") -> list[Any]:
        return [c for c in self.slack.calls if c.method == "chat.postMessage" and c.ok
                and c.params.get("channel") == channel and not c.params.get("thread_ts")]

    async def click(self, action_id: str, value: str, user: str, message_ts: str = "1.0",
                    channel: str = CHANNEL) -> tuple[int, str, float]:
        url = self.slack.response_url(channel=channel, user=user, message_ts=message_ts, kind="actions")
        body = block_actions_body(action_id=action_id, value=value, user_id=user, channel_id=channel,
                                  message_ts=message_ts, response_url=url)
        return await self.post(body, "application/x-www-form-urlencoded")

    @property
    def remediation(self) -> Any:
        rem = self.bot.runtime.services.remediation
        assert rem is not None
        return rem

    def node_commands(self, needle: str) -> list[str]:
        """Commands that reached the demo nodes' SSH servers and contain needle."""
        return [c for s in self.demo.servers.values() for c in s.commands if needle in c]

    async def event(self, payload: dict[str, Any]) -> tuple[int, str, float]:
        return await self.post(events_body(payload), "application/json")


ALERTS = "C0ALERTS"


def demo_settings(slack: FakeSlack, demo: DemoCluster, cluster: dict[str, Any] | None = None,
                  **extra: Any) -> Settings:
    assert demo.keys is not None
    return Settings.model_validate({
        "state_dir": demo.keys.directory / "state", "alert_channel": ALERTS, "poll_interval_s": 0.3,
        "alert_retry_max_s": 0.5,
        "clusters": (demo.config(**(cluster or {})),), "slack_bot_token": slack.bot_token,
        "slack_signing_secret": SECRET, "slack_api_url": slack.api_url,
        "http_host": "127.0.0.1", "http_port": 0, "connect_timeout_s": 3, "command_timeout_s": 3,
        **extra})


@asynccontextmanager
async def running_bot(watch: bool = True, cluster: dict[str, Any] | None = None,
                      sim: Simulator | None = None, **extra: Any) -> AsyncIterator[Harness]:
    """`sim`: the simulated cluster behind the demo's SSH servers (default: prod-haproxy, pcs 0.11)."""
    async with FakeSlack() as slack, DemoCluster(**({"sim": sim} if sim else {})) as demo:
        bot = await start_bot(demo_settings(slack, demo, cluster, **extra), watch=watch)
        harness = Harness(slack, demo, bot, aiohttp.ClientSession())
        try:
            yield harness
        finally:
            await harness.http.close()
            await harness.bot.stop()  # the current bot: restart() replaces it
