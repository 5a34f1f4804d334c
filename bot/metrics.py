"""Prometheus metrics: one Metrics object owns its own registry and every clusterbot_* series.

The rest of the bot calls the typed methods below and never touches prometheus_client, so the
series names, label sets and label hygiene live in this one file. A private CollectorRegistry
(not the process-global one) keeps tests independent and keeps library metrics out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from bot.pacemaker.merge import ClusterReport, NodeResult
from bot.ssh import PoolStats

# The classic text format: every Prometheus server and scraper understands it.
CONTENT_TYPE: Final = CONTENT_TYPE_PLAIN_0_0_4
PREFIX: Final = "clusterbot_"

# A poll sweeps every node of a cluster; node answers are single SSH round trips.
POLL_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
NODE_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0)

SEVERITY_NAMES: Final = {0: "healthy", 1: "info", 2: "warning", 3: "critical"}

# Label values come from config (cluster and node names), Slack (error codes) or our own code.
# Anything outside this shape is folded to "other": a surprise value must never mint series.
_LABEL_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,62}$")
OTHER: Final = "other"


def label(value: str) -> str:
    """A safe, bounded label value."""
    return value if _LABEL_RE.fullmatch(value) else OTHER


def severity_name(severity: int | None) -> str:
    """0/None healthy, 1 info, 2 warning, 3 critical (bot.pacemaker.health.Severity values)."""
    return SEVERITY_NAMES.get(int(severity or 0), OTHER)


class Metrics:
    """Every clusterbot_* series, behind typed methods. Cheap enough to call on every event."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._last_results: dict[str, tuple[NodeResult, ...]] = {}
        r = self.registry
        self._polls = Counter(f"{PREFIX}polls", "Cluster polls finished, by outcome (ok: every node "
                              "answered).", ["cluster", "outcome"], registry=r)
        self._poll_seconds = Histogram(f"{PREFIX}poll_duration_seconds", "Wall time of one cluster "
                                       "poll.", ["cluster"], buckets=POLL_BUCKETS, registry=r)
        self._last_poll = Gauge(f"{PREFIX}last_poll_timestamp_seconds", "Unix time the last poll of "
                                "a cluster finished (alert when it stops moving).", ["cluster"], registry=r)
        self._node_seconds = Histogram(f"{PREFIX}node_answer_duration_seconds", "Time for one node "
                                       "to answer a poll.", ["cluster", "node"], buckets=NODE_BUCKETS,
                                       registry=r)
        self._ssh_errors = Counter(f"{PREFIX}ssh_errors", "Failed node queries, by error kind "
                                   "(unreachable, auth, host_key, timeout, sudo, ...).",
                                   ["cluster", "node", "kind"], registry=r)
        self._severity = Gauge(f"{PREFIX}cluster_severity", "Worst current finding: 0 healthy, "
                               "1 info, 2 warning, 3 critical.", ["cluster"], registry=r)
        self._reachable = Gauge(f"{PREFIX}cluster_reachable_nodes", "Nodes that answered the last "
                                "poll.", ["cluster"], registry=r)
        self._opened = Counter(f"{PREFIX}incidents_opened", "Incidents opened, by severity.",
                               ["cluster", "severity"], registry=r)
        self._resolved = Counter(f"{PREFIX}incidents_resolved", "Incidents resolved.", ["cluster"],
                                 registry=r)
        self._approvals = Counter(f"{PREFIX}approvals_final", "Approval requests that reached a "
                                  "final state (succeeded, failed, denied, expired, ...).", ["state"],
                                  registry=r)
        self._slack = Counter(f"{PREFIX}slack_calls", "Requests to Slack (Web API methods and "
                              "response_url replies, each retried attempt too), by method and result "
                              "(ok, Slack's error code, http_NNN).", ["method", "result"], registry=r)
        self._push = Counter(f"{PREFIX}push_requests", "Requests to /push, by outcome.", ["outcome"],
                             registry=r)
        self._leader = Gauge(f"{PREFIX}leader", "1 while this replica is the leader (runs the watcher "
                             "and the alert deliverer), else 0.", registry=r)
        self._epoch = Gauge(f"{PREFIX}leader_epoch", "The epoch this replica last led in (0: never).",
                            registry=r)
        self._leader_changes = Counter(f"{PREFIX}leader_changes", "Times this replica became leader or "
                                       "stopped being it.", registry=r)

    # -- polling ---------------------------------------------------------------------------

    def poll(self, cluster: str, seconds: float, ok: bool, *, now: float | None = None) -> None:
        """One finished poll; `now` (Unix time) defaults to the wall clock."""
        c = label(cluster)
        self._polls.labels(c, "ok" if ok else "partial").inc()
        self._poll_seconds.labels(c).observe(seconds)
        if now is None:
            self._last_poll.labels(c).set_to_current_time()
        else:
            self._last_poll.labels(c).set(now)

    def record_poll(self, report: ClusterReport, seconds: float) -> None:
        """Everything one poll tells: duration, per-node answers and errors, health (one call)."""
        answered = 0
        # A node result the collector reused from an earlier poll was already observed once.
        seen = {id(r) for r in self._last_results.get(report.cluster, ())}
        self._last_results[report.cluster] = report.results
        for r in report.results:
            if r.duration_s is not None and id(r) not in seen:
                self.node_answer(report.cluster, r.node, r.duration_s)
            if r.error_kind is not None:
                self.ssh_error(report.cluster, r.node, r.error_kind)
            answered += r.answered
        self.poll(report.cluster, seconds, ok=answered == len(report.results))
        self.cluster_health(report.cluster, report.severity, answered)

    def node_answer(self, cluster: str, node: str, seconds: float) -> None:
        self._node_seconds.labels(label(cluster), label(node)).observe(seconds)

    def ssh_error(self, cluster: str, node: str, kind: str) -> None:
        self._ssh_errors.labels(label(cluster), label(node), label(kind)).inc()

    def cluster_health(self, cluster: str, severity: int | None, reachable: int) -> None:
        """None or 0 means healthy; otherwise a bot.pacemaker.health.Severity (1..3)."""
        c = label(cluster)
        self._severity.labels(c).set(int(severity or 0))
        self._reachable.labels(c).set(reachable)

    # -- incidents, approvals, Slack, push -------------------------------------------------

    def incident_opened(self, cluster: str, severity: int) -> None:
        self._opened.labels(label(cluster), severity_name(severity)).inc()

    def incident_resolved(self, cluster: str) -> None:
        self._resolved.labels(label(cluster)).inc()

    def approval_final(self, state: str) -> None:
        self._approvals.labels(label(str(state))).inc()

    def slack_call(self, method: str, result: str) -> None:
        """`result` is "ok" or the Slack error code (e.g. "ratelimited", "channel_not_found")."""
        self._slack.labels(label(method), label(result)).inc()

    def push(self, outcome: str) -> None:
        """One /push request: accepted, unauthorized, bad_request, unknown_cluster, too_large."""
        self._push.labels(label(outcome)).inc()

    def leadership(self, leader: bool, epoch: int | None) -> None:
        """A change of role (every replica starts as a follower, reported as 0 from the start)."""
        self._leader.set(1 if leader else 0)
        self._epoch.set(epoch or 0)
        self._leader_changes.inc()

    # -- the SSH pool ----------------------------------------------------------------------

    def watch_pool(self, stats: Callable[[], PoolStats]) -> None:
        """Expose SshPool counters, read at scrape time (pass `pool.stats`)."""
        self.registry.register(_PoolCollector(stats))

    # -- exposition ------------------------------------------------------------------------

    def render(self) -> bytes:
        """The text exposition format (serve it with CONTENT_TYPE)."""
        return generate_latest(self.registry)

    @property
    def content_type(self) -> str:
        return CONTENT_TYPE


# PoolStats field -> (series name without prefix and _total, help)
_POOL_SERIES: Final = {
    "connections_opened": ("ssh_connections_opened", "SSH connections opened."),
    "reconnects": ("ssh_reconnects", "SSH connections re-opened to a node seen before."),
    "connect_failures": ("ssh_connect_failures", "SSH connection attempts that failed."),
    "backoff_rejections": ("ssh_backoff_rejections", "Node queries failed fast during connect backoff."),
    "retries": ("ssh_command_retries", "Commands re-sent because their session never opened."),
    "commands_run": ("ssh_commands_run", "Remote commands that returned an exit status."),
}


class _PoolCollector(Collector):
    def __init__(self, stats: Callable[[], PoolStats]) -> None:
        self._stats = stats

    def describe(self) -> Iterable[Metric]:
        # Names only: calling stats() at registration could touch a half-built pool.
        return [CounterMetricFamily(f"{PREFIX}{name}", doc) for name, doc in _POOL_SERIES.values()]

    def collect(self) -> Iterable[Metric]:
        snapshot = self._stats()
        for attr, (name, doc) in _POOL_SERIES.items():
            yield CounterMetricFamily(f"{PREFIX}{name}", doc, value=getattr(snapshot, attr))
