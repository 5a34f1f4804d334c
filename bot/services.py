"""The Services that commands use, wired from real parts (collector, clock, store)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bot.collect import Ask, Collector
from bot.errors import NotAllowed
from bot.pacemaker.merge import ClusterReport
from bot.remediation import Remediation
from bot.render.doc import Doc, Section
from bot.settings import ClusterConfig, Settings
from bot.store import AsyncStore, AuditEntry
from commands.spec import CommandSpec, Invocation, Reply, UsageError


@dataclass
class AppServices:
    settings: Settings
    collector: Collector
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    # Called with every fresh report, so the watcher can learn from on-demand status too.
    on_report: Callable[[ClusterReport], None] | None = None
    # Per-node crm_mon time of the latest collection (seconds; the nodes asked), for benchmarks.
    last_durations: dict[str, float] = field(default_factory=dict)

    async def collect(self, cluster: ClusterConfig, *, ask: Ask = Ask.STATUS) -> ClusterReport:
        report = await self.collector.collect(cluster, ask=ask)
        self.last_durations = self.collector.answer_times(cluster.name)
        if self.on_report is not None:
            self.on_report(report)
        return report

    def now(self) -> datetime:
        return self.clock()

    remediation: Remediation | None = None
    store: AsyncStore | None = None

    async def request_approval(self, inv: Invocation, spec: CommandSpec) -> Reply:
        if self.remediation is None:
            raise NotAllowed(f"`{spec.name}` needs approval, and approvals are not running here")
        return await self.remediation.request(inv, spec)

    async def audit_tail(self, n: int) -> Reply:
        if n < 1:  # "last 0 entries: the audit log is empty" would be a false answer
            raise UsageError(None, "`/cluster audit N` shows the last N entries: N is 1 to 50 (default 10)")
        if self.store is None:
            raise NotAllowed("the audit log is not available here")
        entries = await self.store.audit_tail(n)
        lines = [audit_line(e) for e in entries] or ["the audit log is empty"]
        return Reply(Doc(verdict=f":scroll: last {len(entries)} audit entries",
                         fallback="audit log", sections=(Section(None, tuple(lines)),)), ephemeral=True)


def audit_line(e: AuditEntry) -> str:
    change = f" {e.state_from}→{e.state_to}" if e.state_to else ""
    what = f" `{e.request_id}`" if e.request_id else ""
    return f"{e.at:%Y-%m-%d %H:%M:%S} · <@{e.actor}> · {e.event}{what}{change}" + (
        f" · {e.cluster}" if e.cluster else "")
