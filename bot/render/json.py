"""ClusterReport -> a JSON-ready dict: a stable, scriptable shape for `--format json`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.corosync.model import NodeCorosync
from bot.corosync.summary import CorosyncSummary
from bot.pacemaker.health import Finding
from bot.pacemaker.merge import ClusterReport, NodeResult
from bot.pacemaker.model import FailedAction, Instance, Node

Json = dict[str, Any]


def report_json(report: ClusterReport) -> Json:
    view = report.reference
    corosync = report.corosync
    return {
        "cluster": report.cluster,
        "kind": report.kind,
        "healthy": report.healthy,
        "severity": report.severity.label if report.severity else None,
        "reference_node": report.reference_node,
        "dc": view.dc if view else None,
        # A corosync-only cluster has no Pacemaker view: its quorum is Corosync's.
        "quorum": view.quorate if view else (corosync.quorate if corosync else None),
        "stack": view.summary.stack if view else None,
        "pacemaker_version": view.summary.dc_version if view else None,
        "last_update": _time(view.summary.last_update) if view else None,
        "maintenance_mode": view.summary.options.maintenance_mode if view else None,
        "nodes": [_node(n) for n in view.nodes] if view else [],
        "resources": [_instance(i) for i in view.instances] if view else [],
        "failures": [_failure(f) for f in view.failures] if view else [],
        "corosync": _corosync(corosync) if corosync else None,
        "findings": [finding_json(f) for f in report.findings],
        "views": [_result(r) for r in report.results],
    }


def _corosync(c: CorosyncSummary) -> Json:
    vq = c.quorum.votequorum if c.quorum else None
    return {
        "reference_node": c.reference_node,
        "quorate": c.quorate,
        "members": list(c.members),
        "expected_votes": vq.expected_votes if vq else None,
        "total_votes": vq.total_votes if vq else None,
        "quorum_votes": vq.quorum if vq else None,
        "transport": c.transport,
        "links": list(c.link_ids),
        "links_down": [{"link": lk.link, "a": lk.a, "b": lk.b, "members": lk.members}
                       for lk in c.links_down],
    }


def _node_corosync(c: NodeCorosync) -> Json:
    q = c.quorum
    return {
        "quorate": q.quorate if q else None,
        "members": sorted(m.label for m in q.members) if q else None,
        "ring_id": q.ring_id if q else None,
        # None: cfgtool gave no answer. Else each link this node sees trouble on.
        "links_down": None if c.links is None else [
            {"link": lk.id, "faulty": lk.faulty, "down_peers": list(lk.down_peers)}
            for lk in c.links.links if lk.faulty or lk.down_peers],
    }


def finding_json(f: Finding) -> Json:
    return {
        "severity": f.severity.label,
        "code": f.code,
        "subject": f.subject,
        "message": f.message,
        "remedy": str(f.remedy) if f.remedy else None,
    }


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _node(n: Node) -> Json:
    return {
        "name": n.name, "id": n.id, "type": n.type.value, "online": n.online,
        "standby": n.standby, "maintenance": n.maintenance, "unclean": n.unclean,
        "pending": n.pending, "is_dc": n.is_dc, "health": n.health, "healthy": n.healthy,
    }


def _instance(i: Instance) -> Json:
    return {
        "id": i.id, "agent": i.agent, "role": i.role.value, "nodes": list(i.nodes),
        "active": i.active, "failed": i.failed, "managed": i.managed, "blocked": i.blocked,
        "parents": list(i.parents),
    }


def _failure(f: FailedAction) -> Json:
    return {
        "op_key": f.op_key, "resource": f.resource, "node": f.node, "task": f.task,
        "exitstatus": f.exitstatus, "exitreason": f.exitreason, "exitcode": f.exitcode,
        "last_rc_change": _time(f.last_rc_change),
    }


def _result(r: NodeResult) -> Json:
    return {
        "node": r.node,
        "ok": r.ok,
        "error": r.error if r.view is None else (None if r.view.connected else "pacemaker not running"),
        "error_kind": r.error_kind,
        "dc": r.view.dc if r.view else None,
        "quorum": r.view.quorate if r.view else None,
        "daemons": dict(r.daemons.states) if r.daemons else None,
        "corosync": _node_corosync(r.corosync) if r.corosync and (r.corosync.quorum or r.corosync.links)
        else None,
        "corosync_error": r.corosync_error,
        "details_at": _time(r.details_at),  # when daemons and corosync were answered
        "duration_s": r.duration_s,
    }

