"""Deliver queued alert messages in order, surviving Slack outages and restarts.

The watcher never calls Slack directly: it enqueues rendered messages in the store's outbox.
This loop posts them strictly in order; a transient failure pauses the queue and retries with
backoff, a permanent one (channel gone, bad blocks) is logged and skipped. Anything unforeseen
counts as transient: the alert stays queued and the loop lives on, since a dead deliverer would
leave every later alert silently stuck in the outbox.
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

from bot.errors import SlackError
from bot.poster import Poster
from bot.render.doc import Button, Doc, Section
from bot.slack.client import error_code
from bot.store import OutboxItem, Store

log = logging.getLogger(__name__)
PERMANENT = frozenset({"channel_not_found", "not_in_channel", "is_archived", "invalid_blocks",
                       "invalid_blocks_format", "msg_too_long", "message_not_found", "cant_update_message",
                       "no_text", "invalid_auth", "not_authed", "account_inactive", "missing_scope"})
MAX_BACKOFF_S = 60.0
MAX_DOUBLINGS = 30  # caps the exponent: 2.0 ** attempts overflows a float after ~1000 failed attempts


@dataclass
class Deliverer:
    store: Store
    poster: Poster
    clock: Callable[[], datetime]
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    max_backoff_s: float = MAX_BACKOFF_S
    delivered: int = 0
    stopped: bool = False  # run() has ended: nothing delivers alerts any more (readiness reports it)
    _traced: set[int] = field(default_factory=set)  # items whose unexpected failure was logged in full

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
        try:
            while True:
                try:
                    await self.deliver_due()
                except Exception:  # the store itself failed: alerts wait in the outbox, the loop lives on
                    log.exception("alert delivery round failed; trying again in %.0fs", idle_s)
                await self._idle(idle_s)
        finally:
            self.stopped = True

    async def _idle(self, seconds: float) -> None:
        # asyncio.timeout, not wait_for: 3.11's wait_for can get stuck when cancelled.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.wake.wait()
        self.wake.clear()

    async def _one(self, item: OutboxItem) -> bool:
        try:
            result = await self._send(item)
        except SlackApiError as err:
            code = error_code(err) or ""
            if code in PERMANENT:
                log.error("alert %d dropped: Slack said %s", item.id, code)
                self.store.mark_delivered(item.id, f"gave up: {code}", now=self.clock())
                return True
            return self._retry_later(item, code or "slack error")
        except SlackError as err:  # not Slack's own answer (a proxy's error page): Slack may be back soon
            return self._retry_later(item, str(err))
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            return self._retry_later(item, type(err).__name__)
        except Exception as err:  # a bug or a reply nobody foresaw: keep the alert, retry, never stop
            return self._retry_later(item, f"unexpected {err!r:.200}", trace=self._first_trace(item))
        self._traced.discard(item.id)
        self.store.mark_delivered(item.id, result, now=self.clock())
        return True

    def _first_trace(self, item: OutboxItem) -> bool:
        """True the first time an item fails unexpectedly: one traceback, not one per retry."""
        first = item.id not in self._traced
        self._traced.add(item.id)
        return first

    def _retry_later(self, item: OutboxItem, why: str, *, trace: bool = False) -> bool:
        delay = min(2.0 ** min(item.attempts, MAX_DOUBLINGS), self.max_backoff_s)
        log.warning("alert %d not delivered (%s); retrying in %.0fs", item.id, why, delay, exc_info=trace)
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
