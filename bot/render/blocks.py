"""Doc -> Slack Block Kit, always within Slack's limits.

Limits (hard): 50 blocks a message, 3000 characters a section text, 150 a header, 10 elements
a context, 25 an actions block. Sections are packed line by line; what does not fit is
summarised, never silently cut.
"""

from __future__ import annotations

from typing import Any

from bot.render.doc import Button, Doc, Section

MAX_BLOCKS = 50
MAX_SECTION_CHARS = 3000
MAX_HEADER_CHARS = 150
MAX_CONTEXT_ELEMENTS = 10
MAX_FALLBACK_CHARS = 3000  # Slack truncates `text` at 40k; notifications show far less

Block = dict[str, Any]


def to_blocks(doc: Doc, *, max_blocks: int = MAX_BLOCKS) -> list[Block]:
    """Render a Doc; the result never exceeds max_blocks or any per-block limit."""
    head: list[Block] = []
    if doc.header:
        head.append(_header(doc.header))
    head.append(_section(doc.verdict))
    tail: list[Block] = []
    if doc.buttons:
        tail.append(_actions(doc.buttons))
    if doc.context:
        tail.append(_context(doc.context))
    room = max(max_blocks - len(head) - len(tail), 0)
    return head + _body(doc.sections, room) + tail


def fallback_text(doc: Doc) -> str:
    return _clip(doc.fallback, MAX_FALLBACK_CHARS)


def _body(sections: tuple[Section, ...], room: int) -> list[Block]:
    out: list[Block] = []
    for i, sec in enumerate(sections):
        free = room - len(out)
        later = len(sections) - i - 1
        # Leave one block for each later section, but always give this one a block if any is free.
        out.extend(_section_blocks(sec, max(free - later, min(free, 1))))
    return out[:room]


def _section_blocks(sec: Section, room: int) -> list[Block]:
    """Pack lines into as few section blocks as fit; summarise the rest in the last one."""
    if room <= 0:
        return []
    chunks = _pack(sec, MAX_SECTION_CHARS)
    if len(chunks) > room:
        dropped = sum(len(c) for c in chunks[room - 1:])
        kept = chunks[: room - 1]
        last = _pack(Section(None, (), f"…and {dropped} more lines not shown"), MAX_SECTION_CHARS)
        chunks = kept + last
    return [_section("\n".join(c)) for c in chunks]


def _pack(sec: Section, limit: int) -> list[list[str]]:
    lines = ([f"*{sec.title}*"] if sec.title else []) + [_clip(x, limit) for x in sec.lines]
    if sec.overflow:
        lines.append(_clip(sec.overflow, limit))
    chunks: list[list[str]] = [[]]
    size = 0
    for line in lines:
        if chunks[-1] and size + len(line) + 1 > limit:
            chunks.append([])
            size = 0
        chunks[-1].append(line)
        size += len(line) + 1
    return [c for c in chunks if c] or [[" "]]


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    # Never end in half an entity of escaped data (`&am`): Slack would show the fragment.
    amp = cut.rfind("&", len(cut) - len("&amp"))
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def _header(text: str) -> Block:
    return {"type": "header", "text": {"type": "plain_text", "text": _clip(text, MAX_HEADER_CHARS),
                                       "emoji": True}}


def _section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _clip(text, MAX_SECTION_CHARS)}}


def _context(items: tuple[str, ...]) -> Block:
    elements = [{"type": "mrkdwn", "text": _clip(t, 2000)} for t in items[:MAX_CONTEXT_ELEMENTS]]
    return {"type": "context", "elements": elements}


def _actions(buttons: tuple[Button, ...]) -> Block:
    return {"type": "actions", "elements": [_button(b) for b in buttons[:25]]}


def _button(b: Button) -> Block:
    out: Block = {"type": "button", "text": {"type": "plain_text", "text": _clip(b.text, 75)},
                  "action_id": b.action_id, "value": _clip(b.value, 2000)}
    if b.style:
        out["style"] = b.style
    return out
