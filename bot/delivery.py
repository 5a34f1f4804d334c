"""Deliver queued alert messages in order, surviving Slack outages and restarts.

The watcher never calls Slack directly: it enqueues rendered messages in the store's outbox.
This loop posts them strictly in order; a transient failure pauses the queue and retries with
backoff, a permanent one (channel gone, bad blocks) is logged and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError

from bot.poster import Poster
from bot.render.doc import Button, Doc, Section
from bot.store import OutboxItem, Store

log = logging.getLogger(__name__)
PERMANENT = frozenset({"channel_not_found", "not_in_channel", "is_archived", "invalid_blocks",
                       "invalid_blocks_format", "msg_too_long", "message_not_found", "cant_update_message",
                       "no_text", "invalid_auth", "not_authed", "account_inactive", "missing_scope"})
MAX_BACKOFF_S = 60.0


@dataclass
class Deliverer:
    store: Store
    poster: Poster
    clock: Callable[[], datetime]
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    max_backoff_s: float = MAX_BACKOFF_S
    delivered: int = 0

    async def deliver_due(self) -> int:
        """Deliver what is due, in order; stop at the first transient failure."""
        sent = 0
        for item in self.store.due(self.clock()):
            if not await self._one(item):
                break
            sent += 1
        self.delivered += sent
        return sent

    async def run(self, idle_s: float = 1.0) -> None:
        while True:
            await self.deliver_due()
            # asyncio.timeout, not wait_for: 3.11's wait_for can get stuck when cancelled.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(idle_s):
                    await self.wake.wait()
            self.wake.clear()

    async def _one(self, item: OutboxItem) -> bool:
        try:
            result = await self._send(item)
        except SlackApiError as err:
            code = str(err.response.get("error", ""))
            if code in PERMANENT:
                log.error("alert %d dropped: Slack said %s", item.id, code)
                self.store.mark_delivered(item.id, f"gave up: {code}", now=self.clock())
                return True
            return self._retry_later(item, code or "slack error")
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            return self._retry_later(item, type(err).__name__)
        self.store.mark_delivered(item.id, result, now=self.clock())
        return True

    def _retry_later(self, item: OutboxItem, why: str) -> bool:
        delay = min(2.0 ** item.attempts, self.max_backoff_s)
        log.warning("alert %d not delivered (%s); retrying in %.0fs", item.id, why, delay)
        self.store.mark_failed(item.id, self.clock() + timedelta(seconds=delay))
        return False

    async def _send(self, item: OutboxItem) -> str:
        p = item.payload
        incident = self.store.get_incident(int(p["incident"])) if "incident" in p else None  # type: ignore[call-overload]
        channel = str(p.get("channel") or (incident.channel if incident else ""))
        doc = _doc(p)
        if item.kind == "root":
            ts = await self.poster.post(channel, doc)
            if incident is not None:
                self.store.update_incident(incident.id, thread_ts=ts, last_posted_at=self.clock())
            return ts
        thread = incident.thread_ts if incident else None
        if item.kind == "edit":
            if thread is None:
                return "skipped: root never posted"
            await self.poster.update(channel, thread, doc)
            return thread
        return await self.poster.post(channel, doc, thread_ts=thread)


def _doc(payload: Any) -> Doc:
    """Rebuild the Doc the watcher rendered (stored as Doc fields, so any poster can use it)."""
    d = payload["doc"]
    return Doc(verdict=d["verdict"], fallback=d["fallback"], header=d.get("header"),
               sections=tuple(Section(s["title"], tuple(s["lines"]), s.get("overflow"))
                              for s in d.get("sections", [])),
               context=tuple(d.get("context", [])),
               buttons=tuple(Button(**b) for b in d.get("buttons", [])))


def doc_json(doc: Doc) -> dict[str, Any]:
    return {
        "verdict": doc.verdict, "fallback": doc.fallback, "header": doc.header,
        "sections": [{"title": s.title, "lines": list(s.lines), "overflow": s.overflow}
                     for s in doc.sections],
        "context": list(doc.context),
        "buttons": [{"text": b.text, "action_id": b.action_id, "value": b.value, "style": b.style}
                    for b in doc.buttons],
    }
