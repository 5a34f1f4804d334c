"""Events Slack sends again. Slack re-sends an Events API event when it thinks the first delivery
was lost (HTTP: X-Slack-Retry-Num; Socket Mode: retry_attempt), to this replica or the other,
with the same event_id. Each listener that acts on an event (a mention, an `approve` thread
reply) asks `redelivered` once it knows the event is one it acts on, so ordinary channel chatter
costs the store nothing."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from bot.errors import ClusterbotError

__all__ = ["FIRST_SIGHT_WAIT_S", "FirstSight", "redelivered"]

log = logging.getLogger(__name__)
FirstSight = Callable[[str], Awaitable[bool]]  # bot.runtime.Runtime.first_sight
FIRST_SIGHT_WAIT_S = 1.5
# Slack's event ids ("Ev0123ABCD"): anything else is not used as a key.
_EVENT_ID = re.compile(r"Ev[A-Za-z0-9]{1,62}")


async def redelivered(body: dict[str, Any], first_sight: FirstSight | None) -> bool:
    """True if this event was handled already, here or on the other replica: a mention that files
    a fix must not file it twice. Without the store (an outage, a hang), it is handled anyway:
    better twice than a status never answered."""
    event_id = body.get("event_id")
    if first_sight is None or not isinstance(event_id, str) or not _EVENT_ID.fullmatch(event_id):
        return False
    try:
        # Bounded: a database that hangs (black-holed, restarting) must not hold up the answer.
        fresh = await asyncio.wait_for(first_sight(f"slack-event:{event_id}"), FIRST_SIGHT_WAIT_S)
    except (ClusterbotError, TimeoutError) as exc:
        why = str(exc) if isinstance(exc, ClusterbotError) else (
            f"the state database did not answer within {FIRST_SIGHT_WAIT_S:g}s")
        log.warning("cannot tell whether Slack event %s was handled already (%s); handling it",
                    event_id, why)
        return False
    if not fresh:
        log.info("Slack sent event %s again; it was handled already", event_id)
    return not fresh
