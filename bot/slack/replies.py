"""Where an answer goes in Slack, and how: channel messages, in-place updates, ephemerals.

Channel answers are visible to the channel; errors and refusals are ephemeral. If the bot is
not a member of the channel, the slash command's response_url still reaches it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.render.blocks import fallback_text, to_blocks
from bot.render.doc import Doc

log = logging.getLogger(__name__)
_NOT_THERE = ("not_in_channel", "channel_not_found", "is_archived")


def message(doc: Doc) -> dict[str, Any]:
    return {"text": fallback_text(doc), "blocks": to_blocks(doc)}


def text_doc(text: str) -> Doc:
    return Doc(verdict=text, fallback=text.replace("*", ""))


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
            if err.response.get("error") not in _NOT_THERE or not self.response_url:
                raise
            log.info("not in channel %s: answering through response_url", self.channel)
            await AsyncWebhookClient(self.response_url).send(response_type="in_channel", **message(doc))
            return None
        return str(resp["ts"])

    async def update(self, ts: str | None, doc: Doc) -> None:
        if ts is None:
            await self.post(doc)
            return
        await self.client.chat_update(channel=self.channel, ts=ts, **message(doc))

    async def ephemeral(self, doc: Doc) -> None:
        if self.response_url:
            await AsyncWebhookClient(self.response_url).send(response_type="ephemeral", **message(doc))
            return
        await self.client.chat_postEphemeral(channel=self.channel, user=self.user,
                                             thread_ts=self.thread_ts, **message(doc))
