"""The whole bot (Slack app over signed HTTP, watcher, SSH) against the lab and the fake Slack.

Like tests/fakes/botharness.py, but pointed at the lab's config instead of the demo cluster.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bot.poster import TextPoster
from bot.render.doc import Doc
from bot.render.text import to_text
from bot.server import Bot, start_bot
from bot.settings import Settings
from tests.fakes.signing import FORM_CONTENT_TYPE, sign, slash_command_body
from tests.fakes.slack import Call, FakeSlack
from tests.lab import labkit

SECRET = "lab-signing-secret"
CHANNEL = "C0OPS"
ALERTS = "C0ALERTS"


def call_text(call: Call) -> str:
    """Everything a user would read in a Web API call: blocks (as JSON, unescaped) and text."""
    blocks = json.dumps(call.params.get("blocks", []), ensure_ascii=False)
    return blocks + str(call.params.get("text", ""))


@dataclass
class LabBot:
    slack: FakeSlack
    bot: Bot
    http: aiohttp.ClientSession

    @property
    def events_url(self) -> str:
        assert self.bot.http is not None, "the bot runs in HTTP mode here"
        return f"http://127.0.0.1:{self.bot.http.port}/slack/events"

    async def slash(self, text: str, channel: str = CHANNEL) -> int:
        """A signed `/cluster TEXT`, as Slack sends it; returns the HTTP status of the ack."""
        url = self.slack.response_url(channel=channel, user="U0USER")
        body = slash_command_body(text=text, channel_id=channel, response_url=url)
        headers = {"Content-Type": FORM_CONTENT_TYPE, **sign(SECRET, body)}
        async with self.http.post(self.events_url, data=body, headers=headers) as resp:
            await resp.read()
            return resp.status

    def alert_roots(self) -> list[Call]:
        return [c for c in self.slack.calls if c.method == "chat.postMessage" and c.ok
                and c.params.get("channel") == ALERTS and not c.params.get("thread_ts")]


def slack_settings(slack: FakeSlack, state_dir: Path, **extra: Any) -> Settings:
    wiring: dict[str, Any] = {
        "alert_channel": ALERTS, "poll_interval_s": 1.0, "alert_retry_max_s": 0.5,
        "slack_bot_token": slack.bot_token, "slack_signing_secret": SECRET,
        "slack_api_url": slack.api_url, "http_host": "127.0.0.1", "http_port": 0}
    return labkit.settings(state_dir, **{**wiring, **extra})


@asynccontextmanager
async def lab_bot(state_dir: Path, *, watch: bool = False, **extra: Any) -> AsyncIterator[LabBot]:
    """start_bot on the lab config, HTTP mode, talking to a fake Slack on loopback."""
    async with FakeSlack() as slack:
        bot = await start_bot(slack_settings(slack, state_dir, **extra), watch=watch)
        harness = LabBot(slack, bot, aiohttp.ClientSession())
        try:
            yield harness
        finally:
            await harness.http.close()
            await harness.bot.stop()


@dataclass(frozen=True)
class Posted:
    ts: str
    thread_ts: str | None
    text: str


@dataclass
class RecordingPoster(TextPoster):
    """The terminal poster, remembering each post so tests can tell roots from thread replies."""

    out: io.StringIO = field(default_factory=io.StringIO)
    posts: list[Posted] = field(default_factory=list)

    async def post(self, channel: str, doc: Doc, thread_ts: str | None = None, *,
                   broadcast: bool = False) -> str:
        ts = await super().post(channel, doc, thread_ts, broadcast=broadcast)
        self.posts.append(Posted(ts, thread_ts, to_text(doc)))
        return ts

    def roots(self) -> list[Posted]:
        return [p for p in self.posts if p.thread_ts is None]

    def incident_text(self, root: Posted) -> str:
        """The root and every reply in its thread."""
        return "\n".join(p.text for p in self.posts if root.ts in (p.ts, p.thread_ts))
