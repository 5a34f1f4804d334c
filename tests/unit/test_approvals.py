"""The approval state machine: every move legal or not, the messages a clicker sees, and random
event sequences that must never run a command twice or without its approvals."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.approvals import (
    TERMINAL,
    Approve,
    Cancel,
    Deny,
    Event,
    Expire,
    Expired,
    FingerprintPart,
    Finish,
    Refuse,
    Request,
    Result,
    Start,
    State,
    fingerprint,
    new_request,
    transition,
)
from bot.errors import ApprovalError

T0 = datetime(2024, 5, 1, 21, 20, tzinfo=UTC)
TTL_S = 900.0  # expires 21:35 UTC
EARLY = T0 + timedelta(minutes=1)
LATE = T0 + timedelta(seconds=TTL_S)
REQUESTER = "U1"


def make(required: int = 1, allow_self: bool = False) -> Request:
    return new_request(
        id="0123456789abcdef", cluster="prod-haproxy", action="cleanup", args=("virtual_ip_2",),
        node="node1", argv=("pcs", "resource", "cleanup", "virtual_ip_2"), requester=REQUESTER,
        channel="C1", reason="virtual_ip_2 failed to start on node3", prediction=None,
        fingerprint="f" * 16, now=T0, ttl_s=TTL_S, required_approvals=required,
        allow_self_approval=allow_self)


def in_state(state: State) -> Request:
    """A request that got to `state` the usual way (decided_by, approvers, result filled in)."""
    req = make()
    if state in (State.DENIED, State.CANCELLED):
        return replace(req, state=state, decided_by="U2")
    if state in (State.APPROVED, State.RUNNING, State.SUCCEEDED, State.FAILED, State.REFUSED):
        req = replace(req, state=state, approvers=("U2",), decided_by="U2")
    if state in (State.SUCCEEDED, State.FAILED):
        req = replace(req, result=Result(0 if state is State.SUCCEEDED else 1))
    return replace(req, state=state)


def step(req: Request, event: Event, *, now: datetime = EARLY, approver: bool = True) -> Request:
    return transition(req, event, now=now, is_approver=approver)


# ---------------------------------------------------------------- the full matrix

EVENTS: dict[str, Event] = {
    "approve": Approve("U2"), "deny": Deny("U2"), "cancel": Cancel("U2"), "expire": Expire(),
    "start": Start(), "finish": Finish(Result(0)), "refuse": Refuse("DC moved to node2"),
}
LEGAL = {
    (State.PENDING, "approve"): State.APPROVED,
    (State.PENDING, "deny"): State.DENIED,
    (State.PENDING, "cancel"): State.CANCELLED,
    (State.PENDING, "expire"): State.EXPIRED,
    (State.APPROVED, "cancel"): State.CANCELLED,
    (State.APPROVED, "start"): State.RUNNING,
    (State.APPROVED, "refuse"): State.REFUSED,
    (State.RUNNING, "finish"): State.SUCCEEDED,
}


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("name", list(EVENTS))
def test_every_state_and_event(state: State, name: str) -> None:
    req = in_state(state)
    now = LATE if name == "expire" else EARLY  # expire is only legal once the time is up
    expected = LEGAL.get((state, name))
    if expected is None:
        with pytest.raises(ApprovalError):
            step(req, EVENTS[name], now=now)
        return
    after = step(req, EVENTS[name], now=now)
    assert after.state is expected
    assert after.version == req.version + 1
    assert (after.id, after.argv, after.fingerprint) == (req.id, req.argv, req.fingerprint)


@pytest.mark.parametrize("state", sorted(TERMINAL))
@pytest.mark.parametrize("name", list(EVENTS))
@pytest.mark.parametrize("now", [EARLY, LATE + timedelta(days=2)])
def test_nothing_leaves_a_terminal_state(state: State, name: str, now: datetime) -> None:
    assert state.terminal
    with pytest.raises(ApprovalError):
        step(in_state(state), EVENTS[name], now=now)


# ---------------------------------------------------------------- what a clicker is told

REFUSALS = [
    ("stranger approves", make(), Approve("U9"), False, "you are not an approver for prod-haproxy"),
    ("stranger denies", make(), Deny("U9"), False, "you are not an approver for prod-haproxy"),
    ("own request", make(), Approve(REQUESTER), True, "you cannot approve your own request"),
    ("twice", replace(make(2), approvers=("U2",), version=2), Approve("U2"), True,
     "you already approved this request"),
    ("after a deny", in_state(State.DENIED), Approve("U3"), True,
     "this request was denied by <@U2> and can no longer be approved"),
    ("after a cancel", in_state(State.CANCELLED), Approve("U3"), True,
     "this request was cancelled by <@U2> and can no longer be approved"),
    ("expired", in_state(State.EXPIRED), Approve("U3"), True, "this request expired at 21:35 UTC"),
    ("running", in_state(State.RUNNING), Approve("U3"), True, "this request is already running"),
    ("stranger cancels", make(), Cancel("U9"), False,
     "only the requester or an approver can cancel this request"),
    ("cancel while running", in_state(State.RUNNING), Cancel(REQUESTER), False,
     "this request is already running and cannot be cancelled"),
    ("start unapproved", make(), Start(), False, "this request is still waiting for approval"),
    ("start twice", in_state(State.RUNNING), Start(), False, "this request is already running"),
    ("refused", in_state(State.REFUSED), Start(), False, "the cluster changed since it was asked"),
    ("expire early", make(), Expire(), False, "this request does not expire until 21:35 UTC"),
]


@pytest.mark.parametrize(("req", "event", "approver", "message"),
                         [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_refusals_explain_themselves(req: Request, event: Event, approver: bool, message: str) -> None:
    with pytest.raises(ApprovalError) as info:
        step(req, event, approver=approver)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- approving


def test_one_approval_approves() -> None:
    after = step(make(), Approve("U2"))
    assert (after.state, after.approvers, after.decided_by, after.version) == (
        State.APPROVED, ("U2",), "U2", 2)


def test_self_approval_only_when_allowed() -> None:
    with pytest.raises(ApprovalError, match="your own request"):
        step(make(allow_self=False), Approve(REQUESTER))
    assert step(make(allow_self=True), Approve(REQUESTER)).state is State.APPROVED


def test_self_approval_still_needs_an_approver() -> None:
    with pytest.raises(ApprovalError, match="not an approver"):
        step(make(allow_self=True), Approve(REQUESTER), approver=False)


def test_two_approvals_from_distinct_users() -> None:
    one = step(make(required=2), Approve("U2"))
    assert (one.state, one.approvers, one.decided_by) == (State.PENDING, ("U2",), None)
    with pytest.raises(ApprovalError, match="already approved"):
        step(one, Approve("U2"))  # a double click counts once
    two = step(one, Approve("U3"))
    assert (two.state, two.approvers, two.decided_by, two.version) == (
        State.APPROVED, ("U2", "U3"), "U3", 3)


def test_deny_after_a_first_approval() -> None:
    denied = step(step(make(required=2), Approve("U2")), Deny("U3"))
    assert (denied.state, denied.decided_by) == (State.DENIED, "U3")
    with pytest.raises(ApprovalError, match="denied by <@U3>"):
        step(denied, Approve("U4"))


@pytest.mark.parametrize("state", [State.PENDING, State.APPROVED])
def test_requester_may_cancel(state: State) -> None:
    cancelled = step(in_state(state), Cancel(REQUESTER), approver=False)
    assert (cancelled.state, cancelled.decided_by) == (State.CANCELLED, REQUESTER)


def test_approver_may_cancel() -> None:
    assert step(in_state(State.APPROVED), Cancel("U3")).state is State.CANCELLED


# ---------------------------------------------------------------- expiry


def test_approve_just_before_expiry() -> None:
    assert step(make(), Approve("U2"), now=LATE - timedelta(microseconds=1)).state is State.APPROVED


@pytest.mark.parametrize("event", [Approve("U2"), Deny("U2"), Cancel(REQUESTER)])
def test_late_click_expires_instead(event: Event) -> None:
    req = make()
    with pytest.raises(Expired, match=r"^this request expired at 21:35 UTC$") as info:
        step(req, event, now=LATE)
    assert info.value.request.state is State.EXPIRED
    assert info.value.request.version == req.version + 1
    assert info.value.request.approvers == ()


def test_expiry_message_names_the_day_when_not_today() -> None:
    with pytest.raises(Expired, match="2024-05-01 21:35 UTC"):
        step(make(), Approve("U2"), now=LATE + timedelta(days=1))


def test_approved_request_does_not_expire() -> None:
    # Once approved, the runner owns it: it starts it or refuses it after the re-check.
    assert step(in_state(State.APPROVED), Start(), now=LATE).state is State.RUNNING
    with pytest.raises(ApprovalError):
        step(in_state(State.APPROVED), Expire(), now=LATE)


# ---------------------------------------------------------------- running


@pytest.mark.parametrize(("status", "state"),
                         [(0, State.SUCCEEDED), (1, State.FAILED), (None, State.FAILED)])
def test_finish(status: int | None, state: State) -> None:
    result = Result(status, stdout="ok", stderr="", duration_s=1.5)
    done = step(in_state(State.RUNNING), Finish(result, note="n"))
    assert (done.state, done.result, done.note) == (state, result, "n")


def test_refuse_keeps_the_reason() -> None:
    refused = step(in_state(State.APPROVED), Refuse("DC moved from node1 to node2"))
    assert (refused.state, refused.note) == (State.REFUSED, "DC moved from node1 to node2")


def test_zero_required_approvals_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        make(required=0)


# ---------------------------------------------------------------- random sequences

APPROVERS = frozenset({"U1", "U2", "U3"})  # U1 is also the requester; U4 is nobody
# Approvals and starts repeated so that a good share of sequences get as far as RUNNING; the
# rest cover denials, cancels, strangers, late clicks and refusals.
events = st.sampled_from([
    Approve("U2"), Approve("U2"), Approve("U3"), Approve("U3"), Approve("U1"), Approve("U4"),
    Start(), Start(), Start(), Finish(Result(0)), Finish(Result(1)), Finish(Result(None)),
    Deny("U2"), Deny("U4"), Cancel("U1"), Cancel("U4"), Expire(), Refuse("moved"),
])
later = st.sampled_from([0, 0, 1, 10, 30, 60, 120, 300, 900])  # seconds; TTL_S is 900
steps = st.lists(st.tuples(events, later), min_size=3, max_size=20)


@settings(max_examples=150, deadline=None)
@given(steps=steps, required=st.integers(1, 3), allow_self=st.booleans())
def test_random_sequences_never_run_twice_or_unapproved(
        steps: list[tuple[Event, int]], required: int, allow_self: bool) -> None:
    req, now, moves, starts, started_from = make(required, allow_self), T0, 0, 0, None
    for event, seconds in steps:
        now += timedelta(seconds=seconds)
        before = req
        try:
            is_approver = getattr(event, "user", None) in APPROVERS
            req = transition(req, event, now=now, is_approver=is_approver)
        except Expired as exc:
            req = exc.request
        except ApprovalError:
            continue
        finally:
            assert not before.state.terminal or req == before  # nothing leaves a terminal state
        moves += 1
        if req.state is State.RUNNING and before.state is not State.RUNNING:
            starts, started_from = starts + 1, before
    assert req.version == 1 + moves
    assert starts <= 1
    if req.state in (State.RUNNING, State.SUCCEEDED, State.FAILED):
        assert starts == 1 and started_from is not None and started_from.state is State.APPROVED
        assert len(set(req.approvers)) == len(req.approvers) >= required
        assert set(req.approvers) <= APPROVERS
        assert allow_self or REQUESTER not in req.approvers


# ---------------------------------------------------------------- fingerprint


def test_fingerprint_is_short_stable_and_order_blind_for_sets() -> None:
    a = fingerprint({"dc": "node1", "quorum": "yes", "online": frozenset({"node1", "node2"}),
                     "target": "virtual_ip_2 Started node2"})
    b = fingerprint({"target": "virtual_ip_2 Started node2", "online": frozenset({"node2", "node1"}),
                     "quorum": "yes", "dc": "node1"})
    # Pinned: pending requests outlive an upgrade, and a changed hash would refuse them all.
    assert a == b == "b21bc19cc64d8aaf"


def test_fingerprint_sees_what_matters() -> None:
    base: dict[str, FingerprintPart] = {
        "dc": "node1", "quorum": "yes", "online": frozenset({"node1", "node2"})}
    moved = [{**base, "dc": "node2"}, {**base, "quorum": "no"},
             {**base, "online": frozenset({"node1"})}, {**base, "target": "Stopped"}]
    prints = {fingerprint(base), *(fingerprint(m) for m in moved)}
    assert len(prints) == 5
    assert fingerprint({"t": ("a", "b")}) != fingerprint({"t": ("b", "a")})  # tuples keep order
