"""Deliver queued alert messages in order, surviving Slack outages and restarts.

The watcher never calls Slack directly: it enqueues rendered messages in the store's outbox.
This loop posts them strictly in order; a transient failure pauses the queue and retries with
backoff, a permanent one (channel gone, bad blocks) is logged and skipped. Anything unforeseen
counts as transient: the alert stays queued and the loop lives on, since a dead deliverer would
leave every later alert silently stuck in the outbox. A rejected token is transient too: it fails
every message alike, so dropping them would lose the whole backlog for a fixable mistake.

A follow-up whose incident's first alert was dropped is posted as that incident's first message,
saying so, and later follow-ups thread under it: never a context-free "node3 is back ONLINE".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError

from bot.errors import SlackError, StoreUnavailable
from bot.poster import Poster
from bot.render.doc import Button, Doc, Section
from bot.slack.client import error_code
from bot.store import AsyncStore, Incident, OutboxItem

log = logging.getLogger(__name__)
# Only what is wrong with this one message or its channel: skipping it must not hold up the rest.
PERMANENT = frozenset({"channel_not_found", "not_in_channel", "is_archived", "invalid_blocks",
                       "invalid_blocks_format", "msg_too_long", "message_not_found", "cant_update_message",
                       "no_text"})
# The token or app itself is refused: every message would fail alike, so they all wait for the fix.
AUTH = frozenset({"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired",
                  "missing_scope", "not_allowed_token_type"})
MAX_BACKOFF_S = 60.0
MAX_DOUBLINGS = 30  # caps the exponent: 2.0 ** attempts overflows a float after ~1000 failed attempts
PRUNE_EVERY = timedelta(hours=1)
# On a message whose previous sender (a replica that failed over) died between Slack's answer and
# recording it: the on-call must know the copy above is the same alert, and that it stays as it is.
REPEATED = (":repeat: Sent again after the bot failed over mid-send: if the same message is just "
            "before this one, that copy is a duplicate and will not be updated.")


# Asked before every send with the outbox item's id: False means another replica leads now (a
# newer epoch), so this one must not post (bot/leader.py).
Claim = Callable[[int], Awaitable[bool]]


@dataclass
class Deliverer:
    store: AsyncStore
    poster: Poster
    clock: Callable[[], datetime]
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    claim: Claim | None = None
    closing: bool = False  # finish(): deliver what is due, then end run()
    max_backoff_s: float = MAX_BACKOFF_S
    delivered: int = 0
    stopped: bool = False  # run() has ended: nothing delivers alerts any more (readiness reports it)
    retention: timedelta | None = None  # delivered messages and resolved incidents older are deleted
    _pruned_at: datetime | None = None
    _traced: set[int] = field(default_factory=set)  # items whose unexpected failure was logged in full
    _auth_logged: set[str] = field(default_factory=set)  # token errors told at error level until a success
    # incident id -> why its first message was dropped, for the follow-up that replaces it. In memory
    # only: after a restart the follow-up still says the alert was lost, just not why.
    _dropped: dict[int, str] = field(default_factory=dict)

    async def deliver_due(self) -> int:
        """Deliver what is due, in order; stop at the first transient failure."""
        sent = 0
        for item in await self.store.due(self.clock()):
            if not await self._one(item):
                break
            sent += 1
        self.delivered += sent
        return sent

    async def run(self, idle_s: float = 1.0) -> None:
        try:
            while True:
                sent = 0
                try:
                    sent = await self.deliver_due()
                    await self.prune_if_due()
                except StoreUnavailable as err:  # alerts wait in the outbox until it is back
                    log.warning("alert delivery waits for the state database: %s", err)
                except Exception:  # the store itself failed: alerts wait in the outbox, the loop lives on
                    log.exception("alert delivery round failed; trying again in %.0fs", idle_s)
                if self.closing and not sent:  # drained: nothing more is due, or Slack fails now
                    return
                if not self.closing:
                    await self._idle(idle_s)
        finally:
            self.stopped = True

    def finish(self) -> None:
        """A planned stop: the send in flight completes, what is due is delivered, run() ends."""
        self.closing = True
        self.wake.set()

    async def prune_if_due(self) -> None:
        """Hourly: forget what was delivered or resolved longer than `retention` ago, so the state
        database does not grow for ever on a busy cluster."""
        now = self.clock()
        if self.retention is None or (self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY):
            return
        self._pruned_at = now
        rows, incidents = await self.store.prune(before=now - self.retention)
        if rows or incidents:
            log.info("pruned %d delivered alert messages and %d resolved incidents older than %s",
                     rows, incidents, self.retention)

    async def _idle(self, seconds: float) -> None:
        # asyncio.timeout, not wait_for: 3.11's wait_for can get stuck when cancelled.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.wake.wait()
        self.wake.clear()

    async def _one(self, item: OutboxItem) -> bool:
        if self.claim is not None and not await self.claim(item.id):
            log.warning("alert %d not sent: this replica no longer leads", item.id)
            return False
        if item.epoch is not None:
            log.warning("alert %d was being sent when its sender stopped; sending it again, marked as "
                        "possibly repeated", item.id)
        try:
            result = await self._send(item)
        except SlackApiError as err:
            code = error_code(err) or ""
            if code in PERMANENT:
                await self._give_up(item, code)
                return True
            if code in AUTH:
                self._log_auth(item, code)
            return await self._retry_later(item, code or "slack error")
        except SlackError as err:  # not Slack's own answer (a proxy's error page): Slack may be back soon
            return await self._retry_later(item, str(err))
        except StoreUnavailable:  # not this message's fault: the round ends, the item stays as it was
            raise
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            return await self._retry_later(item, type(err).__name__)
        except Exception as err:  # a bug or a reply nobody foresaw: keep the alert, retry, never stop
            return await self._retry_later(item, f"unexpected {err!r:.200}", trace=self._first_trace(item))
        self._traced.discard(item.id)
        self._auth_logged.clear()  # the token works again: a new rejection deserves a new error
        await self.store.mark_delivered(item.id, result, now=self.clock())
        _log_delivered(item)
        return True

    async def _give_up(self, item: OutboxItem, code: str) -> None:
        log.error("alert %d dropped: Slack said %s", item.id, code)
        incident = _incident_id(item)
        if incident is not None and item.kind != "edit":
            self._dropped.setdefault(incident, code)  # the first reason is the one that lost the alert
        await self.store.mark_delivered(item.id, f"gave up: {code}", now=self.clock())

    def _log_auth(self, item: OutboxItem, code: str) -> None:
        """Once per code: a revoked token fails every retry, and one clear error says it all."""
        if code in self._auth_logged:
            return
        self._auth_logged.add(code)
        log.error("Slack refuses the bot's token (%s): alert %d and every later one stay queued and are "
                  "retried until the token or the app's scopes are fixed", code, item.id)

    def _first_trace(self, item: OutboxItem) -> bool:
        """True the first time an item fails unexpectedly: one traceback, not one per retry."""
        first = item.id not in self._traced
        self._traced.add(item.id)
        return first

    async def _retry_later(self, item: OutboxItem, why: str, *, trace: bool = False) -> bool:
        delay = min(2.0 ** min(item.attempts, MAX_DOUBLINGS), self.max_backoff_s)
        log.warning("alert %d not delivered (%s); retrying in %.0fs", item.id, why, delay, exc_info=trace)
        await self.store.mark_failed(item.id, self.clock() + timedelta(seconds=delay))
        return False

    async def _send(self, item: OutboxItem) -> str:
        p = item.payload
        incident_id = _incident_id(item)
        incident = await self.store.get_incident(incident_id) if incident_id is not None else None
        channel = str(p.get("channel") or (incident.channel if incident else ""))
        doc = _doc(p)
        if item.epoch is not None and item.kind != "edit":  # an edit repeated changes nothing
            doc = replace(doc, context=(*doc.context, REPEATED))
        thread = incident.thread_ts if incident else _opt_str(p.get("thread"))
        if item.kind == "edit":
            if thread is None:
                return "skipped: root never posted"
            await self.poster.update(channel, thread, doc)
            return thread
        if item.kind == "root":
            return await self._post_root(channel, doc, incident)
        if incident is not None and thread is None:
            # Strict order: its root went first and was dropped. A bare "node3 is back ONLINE" would
            # mean nothing, so this reply takes the root's place and says what it follows.
            why = self._dropped.get(incident.id)
            return await self._post_root(channel, _first_of_thread(doc, incident, why), incident)
        if p.get("broadcast") and thread is not None:  # a reply the channel must see too
            return await self.poster.post(channel, doc, thread_ts=thread, broadcast=True)
        return await self.poster.post(channel, doc, thread_ts=thread)

    async def _post_root(self, channel: str, doc: Doc, incident: Incident | None) -> str:
        """Post a top-level message; the incident's later replies and edits thread under it."""
        ts = await self.poster.post(channel, doc)
        if incident is not None:
            await self.store.update_incident(incident.id, thread_ts=ts, last_posted_at=self.clock())
            self._dropped.pop(incident.id, None)
        return ts


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _incident_id(item: OutboxItem) -> int | None:
    value = item.payload.get("incident")
    return int(value) if isinstance(value, int | str) else None


def _first_of_thread(doc: Doc, incident: Incident, why: str | None) -> Doc:
    """A follow-up posted in place of its incident's dropped first alert: say what it follows."""
    because = f" (Slack said `{why}`)" if why else ""
    note = (f":warning: This incident's first alert could not be posted{because}, so its updates follow "
            f"in this thread. The lost alert: *{incident.cluster}*: {incident.title}")
    return replace(doc, context=(note, *doc.context))


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


def _log_delivered(item: OutboxItem) -> None:
    """INFO: an incident's alerts and recoveries are what an on-call looks for in the journal."""
    channel, incident = item.payload.get("channel"), _incident_id(item)
    what = (_doc(item.payload).fallback.splitlines() or [""])[0][:200]
    log.info("alert %d (%s%s) delivered to %s: %s", item.id, item.kind,
             f", incident {incident}" if incident is not None else "", channel, what,
             extra={"alert": item.id, "kind": item.kind, "incident": incident, "channel": channel})
