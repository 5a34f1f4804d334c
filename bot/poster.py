"""Where alerts go: Slack through the Web API, or a terminal for the console and the demo."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Protocol, TextIO

from slack_sdk.web.async_client import AsyncWebClient

from bot.render.doc import Doc
from bot.render.text import to_text
from bot.slack.replies import message


class Poster(Protocol):
    # broadcast: a thread reply Slack also shows in the channel (reply_broadcast)
    async def post(self, channel: str, doc: Doc, thread_ts: str | None = None, *,
                   broadcast: bool = False) -> str: ...

    async def update(self, channel: str, ts: str, doc: Doc) -> None: ...


@dataclass
class SlackPoster:
    client: AsyncWebClient

    async def post(self, channel: str, doc: Doc, thread_ts: str | None = None, *,
                   broadcast: bool = False) -> str:
        resp = await self.client.chat_postMessage(channel=channel, thread_ts=thread_ts,
                                                  reply_broadcast=bool(broadcast and thread_ts) or None,
                                                  **message(doc))
        return str(resp["ts"])

    async def update(self, channel: str, ts: str, doc: Doc) -> None:
        await self.client.chat_update(channel=channel, ts=ts, **message(doc))


@dataclass
class TextPoster:
    """Prints alerts to a terminal; threads show as indented replies."""

    out: TextIO
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def post(self, channel: str, doc: Doc, thread_ts: str | None = None, *,
                   broadcast: bool = False) -> str:
        ts = f"{next(self._ids)}"
        also = f", also in #{channel}" if broadcast else ""
        prefix = f"  ↳ [in thread {thread_ts}{also}] " if thread_ts else f"[#{channel} message {ts}] "
        self._write(prefix + to_text(doc).replace("\n", "\n    "))
        return ts

    async def update(self, channel: str, ts: str, doc: Doc) -> None:
        self._write(f"[message {ts} edited] " + to_text(doc).replace("\n", "\n    "))

    def _write(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()
