"""Approval requests -> Docs: the root message (edited at every change) and thread posts.

A request quotes the cluster: its reason is a finding's message (an agent's exitreason), its
prediction crm_simulate's output, its note an SSH error, its result the command's output. All of
it is escaped where it becomes mrkdwn; user and group mentions are markup on purpose.
"""

from __future__ import annotations

import shlex
from datetime import datetime

from bot.approvals import Request, Result, State
from bot.render.doc import Button, Doc, Section, mrkdwn

APPROVE, DENY, CANCEL = "clusterbot:approve", "clusterbot:deny", "clusterbot:cancel"
SEP = "&&"  # separates the commands of a multi-step action inside Request.argv
MAX_OUTPUT = 1200  # characters of stdout/stderr shown per stream

_STATE_LINE = {
    State.PENDING: ":hourglass_flowing_sand: *PENDING* approval",
    State.APPROVED: ":white_check_mark: *APPROVED*, about to run",
    State.RUNNING: ":arrows_counterclockwise: *RUNNING*",
    State.SUCCEEDED: ":white_check_mark: *SUCCEEDED*",
    State.FAILED: ":x: *FAILED*",
    State.DENIED: ":no_entry: *DENIED*",
    State.EXPIRED: ":hourglass_flowing_sand: *EXPIRED* (never approved)",
    State.CANCELLED: ":no_entry: *CANCELLED*",
    State.REFUSED: ":no_entry: *REFUSED* before running",
}


def commands(argv: tuple[str, ...]) -> list[tuple[str, ...]]:
    out: list[list[str]] = [[]]
    for word in argv:
        if word == SEP:
            out.append([])
        else:
            out[-1].append(word)
    return [tuple(c) for c in out if c]


def command_line(argv: tuple[str, ...], sudo: bool) -> str:
    """The shell line, raw (`&&` and all): escape it to show it in mrkdwn."""
    prefix = "sudo -n " if sudo else ""
    return " && ".join(prefix + shlex.join(c) for c in commands(argv))


def request_doc(req: Request, *, sudo: bool, approvers: tuple[str, ...], now: datetime) -> Doc:
    who = f"<@{req.requester}>"
    title = f":lock: `{_what(req)}` on *{mrkdwn(req.cluster)}*, requested by {who}"
    lines = [
        f"*Command:* `{mrkdwn(command_line(req.argv, sudo))}` on *{mrkdwn(req.node)}*",
        f"*Why:* {mrkdwn(req.reason)}",
        # The text says itself whether it is Pacemaker's prediction, or why there is none.
        f"*Prediction:* {mrkdwn(req.prediction or 'not recorded for this request')}",
        f"*Status:* {_status(req)}",
    ]
    if req.state is State.PENDING:
        lines.append(f"*Approvals:* {len(req.approvers)}/{req.required_approvals} from "
                     f"{_mentions(approvers)} · expires {req.expires_at:%H:%M} UTC "
                     f"(in {max(int((req.expires_at - now).total_seconds() // 60), 0)} min)")
    buttons: tuple[Button, ...] = ()
    if req.state is State.PENDING:
        buttons = (Button("Approve", APPROVE, req.id, "primary"), Button("Deny", DENY, req.id, "danger"),
                   Button("Cancel", CANCEL, req.id))
    return Doc(verdict=title, fallback=mrkdwn(f"{req.cluster}: {req.action} {' '.join(req.args)} "
                                               f"requested ({req.state.value})"),
               sections=(Section(None, tuple(lines)),), buttons=buttons,
               context=(f"request {req.id} · state fingerprint {req.fingerprint} · "
                        "reply `approve`, `deny` or `cancel` in this thread",))


def _what(req: Request) -> str:
    """`cleanup virtual_ip_2`, escaped: the arguments are names the user typed."""
    return mrkdwn(" ".join((req.action, *req.args)))


def _status(req: Request) -> str:
    line = _STATE_LINE[req.state]
    if req.decided_by and req.state in (State.APPROVED, State.DENIED, State.CANCELLED):
        line += f" by <@{req.decided_by}>"
    if req.approvers and req.state is not State.PENDING:
        line += f" · approved by {', '.join(f'<@{u}>' for u in req.approvers)}"
    if req.note:
        line += f" · {mrkdwn(req.note)}"
    if req.result is not None and req.result.exit_status is not None:
        line += f" · exit {req.result.exit_status} in {req.result.duration_s:.1f}s"
    return line


def _mentions(ids: tuple[str, ...]) -> str:
    if not ids:
        return "nobody (no approvers configured)"
    return ", ".join(f"<!subteam^{i}>" if i.startswith("S") else f"<@{i}>" for i in ids)


def output_doc(req: Request, result: Result) -> Doc:
    head = (f":white_check_mark: exited 0 in {result.duration_s:.1f}s" if result.ok
            else f":x: exited {result.exit_status} in {result.duration_s:.1f}s")
    lines = []
    for name, text in (("stdout", result.stdout), ("stderr", result.stderr)):
        if text.strip():
            lines.append(f"*{name}:*\n```{_clip(text)}```")
    return Doc(verdict=f"{head}: `{_what(req)}` on {mrkdwn(req.node)}",
               fallback=f"{req.action} exited {result.exit_status}", sections=(Section(None, tuple(lines)),))


def _clip(text: str) -> str:
    """Command output for a code block: cut on the raw text, then escaped, so no entity is cut in
    half; Slack parses `<!channel>` even inside a code block."""
    text = text.strip().replace("```", "'''")
    return mrkdwn(text if len(text) <= MAX_OUTPUT else text[:MAX_OUTPUT] + "\n…(truncated)")


def note_doc(text: str) -> Doc:
    """`text` is mrkdwn as it is (it may mention users): the caller escapes data with `mrkdwn()`."""
    return Doc(verdict=text, fallback=text.replace("*", ""))
