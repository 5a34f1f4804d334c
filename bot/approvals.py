"""Approval requests as a declared state machine: values, events and one pure `transition`.

No storage, no clock: the caller passes `now`; bot/store.py persists what `transition` returns.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, ClassVar, TypeAlias, assert_never

from bot.errors import ApprovalError

SYSTEM_ACTOR = "clusterbot"  # the audit actor for events the bot itself raises
FINGERPRINT_CHARS = 16  # 64 bits: plenty to tell two cluster states apart, short enough to log


class State(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DENIED = "denied"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    REFUSED = "refused"  # the re-check before running found the cluster moved: ask afresh

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({State.SUCCEEDED, State.FAILED, State.DENIED, State.EXPIRED, State.CANCELLED,
                      State.REFUSED})


@dataclass(frozen=True, slots=True)
class Result:
    """How the command ended. exit_status None: unknown (connection lost, bot restarted)."""

    exit_status: int | None
    stdout: str = ""
    stderr: str = ""
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    id: str  # opaque, made by the caller (e.g. secrets.token_hex(8))
    cluster: str
    action: str  # catalogue name, e.g. "cleanup"
    args: tuple[str, ...]
    node: str  # where the command runs
    argv: tuple[str, ...]  # the exact command approvers see and the runner runs
    requester: str  # Slack user id
    channel: str
    reason: str  # the finding it addresses, one line
    prediction: str | None
    fingerprint: str  # the cluster state it was asked for; see fingerprint()
    created_at: datetime
    expires_at: datetime
    required_approvals: int
    allow_self_approval: bool
    approvers: tuple[str, ...] = ()  # distinct user ids, in the order they approved
    state: State = State.PENDING
    decided_by: str | None = None  # who approved last, denied or cancelled
    message_ts: str | None = None  # the Slack root message
    result: Result | None = None
    note: str | None = None  # one line on how it ended without a Result: refuse reason, restart
    version: int = 1  # bumped on every transition; the store's compare-and-set key

    def __post_init__(self) -> None:
        # Zero would let a request run on no one's word.
        if self.required_approvals < 1:
            raise ValueError("required_approvals must be at least 1")
        if self.expires_at <= self.created_at:
            raise ValueError("expires_at must be after created_at")


def new_request(*, id: str, cluster: str, action: str, args: tuple[str, ...], node: str,
                argv: tuple[str, ...], requester: str, channel: str, reason: str,
                prediction: str | None, fingerprint: str, now: datetime, ttl_s: float,
                required_approvals: int, allow_self_approval: bool) -> Request:
    """A PENDING request that expires `ttl_s` seconds after `now`."""
    return Request(
        id=id, cluster=cluster, action=action, args=args, node=node, argv=argv, requester=requester,
        channel=channel, reason=reason, prediction=prediction, fingerprint=fingerprint,
        created_at=now, expires_at=now + timedelta(seconds=ttl_s),
        required_approvals=required_approvals, allow_self_approval=allow_self_approval,
    )


# ---------------------------------------------------------------- events


class EventKind(StrEnum):
    APPROVE = "approve"
    DENY = "deny"
    CANCEL = "cancel"
    EXPIRE = "expire"
    START = "start"  # the runner holds the cluster lock and begins
    FINISH = "finish"
    REFUSE = "refuse"


@dataclass(frozen=True, slots=True)
class Approve:
    user: str
    kind: ClassVar[EventKind] = EventKind.APPROVE

    @property
    def actor(self) -> str:
        return self.user


@dataclass(frozen=True, slots=True)
class Deny:
    user: str
    kind: ClassVar[EventKind] = EventKind.DENY

    @property
    def actor(self) -> str:
        return self.user


@dataclass(frozen=True, slots=True)
class Cancel:
    user: str
    kind: ClassVar[EventKind] = EventKind.CANCEL

    @property
    def actor(self) -> str:
        return self.user


@dataclass(frozen=True, slots=True)
class Expire:
    kind: ClassVar[EventKind] = EventKind.EXPIRE
    actor: ClassVar[str] = SYSTEM_ACTOR


@dataclass(frozen=True, slots=True)
class Start:
    kind: ClassVar[EventKind] = EventKind.START
    actor: ClassVar[str] = SYSTEM_ACTOR


@dataclass(frozen=True, slots=True)
class Finish:
    result: Result
    note: str | None = None  # e.g. why the outcome is unknown
    kind: ClassVar[EventKind] = EventKind.FINISH
    actor: ClassVar[str] = SYSTEM_ACTOR


@dataclass(frozen=True, slots=True)
class Refuse:
    reason: str  # what moved, one line
    kind: ClassVar[EventKind] = EventKind.REFUSE
    actor: ClassVar[str] = SYSTEM_ACTOR


Event: TypeAlias = Approve | Deny | Cancel | Expire | Start | Finish | Refuse


class Expired(ApprovalError):
    """A click arrived on a PENDING request at or after its expiry.

    `request` is the EXPIRED request the caller must persist before showing the message.
    """

    def __init__(self, message: str, request: Request) -> None:
        super().__init__(message)
        self.request = request


# ---------------------------------------------------------------- transitions


def transition(req: Request, event: Event, *, now: datetime, is_approver: bool) -> Request:
    """The request after `event`, or ApprovalError with a line fit to show only the clicker.

    `is_approver`: may the event's user approve or deny on this cluster (config + user groups).
    A late event on a PENDING request raises Expired carrying the EXPIRED request to persist.
    """
    if req.state is State.PENDING and now >= req.expires_at and not isinstance(event, Expire):
        expired = _moved(req, State.EXPIRED)
        raise Expired(f"this request expired at {_when(req.expires_at, now)}", expired)
    match event:
        case Approve():
            return _approve(req, event.user, is_approver=is_approver, now=now)
        case Deny():
            return _deny(req, event.user, is_approver=is_approver, now=now)
        case Cancel():
            return _cancel(req, event.user, is_approver=is_approver, now=now)
        case Expire():
            return _expire(req, now)
        case Start():
            _require(req, State.APPROVED, "started", now)
            return _moved(req, State.RUNNING)
        case Finish():
            _require(req, State.RUNNING, "finished", now)
            done = State.SUCCEEDED if event.result.ok else State.FAILED
            return _moved(req, done, result=event.result, note=event.note)
        case Refuse():
            _require(req, State.APPROVED, "refused", now)
            return _moved(req, State.REFUSED, note=event.reason)
        case _:
            assert_never(event)


def _approve(req: Request, user: str, *, is_approver: bool, now: datetime) -> Request:
    _require(req, State.PENDING, "approved", now)
    if not is_approver:
        raise ApprovalError(f"you are not an approver for {req.cluster}")
    if user == req.requester and not req.allow_self_approval:
        raise ApprovalError("you cannot approve your own request")
    if user in req.approvers:
        raise ApprovalError("you already approved this request")
    approvers = (*req.approvers, user)
    if len(approvers) < req.required_approvals:
        return _moved(req, State.PENDING, approvers=approvers)
    return _moved(req, State.APPROVED, approvers=approvers, decided_by=user)


def _deny(req: Request, user: str, *, is_approver: bool, now: datetime) -> Request:
    _require(req, State.PENDING, "denied", now)
    if not is_approver:
        raise ApprovalError(f"you are not an approver for {req.cluster}")
    return _moved(req, State.DENIED, decided_by=user)


def _cancel(req: Request, user: str, *, is_approver: bool, now: datetime) -> Request:
    if req.state not in (State.PENDING, State.APPROVED):
        raise ApprovalError(_unavailable(req, "cancelled", now))
    if user != req.requester and not is_approver:
        raise ApprovalError("only the requester or an approver can cancel this request")
    return _moved(req, State.CANCELLED, decided_by=user)


def _expire(req: Request, now: datetime) -> Request:
    _require(req, State.PENDING, "expired", now)
    if now < req.expires_at:
        raise ApprovalError(f"this request does not expire until {_when(req.expires_at, now)}")
    return _moved(req, State.EXPIRED)


def _require(req: Request, state: State, verb: str, now: datetime) -> None:
    if req.state is not state:
        raise ApprovalError(_unavailable(req, verb, now))


def _moved(req: Request, state: State, **changes: Any) -> Request:
    return replace(req, state=state, version=req.version + 1, **changes)


def _unavailable(req: Request, verb: str, now: datetime) -> str:
    """Why a request in its current state can no longer be `verb` (approved, started, ...)."""
    who = f"<@{req.decided_by}>" if req.decided_by else "someone"
    match req.state:
        case State.PENDING:
            return f"this request is still waiting for approval and cannot be {verb}"
        case State.APPROVED:
            return f"this request is already approved and cannot be {verb}"
        case State.RUNNING:
            return f"this request is already running and cannot be {verb}"
        case State.SUCCEEDED | State.FAILED:
            return f"this request has already run ({req.state}) and cannot be {verb}"
        case State.DENIED:
            return f"this request was denied by {who} and can no longer be {verb}"
        case State.CANCELLED:
            return f"this request was cancelled by {who} and can no longer be {verb}"
        case State.EXPIRED:
            return f"this request expired at {_when(req.expires_at, now)}"
        case State.REFUSED:
            return "this request was not run because the cluster changed since it was asked; ask again"
        case _:
            assert_never(req.state)


def _when(at: datetime, now: datetime) -> str:
    """'21:35 UTC', with the date when it is not today's."""
    at_utc, today = at.astimezone(UTC), now.astimezone(UTC).date()
    return at_utc.strftime("%H:%M UTC" if at_utc.date() == today else "%Y-%m-%d %H:%M UTC")


# ---------------------------------------------------------------- fingerprint


FingerprintPart: TypeAlias = str | tuple[str, ...] | frozenset[str]


def fingerprint(parts: Mapping[str, FingerprintPart]) -> str:
    """A short stable hash of the cluster state a request depends on.

    e.g. {"dc": "node1", "quorum": "yes", "online": frozenset(members), "target": "Started node2"}.
    Tuples keep their order; frozensets are sets (member order never changes the hash).
    """
    canon = {k: v if isinstance(v, str) else (sorted(v) if isinstance(v, frozenset) else list(v))
             for k, v in parts.items()}
    blob = json.dumps(canon, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:FINGERPRINT_CHARS]
