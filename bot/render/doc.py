"""A tiny presentation model shared by the Block Kit and text renderers.

Renderers build a Doc (a verdict and titled sections of lines); `blocks.py` and `text.py` turn
it into Slack blocks or terminal text, so both show exactly the same facts.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
    fallback: str  # plain text for notifications and the top-level `text`
    header: str | None = None
    sections: tuple[Section, ...] = ()
    context: tuple[str, ...] = ()
    buttons: tuple[Button, ...] = field(default=())
