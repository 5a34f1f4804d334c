"""Approval-gated remediation: request, approve, re-check, run once, verify, audit.

Every decision reloads the request from the store and goes through the store's atomic
transition, so a double click, two approvers racing, a Slack retry or a forged payload can never
run a command twice, or at all without the approvals. The button payload is only an id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol

from slack_sdk.errors import SlackApiError

from bot.approvals import (
    Approve,
    Cancel,
    Deny,
    Expired,
    Finish,
    Refuse,
    Request,
    Result,
    Start,
    State,
    fingerprint,
    new_request,
)
from bot.errors import ApprovalError, ClusterBusy, NotAllowed, ParseError, SshError, StoreUnavailable
from bot.metrics import Metrics
from bot.pacemaker.health import Remedy
from bot.pacemaker.merge import ClusterReport
from bot.pacemaker.model import NodeView
from bot.pacemaker.whatif import transition
from bot.poster import Poster
from bot.remedies import (
    Action,
    Plan,
    Refused,
    Target,
    Version,
    fingerprint_parts,
    judged_view,
    plan,
    probed_units,
    target_of,
    unit_installed,
    with_units,
)
from bot.render.approvals import SEP, commands, note_doc, output_doc, request_doc
from bot.render.doc import Doc, mrkdwn
from bot.render.status import fix_code, status_doc
from bot.settings import ClusterConfig, Settings
from bot.slack.client import error_code
from bot.ssh import Completed
from bot.store import AsyncStore
from commands.spec import CommandSpec, Invocation, Reply

log = logging.getLogger(__name__)
Collect = Callable[[ClusterConfig], Awaitable[ClusterReport]]
RUN_TIMEOUT_S = 120.0  # systemctl restart corosync takes ~6 s; pcs commands a few seconds
SIMULATE_TIMEOUT_S = 30.0
# A command that ran is recorded (FINISH frees the cluster's lock) however long the database is down,
# up to this long; past it the next start records it as interrupted (fail_interrupted).
FINISH_RETRY_S = 600.0
# Exactly these argv (deploy/sudoers.d allows them as they are): the CIB goes in on stdin, so
# no temporary file on the node and no file argument for sudoers to reason about.
CIB_QUERY = ("cibadmin", "--query")
SIMULATE = ("crm_simulate", "--xml-pipe", "--simulate")


class Nodes(Protocol):
    """Commands on cluster nodes (bot.collect.Collector)."""

    async def run(self, cluster: ClusterConfig, node: str, argv: tuple[str, ...],
                  timeout_s: float | None = None, *, input: str | None = None) -> Completed: ...

    async def read(self, cluster: ClusterConfig, node: str, argv: tuple[str, ...]) -> Completed: ...

    async def pcs_version(self, cluster: ClusterConfig, node: str) -> Version | None: ...


async def _no_groups(group: str) -> set[str]:
    return set()


@dataclass
class Remediation:
    settings: Settings
    store: AsyncStore
    collect: Collect
    nodes: Nodes
    poster: Poster
    clock: Callable[[], datetime]
    members_of: Callable[[str], Awaitable[set[str]]] = _no_groups
    new_id: Callable[[], str] = lambda: secrets.token_hex(8)
    verify_timeout_s: float = 45.0
    default_channel: str = "console"
    metrics: Metrics | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    # -- request -----------------------------------------------------------------------------

    async def request(self, inv: Invocation, spec: CommandSpec) -> Reply:
        cluster = self._cluster(inv.args[0])
        action = spec.action
        assert isinstance(action, Action)
        report = await self.collect(cluster)
        try:
            p = await self._plan(cluster, action, inv.args[1:], report)
        except Refused as err:
            raise NotAllowed(f"`{spec.name}` refused: {err.message}") from err
        req = self._new(inv, cluster, p, report, await self._predict(cluster, action, p))
        # Refused before anything is posted while the database is down: a request shown in Slack
        # must be one the store can approve.
        try:
            await self.store.ping()
        except StoreUnavailable as err:
            raise NotAllowed(f"`{spec.name}` refused: {err}; nothing was filed, ask again shortly") from err
        # Posted before it is stored: a request nobody can see (the bot may not post in this
        # channel) must not wait in the store and the audit log for approvals that cannot come.
        ts = await self._post_request(req)
        try:
            await self.store.create_request(replace(req, message_ts=ts))
        except StoreUnavailable:  # went down since the ping: the posted request must not look live
            await self._withdraw(req, ts)
            raise
        return Reply(note_doc(f":lock: request `{req.id}` posted: it runs after "
                              f"{req.required_approvals} approval(s)"), ephemeral=True, request_id=req.id)

    async def _withdraw(self, req: Request, ts: str) -> None:
        with contextlib.suppress(Exception):  # best effort: the caller is told either way
            await self.poster.update(req.channel, ts, note_doc(
                f":no_entry: request `{req.id}` was not filed (the state database is unavailable); "
                "nothing will run: ask again shortly"))

    async def _post_request(self, req: Request) -> str:
        try:
            return await self.poster.post(req.channel, self._doc(req))
        except Exception as exc:  # any Slack failure: nothing was stored, say why in one line
            why = (error_code(exc) or "error") if isinstance(exc, SlackApiError) else type(exc).__name__
            log.warning("request for %s on %s not posted in %s: %s", req.action, req.cluster, req.channel,
                        f"{type(exc).__name__}: {exc}".splitlines()[0])
            raise NotAllowed(f"could not post the request in this channel (Slack said `{why}`), so nothing "
                             "was filed: invite the bot (`/invite @clusterbot`) or ask in a channel it "
                             "is in") from exc

    def _new(self, inv: Invocation, cluster: ClusterConfig, p: Plan, report: ClusterReport,
             prediction: str | None) -> Request:
        argv: list[str] = []
        for cmd in p.commands:
            argv += [*([SEP] if argv else []), *cmd]
        return new_request(
            id=self.new_id(), cluster=cluster.name, action=p.action, args=inv.args[1:], node=p.node,
            argv=tuple(argv), requester=inv.user, channel=inv.channel or self.default_channel,
            reason=p.reason, prediction=prediction,
            fingerprint=fingerprint(fingerprint_parts(report, p.target)), now=self.clock(),
            ttl_s=self.settings.approval_ttl_s, required_approvals=cluster.approvals_required,
            allow_self_approval=cluster.allow_self_approval)

    async def _plan(self, cluster: ClusterConfig, action: Action, args: tuple[str, ...],
                    report: ClusterReport) -> Plan:
        """The catalogue's plan for the pcs the node runs, without the steps whose unit the
        target node does not have."""
        p = plan(action, args, report, cluster.templates)
        if action.needs_pcs_version:
            p = plan(action, args, report, cluster.templates, pcs=await self._pcs(cluster, p.node))
        units = probed_units(action)
        if not units:
            return p
        installed: set[str] = set()
        for unit in units:
            try:  # read-only; exits 1 both for a disabled unit and for none: stdout tells
                done = await self.nodes.run(cluster, p.node, ("systemctl", "is-enabled", unit), 30.0)
            except SshError as err:
                raise Refused(f"cannot tell whether {unit} is installed on {p.node}: {err}") from err
            if unit_installed(done.stdout):
                installed.add(unit)
        return with_units(action, p, frozenset(installed))

    async def _pcs(self, cluster: ClusterConfig, node: str) -> Version:
        """The pcs version on `node`, for steps whose command changed between pcs versions."""
        try:
            version = await self.nodes.pcs_version(cluster, node)
        except (SshError, ParseError) as err:
            raise Refused(f"cannot tell which pcs runs on {node}: "
                          f"{str(err).removeprefix(node + ': ')}") from err
        if version is None:
            raise Refused(f"pcs is not installed on {node}")
        return version

    async def _predict(self, cluster: ClusterConfig, action: Action, p: Plan) -> str:
        """What Pacemaker itself predicts: crm_simulate on a copy of the live CIB with the
        action's change applied. Otherwise one line saying plainly why there is no prediction."""
        if action.whatif is None:
            return f"no prediction for {action.name}: {action.no_prediction}"
        node = p.node
        try:
            cib = await self.nodes.read(cluster, node, CIB_QUERY)
        except SshError as err:
            return f"cibadmin --query failed on {node}: {str(err).removeprefix(node + ': ')}"
        if cib.exit_status != 0:
            return f"cibadmin --query failed on {node}: {_first_line(cib)}"
        try:
            changed = action.whatif(cib.stdout.encode(), p.target).decode()
        except ParseError as err:
            return f"no prediction: the change could not be applied to {node}'s CIB: {err}"
        try:
            done = await self.nodes.run(cluster, node, SIMULATE, SIMULATE_TIMEOUT_S, input=changed)
            if done.exit_status != 0:
                return f"crm_simulate failed on {node}: {_first_line(done)}"
            moves = transition(done.stdout)
        except (SshError, ParseError) as err:
            return f"crm_simulate failed on {node}: {str(err).removeprefix(node + ': ')}"
        said = "; ".join(moves) if moves else "no resource would start, stop or move"
        return f"Pacemaker predicts (crm_simulate with this change): {said}"

    # -- decisions -----------------------------------------------------------------------------

    async def decide(self, request_id: str, user: str, verb: str) -> str | None:
        """A click or a thread reply. Returns a line for the clicker alone, or None."""
        try:
            return await self._decide(request_id, user, verb)
        except StoreUnavailable as err:  # each store call is atomic: nothing of the click was kept
            return f"your {verb} was not recorded ({err}); try again shortly"

    async def _decide(self, request_id: str, user: str, verb: str) -> str | None:
        req = await self.store.get_request(request_id)
        if req is None:
            await self.store.append_audit(now=self.clock(), actor=user, event=f"{verb}-unknown",
                                          detail={"request_id": request_id[:64]})
            return "no such request (it may be from another clusterbot)"
        cluster = self._cluster(req.cluster)
        event = _decision(verb, user)
        try:
            new = await self.store.apply(req.id, event, now=self.clock(),
                                         is_approver=await self.is_approver(cluster, user))
        except Expired as err:
            await self._edit(err.request)
            return str(err)
        except ApprovalError as err:
            return str(err)
        try:
            await self._edit(new)
            await self._thread(new, f"<@{user}> {verb}d ({len(new.approvers)}/{new.required_approvals})"
                               if verb == "approve" else f"<@{user}> {verb}ed" if verb == "cancel"
                               else f"<@{user}> denied")
        finally:
            if new.state is State.APPROVED:  # approved in the store: it runs, whatever Slack did
                self._spawn(new)
        return None

    async def is_approver(self, cluster: ClusterConfig, user: str) -> bool:
        allowed = cluster.approvers or self.settings.approvers
        if user in allowed:
            return True
        for group in (g for g in allowed if g.startswith("S")):
            if user in await self.members_of(group):
                return True
        return False

    # -- execution -----------------------------------------------------------------------------

    def _spawn(self, req: Request) -> None:
        task = asyncio.create_task(self.execute(req.id), name=f"remedy:{req.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_crash)

    async def wait_idle(self) -> None:
        """Wait for running remediations (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def execute(self, request_id: str) -> None:
        req = await self.store.get_request(request_id)
        if req is None or req.state is not State.APPROVED:
            return
        cluster = self._cluster(req.cluster)
        report = await self.collect(cluster)
        problem = await self._recheck(req, cluster, report)
        if problem:
            await self._finish_refused(req, problem)
            return
        try:
            running = await self.store.apply(req.id, Start(), now=self.clock(), is_approver=False)
        except ClusterBusy as err:
            # Ended, not left APPROVED: it would otherwise run unasked at the next restart.
            await self._finish_refused(req, f"{err}; ask again once it is done")
            return
        except ApprovalError as err:  # cancelled, expired or started meanwhile
            await self._thread(req, f":no_entry: not run: {mrkdwn(str(err))}")
            return
        except StoreUnavailable as err:  # nothing ran; the request stays approved in the store
            await self._thread(req, f":no_entry: not run: {mrkdwn(str(err))}; ask again once it is back")
            return
        await self._edit(running)
        result = await self._run_all(cluster, running)
        done = await self._finish(req, result)
        await self._edit(done)
        await self._post(done, output_doc(done, result))
        if result.ok:
            await self._verify(cluster, done)

    async def _finish(self, req: Request, result: Result) -> Request:
        """FINISH, retried while the database is down: the command ran, and that must be recorded."""
        deadline = time.monotonic() + FINISH_RETRY_S
        while True:
            try:
                return await self.store.apply(req.id, Finish(result), now=self.clock(), is_approver=False)
            except StoreUnavailable as err:
                if time.monotonic() > deadline:
                    raise
                log.warning("request %s ran; recording its outcome waits for the database: %s", req.id, err)
                await asyncio.sleep(2.0)  # a bounded retry (deadline above), not a synchronisation

    async def _recheck(self, req: Request, cluster: ClusterConfig, report: ClusterReport) -> str | None:
        """The approval is bound to the state it was asked for; anything that matters moved?"""
        action = self._action(req.action)
        try:
            p = await self._plan(cluster, action, req.args, report)
        except Refused as err:
            return f"{err.message}; ask again if still needed"
        now = fingerprint(fingerprint_parts(report, p.target))
        if now != req.fingerprint:
            return ("the cluster changed since the request (DC, quorum, membership, configuration "
                    "or the target's state); ask again if still needed")
        if commands(req.argv) != list(p.commands) or p.node != req.node:
            return "the command or the node to run it on would now differ; ask again"
        return None

    async def _run_all(self, cluster: ClusterConfig, req: Request) -> Result:
        started = time.perf_counter()
        out: list[str] = []
        err: list[str] = []
        status = 0
        for argv in commands(req.argv):
            try:
                done = await self.nodes.run(cluster, req.node, argv, RUN_TIMEOUT_S)
            except Exception as exc:  # any failure must still finish the request
                # SshError is the expected one; anything else too must end in FINISH, which
                # frees the cluster's lock, rather than leave the request RUNNING forever.
                why = str(exc) if isinstance(exc, SshError) else f"{type(exc).__name__}: {exc}"
                if not isinstance(exc, SshError):
                    log.exception("request %s: running %s failed", req.id, argv[0])
                return Result(None, "".join(out), "".join(err) + why, time.perf_counter() - started)
            out.append(done.stdout)
            err.append(done.stderr)
            status = done.exit_status
            if status != 0:
                break  # resync: never restart pcsd after a failed corosync restart
        return Result(status, "".join(out), "".join(err), time.perf_counter() - started)

    async def _verify(self, cluster: ClusterConfig, req: Request) -> None:
        """Re-collect until the action shows its effect and the cluster has settled (the same
        findings twice in a row), bounded; then post the verdict and a fresh status."""
        action = self._action(req.action)
        deadline = time.monotonic() + self.verify_timeout_s
        previous: set[tuple[str, str]] | None = None
        while True:
            report = await self.collect(cluster)
            pending = self._pending(action, req, report)
            keys = {f.key for f in report.findings}
            settled = pending is None and keys == previous
            if settled or time.monotonic() > deadline:
                break
            previous = keys if pending is None else None
            await asyncio.sleep(1.0)  # re-poll while Pacemaker converges, bounded by the deadline
        verdict = (":white_check_mark: verified: the change took effect" if pending is None
                   else f":warning: not verified after {self.verify_timeout_s:.0f}s: {mrkdwn(pending)}")
        await self.store.append_audit(now=self.clock(), actor="clusterbot", event="verify",
                                request_id=req.id, cluster=req.cluster,
                                detail={"verified": pending is None, "pending": pending})
        undo = f" · undo with {fix_code(req.cluster, _undo(action, req))}" if action.undo else ""
        await self._thread(req, verdict + undo)
        await self._post(req, status_doc(report, cluster.expectations))

    @staticmethod
    def _pending(action: Action, req: Request, report: ClusterReport) -> str | None:
        view = judged_view(report)
        target = plan_target(action, req, view)
        return action.verify(view, report, target) if view and target else "no view"

    async def _finish_refused(self, req: Request, why: str) -> None:
        try:
            done = await self.store.apply(req.id, Refuse(why), now=self.clock(), is_approver=False)
        except ApprovalError as err:  # cancelled or expired meanwhile: it ended anyway
            await self._thread(req, f":no_entry: not run: {mrkdwn(str(err))}")
            return
        await self._edit(done)
        # `why` may carry a finding's text from the cluster (an agent's exitreason): data, not markup.
        await self._thread(done, f":no_entry: refused before running: {mrkdwn(why)}")

    # -- sweeping and restart ------------------------------------------------------------------

    async def sweep(self) -> None:
        for req in await self.store.expire_due(self.clock()):
            await self._edit(req)

    async def resume(self) -> None:
        """At start: expire what expired, fail what was running, re-check what was approved."""
        await self.sweep()
        for req in await self.store.fail_interrupted(self.clock()):
            await self._edit(req)
            await self._thread(req, ":warning: clusterbot restarted while this was running; "
                                    "its outcome is unknown: check the cluster")
        for req in await self.store.approved_requests():
            if req.expires_at <= self.clock():
                # Approved for the cluster of then: past its window, nobody expects it to run.
                await self._finish_refused(req, "clusterbot was down when it was to run and its "
                                                "approval window has passed; ask again if still needed")
            else:
                self._spawn(req)

    async def run_sweeper(self, every_s: float = 5.0) -> None:
        while True:
            try:
                await self.sweep()
            except StoreUnavailable as err:  # expected in an outage: one line, not a traceback each time
                log.warning("approval sweep waits for the state database: %s", err)
            except Exception:
                log.exception("approval sweep failed")
            await asyncio.sleep(every_s)  # a periodic timer, not a synchronisation

    # -- messages ------------------------------------------------------------------------------

    def _doc(self, req: Request) -> Doc:
        cluster = self._cluster(req.cluster)
        return request_doc(req, sudo=cluster.sudo, approvers=cluster.approvers or self.settings.approvers,
                           now=self.clock())

    # Why none of these raise: the store is the record and decides what runs. A Slack error
    # here must not stop an approved command, or leave one RUNNING with the cluster locked;
    # the root message catches up at its next edit.

    async def _edit(self, req: Request) -> None:
        if self.metrics is not None and req.state.terminal:
            self.metrics.approval_final(req.state.value)
        if req.message_ts:
            await self._say(req, self.poster.update(req.channel, req.message_ts, self._doc(req)))

    async def _thread(self, req: Request, text: str) -> None:
        await self._post(req, note_doc(text))

    async def _post(self, req: Request, doc: Doc) -> None:
        await self._say(req, self.poster.post(req.channel, doc, thread_ts=req.message_ts))

    @staticmethod
    async def _say(req: Request, call: Awaitable[object]) -> None:
        try:
            await call
        except Exception as exc:  # Slack trouble of any kind, see above
            log.warning("request %s (%s): Slack message not updated: %s", req.id, req.state.value,
                        f"{type(exc).__name__}: {exc}")

    def _cluster(self, name: str) -> ClusterConfig:
        cluster = self.settings.cluster(name)
        if cluster is None:
            raise NotAllowed(f"unknown cluster `{name}`")
        return cluster

    @staticmethod
    def _action(name: str) -> Action:
        from commands import lookup

        spec = lookup(name)
        if spec is None or not isinstance(spec.action, Action):
            raise ApprovalError(f"`{name}` is not in the remediation catalogue")
        return spec.action


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s crashed", task.get_name(), exc_info=task.exception())


def plan_target(action: Action, req: Request, view: NodeView | None) -> Target | None:
    if view is None:
        return None
    try:
        return target_of(action.name, req.args, view)
    except Refused:
        return Target()


def _undo(action: Action, req: Request) -> Remedy:
    args = req.args if action.undo != "clear" else req.args[:1]
    return Remedy(action.undo or "", args)


def _decision(verb: str, user: str) -> Approve | Deny | Cancel:
    if verb == "approve":
        return Approve(user)
    if verb == "deny":
        return Deny(user)
    return Cancel(user)


def _first_line(done: Completed) -> str:
    detail = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[0][:200]
    return f"exited {done.exit_status}: {detail}"
