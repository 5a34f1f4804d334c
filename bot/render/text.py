"""Doc -> plain terminal text: the console backend and `clusterbot render --format text`."""

from __future__ import annotations

import re

from bot.render.doc import Doc, unescape

# Slack shortcodes we emit, as terminal-friendly symbols.
_EMOJI = {
    ":red_circle:": "🔴",
    ":large_yellow_circle:": "🟡",
    ":large_green_circle:": "🟢",
    ":black_circle:": "⚫",
    ":information_source:": "ℹ️ ",
    ":white_check_mark:": "✅",
    ":warning:": "⚠️ ",
    ":x:": "❌",
    ":grey_question:": "❔",
    ":hourglass_flowing_sand:": "⏳",
    ":lock:": "🔒",
    ":arrows_counterclockwise:": "🔄",
    ":no_entry:": "⛔",
    ":rotating_light:": "🚨",
}
_SHORTCODE = re.compile(r":[a-z0-9_+-]+:")
_BOLD = re.compile(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])")


def plain(mrkdwn: str) -> str:
    """Slack mrkdwn to terminal text: emoji shortcodes to symbols, *bold* to BOLD-less text,
    escaped data back to its own characters."""
    text = _SHORTCODE.sub(lambda m: _EMOJI.get(m.group(0), m.group(0)), mrkdwn)
    text = _BOLD.sub(r"\1", text)
    text = re.sub(r"<([^|>]+)\|([^>]+)>", r"\2", text)  # <url|label> links
    # Last: an escaped `<http://x|label>` in the data is text, shown as it was, never a link.
    return unescape(text)


def to_text(doc: Doc) -> str:
    out: list[str] = []
    if doc.header:
        header = plain(doc.header)
        out += [header, "=" * min(len(header), 72)]
    out.append(plain(doc.verdict))
    for sec in doc.sections:
        out.append("")
        if sec.title:
            out.append(plain(sec.title))
        out += [f"  {plain(line)}" for line in sec.lines]
        if sec.overflow:
            out.append(f"  {plain(sec.overflow)}")
    if doc.buttons:
        out.append("")
        out.append("  ".join(f"[{b.text}]" for b in doc.buttons))
    if doc.context:
        out.append("")
        out += [plain(c) for c in doc.context]
    return "\n".join(out)
