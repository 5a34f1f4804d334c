"""Where an answer goes in Slack, and how: channel messages, in-place updates, ephemerals.

Channel answers are visible to the channel; errors and refusals are ephemeral. If the bot is
not a member of the channel, the slash command's response_url still reaches it. No answer is
dropped silently: a failed edit is posted anew, a failed response_url falls back to
chat.postEphemeral, and when nothing gets through the user is told why (or the log says so).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient
from slack_sdk.webhook.webhook_response import WebhookResponse

from bot.errors import SlackError
from bot.render.blocks import fallback_text, to_blocks
from bot.render.doc import Doc
from bot.slack.client import CountingWebClient, error_code

log = logging.getLogger(__name__)
_NOT_THERE = ("not_in_channel", "channel_not_found", "is_archived")
# What a Web API or response_url call raises once slack_sdk's own retries are spent.
SLACK_TROUBLE = (SlackClientError, SlackError, aiohttp.ClientError, TimeoutError)
# A user is waiting on a response_url reply: retry it briefly, then chat.postEphemeral is quicker.
HOOK_ATTEMPTS = 3
HOOK_BACKOFF_S = 0.5  # doubled after each 5xx or connection failure
HOOK_RETRY_AFTER_CAP_S = 3.0  # a longer Retry-After is not waited for
HOOK_TIMEOUT_S = 10


def message(doc: Doc) -> dict[str, Any]:
    return {"text": fallback_text(doc), "blocks": to_blocks(doc)}


def text_doc(text: str) -> Doc:
    return Doc(verdict=text, fallback=text.replace("*", ""))


def why(err: BaseException) -> str:
    """One short reason for a failed Slack call: Slack's error code, else the HTTP status or exception."""
    if isinstance(err, SlackApiError):
        status = getattr(err.response, "status_code", None)
        return error_code(err) or f"HTTP {status}"
    return str(err) or type(err).__name__


@dataclass
class SlackOut:
    """One conversation: a channel (and thread) for one user, plus the response_url if any."""

    client: AsyncWebClient
    channel: str
    user: str
    thread_ts: str | None = None
    response_url: str | None = None

    async def post(self, doc: Doc) -> str | None:
        """Post to the channel (thread); returns the ts, or None if it went by response_url."""
        try:
            resp = await self.client.chat_postMessage(channel=self.channel, thread_ts=self.thread_ts,
                                                      **message(doc))
        except SlackApiError as err:
            if error_code(err) not in _NOT_THERE or not self.response_url:
                raise
            log.info("not in channel %s: answering through response_url", self.channel)
            failed = await self._hook("in_channel", doc)
            if failed is not None:
                raise SlackError(f"response_url: {failed}") from err
            return None
        return str(resp["ts"])

    async def update(self, ts: str | None, doc: Doc) -> None:
        if ts is None:
            await self.post(doc)
            return
        await self.client.chat_update(channel=self.channel, ts=ts, **message(doc))

    async def answer(self, ts: str | None, doc: Doc) -> None:
        """The channel answer, edited into the progress message `ts` (or posted, without one).

        A failed edit (Slack down, rate limited, the progress message deleted) is posted as a new
        message; failing that the user alone sees it; failing that too, one line saying why.
        """
        try:
            await self.update(ts, doc)
            return
        except SLACK_TROUBLE as err:
            reason = why(err)
            log.warning("answer to %s in %s: %s failed (%s); trying another way", self.user, self.channel,
                        "chat.update" if ts else "chat.postMessage", reason)
        if ts is not None:  # the edit failed, a new message may not
            try:
                await self.post(doc)
                return
            except SLACK_TROUBLE as err:
                reason = why(err)
                log.warning("answer to %s in %s: chat.postMessage failed too (%s)", self.user, self.channel,
                            reason)
        if not await self.ephemeral(doc):
            await self.ephemeral(text_doc(f":warning: the answer could not be posted here ({reason})"))

    async def ephemeral(self, doc: Doc) -> bool:
        """Show doc to the user alone: response_url, else chat.postEphemeral. False (logged) if neither."""
        failed = "no response_url"
        if self.response_url:
            hook_failed = await self._hook("ephemeral", doc)
            if hook_failed is None:
                return True
            failed = f"response_url {hook_failed}"
        try:
            await self.client.chat_postEphemeral(channel=self.channel, user=self.user,
                                                 thread_ts=self.thread_ts, **message(doc))
        except SLACK_TROUBLE as err:
            log.warning("could not tell %s in %s %r: %s; chat.postEphemeral %s", self.user, self.channel,
                        fallback_text(doc)[:80], failed, why(err))
            return False
        return True

    async def _hook(self, response_type: str, doc: Doc) -> str | None:
        """Send through the response_url, retrying 429/5xx briefly: None when delivered, else why not.

        4xx is final: the URL expired (30 minutes) or was used up (5 replies), or Slack refused the body.
        """
        assert self.response_url is not None
        hook = AsyncWebhookClient(self.response_url, timeout=HOOK_TIMEOUT_S, session=self.client.session,
                                  retry_handlers=[])  # the loop below is the retry policy
        backoff = HOOK_BACKOFF_S
        wait: float | None
        for attempt in range(1, HOOK_ATTEMPTS + 1):
            started = time.perf_counter()
            try:
                resp = await hook.send(response_type=response_type, **message(doc))
            except (aiohttp.ClientError, TimeoutError) as err:
                failed, wait = why(err), backoff
                self._record("transport_error", started)
            else:
                self._record("ok" if resp.status_code == 200 else f"http_{resp.status_code}", started)
                if resp.status_code == 200:
                    return None
                failed, wait = f"HTTP {resp.status_code} {resp.body[:80]}".strip(), _hook_wait(resp, backoff)
            if wait is None or attempt == HOOK_ATTEMPTS:
                return failed
            log.info("response_url: %s; retrying in %.1fs", failed, wait)
            await asyncio.sleep(wait)
            backoff *= 2
        return None  # unreachable: the last attempt returns


    def _record(self, result: str, started: float) -> None:
        """response_url replies are Slack calls too: logged and counted like the Web API's."""
        if isinstance(self.client, CountingWebClient):
            self.client.record("response_url", result, started)


def _hook_wait(resp: WebhookResponse, backoff: float) -> float | None:
    """Seconds before retrying a failed response_url reply, or None if retrying cannot help (soon)."""
    if resp.status_code == 429:
        header = resp.headers.get("Retry-After", "1")
        after = float(header) if header.replace(".", "", 1).isdigit() else 1.0
        return after if after <= HOOK_RETRY_AFTER_CAP_S else None
    return backoff if resp.status_code >= 500 else None
