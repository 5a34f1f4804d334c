"""A tiny presentation model shared by the Block Kit and text renderers.

Renderers build a Doc (a verdict and titled sections of lines); `blocks.py` and `text.py` turn
it into Slack blocks or terminal text, so both show exactly the same facts.

Every text of a Doc is Slack mrkdwn, and data is data: whatever comes from the cluster (crm_mon,
Corosync tools, SSH stderr, command output, node and resource names) goes through `mrkdwn()` where
it is formatted in, so only the markup clusterbot writes itself (mentions, links) is markup.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_ENTITY = re.compile(r"&(amp|lt|gt);")
_CHAR = {"amp": "&", "lt": "<", "gt": ">"}


def mrkdwn(text: str) -> str:
    """Text as it must appear in mrkdwn: `&`, `<` and `>` as entities, which Slack shows as the
    characters. Unescaped, an agent's exitreason `<!channel>` would page the whole channel and
    `<http://x|label>` would be a disguised link. Slack parses these inside code spans too, so
    the same applies there. Apply it once, to raw data only: it is not idempotent on purpose
    (a literal `&lt;` in the data must stay visible as such)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unescape(text: str) -> str:
    """The inverse of `mrkdwn()`, for renderers that are not Slack (the terminal)."""
    return _ENTITY.sub(lambda m: _CHAR[m.group(1)], text)


@dataclass(frozen=True, slots=True)
class Button:
    text: str
    action_id: str
    value: str  # only an opaque id: handlers reload everything else from the store
    style: str | None = None  # "primary" | "danger"


@dataclass(frozen=True, slots=True)
class Section:
    title: str | None
    lines: tuple[str, ...]
    overflow: str | None = None  # shown when lines had to be cut, e.g. "and 960 more ..."


@dataclass(frozen=True, slots=True)
class Doc:
    verdict: str  # one line, mrkdwn, emoji shortcode first
    fallback: str  # for notifications and the top-level `text`: no markup, yet escaped like mrkdwn
    header: str | None = None
    sections: tuple[Section, ...] = ()
    context: tuple[str, ...] = ()
    buttons: tuple[Button, ...] = field(default=())
