"""`move` then `clear` on the real lab (pcs 0.11.5) through the approval flow, with Pacemaker's own
predictions checked against what then happens."""

from __future__ import annotations

from pathlib import Path

from bot.approvals import State
from bot.collect import Collector
from bot.settings import ClusterConfig
from tests.lab.labkit import anodectl, report_until, where
from tests.lab.test_lab_approvals import approve_and_run


async def test_move_then_clear_through_the_approval_flow(tmp_path: Path, collector: Collector,
                                                        cluster: ClusterConfig) -> None:
    try:
        move = ("move", "lab", "virtual_ip_1", "node3")
        state, verified, thread = await approve_and_run(tmp_path / "move", move)
        assert "pcs resource move-with-constraint virtual_ip_1 node3" in thread, thread
        assert "Pacemaker predicts (crm_simulate with this change): virtual_ip_1 would move node1 → node3" \
            in thread, thread
        assert state is State.SUCCEEDED and verified, thread
        moved = await collector.collect(cluster)
        assert where(moved, "virtual_ip_1") == ("node3",)  # what the prediction said

        state, verified, thread = await approve_and_run(tmp_path / "clear", ("clear", "lab", "virtual_ip_1"))
        assert "pcs resource clear virtual_ip_1" in thread, thread
        assert "Pacemaker predicts (crm_simulate with this change): virtual_ip_1 would move node3 → node1" \
            in thread, thread
        assert state is State.SUCCEEDED and verified, thread
        await report_until(collector, cluster, lambda r: where(r, "virtual_ip_1") == ("node1",),
                           "virtual_ip_1 back on node1 after clear", timeout=30)
    finally:
        await anodectl("node1", "exec", "pcs", "resource", "clear", "virtual_ip_1")  # leave no constraint
