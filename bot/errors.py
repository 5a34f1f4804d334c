"""Our exception tree. Every error carries a one-line human message.

    ClusterbotError(message)
    ├── ConfigError            bad config file or environment value (names the key)
    ├── ParseError             crm_mon / corosync output we cannot read
    ├── SshError(node)         anything that kept us from a node's answer
    │   ├── Unreachable        connection refused, DNS, network down
    │   ├── HostKeyError       unknown or changed host key: never a prompt, always loud
    │   ├── AuthError          the key was refused
    │   ├── SshTimeout         connect or command exceeded its timeout
    │   ├── SudoRefused        sudo -n wanted a password or the command is not allowed
    │   └── CommandFailed      the command ran and exited non-zero (exit_status, stderr)
    ├── SlackError             Slack API trouble that survived the retry handlers
    ├── ApprovalError          illegal approval transition, unknown or stale request
    │   └── ClusterBusy        another remediation holds the cluster's lock
    ├── NotAllowed             the user or channel may not do this
    └── StoreUnavailable       the state database cannot be reached or used now (retry later)
"""

from __future__ import annotations

import re


class ClusterbotError(Exception):
    """Base class: `str(err)` is a one-line message fit for a user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(ClusterbotError):
    pass


class ParseError(ClusterbotError):
    pass


class SshError(ClusterbotError):
    """Base of every failure to get an answer from a node; `kind` is a stable metric label."""

    kind = "ssh"

    def __init__(self, node: str, message: str) -> None:
        super().__init__(f"{node}: {message}")
        self.node = node


class Unreachable(SshError):
    kind = "unreachable"


class HostKeyError(SshError):
    kind = "host_key"


class AuthError(SshError):
    kind = "auth"


class SshTimeout(SshError):
    kind = "timeout"


class SudoRefused(SshError):
    kind = "sudo"


class CommandFailed(SshError):
    kind = "command_failed"

    def __init__(self, node: str, argv: tuple[str, ...], exit_status: int, stderr: str) -> None:
        first = stderr.strip().splitlines()[0] if stderr.strip() else "no stderr"
        super().__init__(node, f"`{argv[0]}` exited {exit_status}: {first[:200]}")
        self.argv = argv
        self.exit_status = exit_status
        self.stderr = stderr


class SlackError(ClusterbotError):
    pass


class ApprovalError(ClusterbotError):
    pass


class ClusterBusy(ApprovalError):
    pass


class NotAllowed(ClusterbotError):
    pass


class StoreUnavailable(ClusterbotError):
    """The database is down, restarting, unreachable or locked: nothing was written; the store
    reconnects by itself on the next call."""


def first_line(exc: BaseException, most: int = 200) -> str:
    """A driver's or library's exception as one line for our messages: its first line, spaces
    collapsed, bounded (a database error can carry a whole query and its context)."""
    text = re.sub(r"\s+", " ", str(exc).strip().split("\n")[0]) or type(exc).__name__
    return text[:most]
