"""The runbook's fixes through the approval flow, on the real lab: request, approve, run once over
real SSH, verify on the real cluster."""

from __future__ import annotations

from pathlib import Path

from bot.approvals import State
from bot.runtime import running
from bot.store import AsyncStore
from commands import lookup
from commands.spec import Invocation, Source
from tests.lab import labkit
from tests.lab.harness import RecordingPoster
from tests.lab.labkit import CLONE, anodectl, finding, report_until

ASKER, APPROVER = "U0ASKER", "U0APPROVER"


async def audit_verified(store: AsyncStore, request_id: str) -> bool:
    entries = [e for e in await store.audit_tail(100) if e.request_id == request_id]
    return any(e.event == "verify" and e.detail.get("verified") for e in entries)


async def approve_and_run(tmp_path: Path, words: tuple[str, ...]) -> tuple[State, bool, str]:
    """File `words` as a request by ASKER, approve it as APPROVER, wait for the run."""
    cfg = labkit.settings(tmp_path / "state")
    lab = cfg.clusters[0].model_copy(update={"approvers": (APPROVER,)})
    settings = cfg.model_copy(update={"clusters": (lab,)})
    async with running(settings) as rt:
        poster = RecordingPoster()
        rem = await rt.approvals(poster, default_channel="C0LAB")
        spec = lookup(words[0])
        assert spec is not None
        reply = await rem.request(Invocation(words[0], words[1:], user=ASKER, channel="C0LAB",
                                             source=Source.CONSOLE), spec)
        assert reply.request_id is not None
        assert await rem.decide(reply.request_id, ASKER, "approve") is not None  # not their own
        assert await rem.decide(reply.request_id, APPROVER, "approve") is None
        await rem.wait_idle()
        req = await rt.store.get_request(reply.request_id)
        assert req is not None
        return req.state, await audit_verified(rt.store, req.id), "\n".join(p.text for p in poster.posts)


async def test_cleanup_through_the_approval_flow(tmp_path: Path, collector, cluster) -> None:  # type: ignore[no-untyped-def]
    await anodectl("node2", "break-resource", CLONE)
    subject = f"{CLONE}@node2"
    await report_until(collector, cluster, lambda r: finding(r, "failed_action", subject) is not None,
                       f"a failed action of {subject}", timeout=45)
    state, verified, thread = await approve_and_run(tmp_path, ("cleanup", "lab", CLONE, "node2"))
    assert state is State.SUCCEEDED and verified, thread
    assert "pcs resource cleanup loadbalancer-clone node=node2" in thread and "exited 0" in thread
    report = await collector.collect(cluster)
    assert report.reference is not None and report.reference.failures == ()


async def test_resync_through_the_approval_flow(tmp_path: Path, collector, cluster) -> None:  # type: ignore[no-untyped-def]
    await anodectl("node2", "exec", "systemctl", "stop", "pcsd")
    await report_until(collector, cluster, lambda r: finding(r, "daemon_inactive", "node2") is not None,
                       "pcsd inactive on node2", timeout=30)
    state, verified, thread = await approve_and_run(tmp_path, ("resync", "lab", "node2"))
    assert state is State.SUCCEEDED and verified, thread
    assert "systemctl restart corosync && systemctl restart pcsd" in thread
    report = await collector.collect(cluster)
    assert finding(report, "daemon_inactive", "node2") is None
