"""The contract between chat transports (Slack, console) and commands.

A command module declares a CommandSpec: name, arguments, help and whether it needs approval.
Transports turn their payloads into an Invocation at the edge; commands return a Reply (data,
never Block Kit), which each transport renders its own way.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from bot.render.doc import Doc

if TYPE_CHECKING:
    from bot.pacemaker.merge import ClusterReport
    from bot.remedies import Action
    from bot.settings import ClusterConfig, Settings

MAX_ARG_CHARS = 63  # Pacemaker ids are short; anything longer is a typo or an attack


class ArgKind(StrEnum):
    CLUSTER = "cluster"
    NODE = "node"
    RESOURCE = "resource"
    COUNT = "count"
    WORD = "word"


_PATTERNS = {
    # Strict ASCII names: no shell metacharacters, no whitespace, no unicode look-alikes.
    ArgKind.CLUSTER: re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,62}$"),
    ArgKind.NODE: re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,62}$"),
    ArgKind.RESOURCE: re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._:-]{0,62}$"),
    ArgKind.COUNT: re.compile(r"^[0-9]{1,4}$"),
    ArgKind.WORD: re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$"),
}


@dataclass(frozen=True, slots=True)
class ArgSpec:
    name: str
    kind: ArgKind
    help: str
    required: bool = True

    def check(self, value: str) -> str | None:
        """None when valid, else a one-line reason (never echoing the raw value back at length)."""
        if len(value) > MAX_ARG_CHARS:
            return f"{self.name} is too long ({len(value)} characters, at most {MAX_ARG_CHARS})"
        if not _PATTERNS[self.kind].fullmatch(value):
            return f"{self.name} {value[:40]!r} is not a valid {self.kind.value} name"
        return None


class Source(StrEnum):
    SLASH = "slash"
    MENTION = "mention"
    BUTTON = "button"
    CONSOLE = "console"
    THREAD = "thread"


@dataclass(frozen=True, slots=True)
class Invocation:
    """A parsed chat command, transport-neutral."""

    command: str
    args: tuple[str, ...]
    user: str
    channel: str | None = None
    thread_ts: str | None = None
    source: Source = Source.SLASH


@dataclass(frozen=True, slots=True)
class Reply:
    """What a command answers. `ephemeral` replies are shown only to the person who asked."""

    doc: Doc
    ephemeral: bool = False
    # Set for approval requests: the transport threads the conversation under this message.
    request_id: str | None = None


class Services(Protocol):
    """What commands may use: settings, status collection, the clock, approvals."""

    @property
    def settings(self) -> Settings: ...

    async def collect(self, cluster: ClusterConfig) -> ClusterReport: ...

    def now(self) -> datetime: ...

    async def request_approval(self, inv: Invocation, spec: CommandSpec) -> Reply: ...

    async def audit_tail(self, n: int) -> Reply: ...


Runner = Callable[[Invocation, "Services"], Awaitable[Reply]]


@dataclass(frozen=True, slots=True)
class CommandSpec:
    name: str
    help: str
    args: tuple[ArgSpec, ...] = ()
    needs_approval: bool = False
    run: Runner | None = None  # None for approval-gated actions: dispatch files a request
    progress: Callable[[Invocation, Services], str] | None = None  # "gathering status ..."
    action: Action | None = field(default=None, compare=False)  # the remediation, if any

    @property
    def usage(self) -> str:
        parts = [f"/cluster {self.name}"]
        for a in self.args:
            parts.append(f"{a.name.upper()}" if a.required else f"[{a.name.upper()}]")
        return " ".join(parts)

    def bind(self, words: Sequence[str]) -> tuple[str, ...]:
        """Validate positional words against the declared arguments; UsageError if wrong."""
        required = sum(1 for a in self.args if a.required)
        if not required <= len(words) <= len(self.args):
            raise UsageError(self, f"`/cluster {self.name}` takes "
                             f"{_count(required, len(self.args))}, got {len(words)}")
        for spec, word in zip(self.args, words, strict=False):
            problem = spec.check(word)
            if problem:
                raise UsageError(self, problem)
        return tuple(words)


def _count(low: int, high: int) -> str:
    if low == high:
        return f"{low} argument{'s' if low != 1 else ''}"
    return f"{low} to {high} arguments"


class UsageError(Exception):
    """Bad command or arguments: the transport shows `message` and the usage, ephemerally."""

    def __init__(self, spec: CommandSpec | None, message: str) -> None:
        super().__init__(message)
        self.spec = spec
        self.message = message
