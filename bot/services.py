"""The Services that commands use, wired from real parts (collector, clock, store)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bot.collect import Collector
from bot.errors import NotAllowed
from bot.pacemaker.merge import ClusterReport
from bot.settings import ClusterConfig, Settings
from commands.spec import CommandSpec, Invocation, Reply


@dataclass
class AppServices:
    settings: Settings
    collector: Collector
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    # Called with every fresh report, so the watcher can learn from on-demand status too.
    on_report: Callable[[ClusterReport], None] | None = None
    # Per-node answer time of the latest collection (seconds), for benchmarks and metrics.
    last_durations: dict[str, float] = field(default_factory=dict)

    async def collect(self, cluster: ClusterConfig) -> ClusterReport:
        report = await self.collector.collect(cluster)
        self.last_durations = {r.node: r.duration_s or 0.0 for r in report.results}
        if self.on_report is not None:
            self.on_report(report)
        return report

    def now(self) -> datetime:
        return self.clock()

    async def request_approval(self, inv: Invocation, spec: CommandSpec) -> Reply:
        raise NotAllowed(f"`{spec.name}` needs approval, and approvals are not configured")

    async def audit_tail(self, n: int) -> Reply:
        raise NotAllowed("the audit log is not configured")
