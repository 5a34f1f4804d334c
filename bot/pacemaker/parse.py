"""crm_mon XML (bytes) to a NodeView, for both output formats, hardened against hostile input.

`<pacemaker-result>` is `crm_mon --output-as=xml` (Pacemaker >= 2.0.3, including 3.x names);
`<crm_mon version=...>` is the legacy `crm_mon -X` of Pacemaker 1.1 and 2.0.0-2.0.2.
Every bad input raises ParseError with one line; no other exception escapes `parse`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TypeAlias

from lxml import etree  # type: ignore[import-untyped]  # no stubs shipped for lxml

from bot.errors import ParseError
from bot.pacemaker.model import (
    Ban,
    ClusterOptions,
    ControllerStatus,
    FailedAction,
    FenceEvent,
    Instance,
    LastChange,
    Node,
    NodeAttribute,
    NodeType,
    NodeView,
    Operation,
    Resource,
    ResourceHistory,
    ResourceKind,
    Role,
    Status,
    Summary,
    Ticket,
)

MAX_BYTES = 20 * 1024 * 1024  # default size cap; a 1000-resource cluster is well under 2 MiB
_MAX_DEPTH = 32  # resource nesting; real clusters stop at bundle > replica > resource
_DISCONNECTED_CODES = frozenset({102, 107})  # CRM_EX_UNAVAILABLE-ish "Not connected" answers
_TRUE = frozenset({"true", "yes", "1", "on", "y"})
_FALSE = frozenset({"false", "no", "0", "off", "n"})
_ROLE_ALIASES = {"master": Role.PROMOTED, "slave": Role.UNPROMOTED}
_DECL = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)

Element: TypeAlias = etree._Element


def _parser() -> etree.XMLParser:
    # No entities, no DTD, no network: crm_mon never emits a DTD, so anything relying on one
    # is an attack (XXE, billion laughs) or not crm_mon at all.
    return etree.XMLParser(
        resolve_entities=False,
        load_dtd=False,
        no_network=True,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def parse(data: bytes | str, *, max_bytes: int = MAX_BYTES) -> NodeView:
    """Parse one crm_mon XML document into a NodeView."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    root = _load(raw, max_bytes)
    try:
        if root.tag == "pacemaker-result":
            return _parse_result(root)
        if root.tag == "crm_mon":
            return _parse_body(root, fmt="legacy", api_version=root.get("version"))
        if root.tag == "crm-mon-disconnected":
            return _disconnected("2", None, root.get("pacemakerd-state"), root.get("description"))
    except ParseError:
        raise
    except (ValueError, TypeError, RecursionError) as exc:
        raise ParseError(f"crm_mon XML is inconsistent: {exc}") from exc
    raise ParseError(f"unexpected root element <{root.tag}>: expected crm_mon XML output")


def _load(raw: bytes, max_bytes: int, what: str = "crm_mon") -> Element:
    if not raw.strip():
        raise ParseError(f"empty {what} output (is Pacemaker installed on the node?)")
    if len(raw) > max_bytes:
        raise ParseError(f"{what} output is {len(raw)} bytes, over the {max_bytes}-byte cap")
    if _DECL.search(raw):
        raise ParseError(f"{what} output contains a DOCTYPE or ENTITY declaration: refused")
    try:
        root = etree.fromstring(raw, _parser())
    except etree.XMLSyntaxError as exc:
        raise ParseError(f"{what} output is not well-formed XML: {_one_line(exc.msg)}") from exc
    if root is None or not isinstance(root.tag, str):
        raise ParseError(f"{what} output has no root element")
    return root


def _one_line(text: str) -> str:
    return " ".join(text.split())[:200]


def parse_controller(data: bytes | str) -> ControllerStatus:
    """`crmadmin --status=NODE --output-as=xml` (Pacemaker >= 2.1) into the node's controller
    state. ParseError (one line) for anything else, including crmadmin's own error answers
    (controller not running, permission denied, timeout): their message is the line."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    root = _load(raw, 64 * 1024, what="crmadmin")
    if root.tag != "pacemaker-result":
        raise ParseError(f"unexpected root element <{root.tag}>: expected crmadmin XML output")
    crmd = root.find("crmd")
    if crmd is None:
        status = _status(root.find("status"))
        detail = status.errors[0] if status.errors else status.message or "no <crmd> element"
        raise ParseError(f"crmadmin answered {status.code}: {_one_line(detail)}")
    return ControllerStatus(node=_required(crmd, "node_name"), state=_required(crmd, "state"))


# ---------------------------------------------------------------- attribute readers


def _bool(el: Element, name: str, default: bool = False) -> bool:
    value = _opt_bool(el, name)
    return default if value is None else value


def _opt_bool(el: Element, *names: str) -> bool | None:
    for name in names:
        raw = el.get(name)
        if raw is None:
            continue
        low = raw.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ParseError(f"<{el.tag}> attribute {name}={raw!r} is not a boolean")
    return None


def _int(el: Element, name: str) -> int | None:
    raw = el.get(name)
    if raw is None or raw.strip() == "":
        return None
    text = raw.strip()
    if text.endswith("ms"):
        text = text[:-2]
    try:
        return int(text)
    except ValueError:
        if text in ("INFINITY", "+INFINITY"):
            return 1_000_000  # Pacemaker's score infinity
        if text == "-INFINITY":
            return -1_000_000
        raise ParseError(f"<{el.tag}> attribute {name}={raw!r} is not an integer") from None


def _time(raw: str | None) -> datetime | None:
    """Both crm_mon timestamp styles; None when absent or unreadable (it is only informative)."""
    if not raw:
        return None
    text = raw.strip()
    try:
        iso = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return iso if iso.tzinfo else iso.replace(tzinfo=UTC)
    except ValueError:
        pass
    return _ctime(text)


_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}


def _ctime(text: str) -> datetime | None:
    """`Wed Nov 25 21:20:05 2026`, by hand: strptime cost a third of a big parse.

    The ctime style carries no zone: Pacemaker prints the node's local time. Our clusters run
    in UTC, and an aware value keeps comparisons with ISO stamps from crashing.
    """
    parts = text.split()
    if len(parts) != 5 or parts[1] not in _MONTHS:
        return None
    hms = parts[3].split(":")
    try:
        h, m, sec = (int(x) for x in hms)
        return datetime(int(parts[4]), _MONTHS[parts[1]], int(parts[2]), h, m, sec, tzinfo=UTC)
    except ValueError:
        return None


def _children(el: Element | None, tag: str) -> Iterable[Element]:
    if el is None:
        return ()
    return (child for child in el if child.tag == tag)


def _required(el: Element, name: str) -> str:
    value = el.get(name)
    if value is None:
        raise ParseError(f"<{el.tag}> has no {name} attribute")
    return str(value)


def normalize_agent(agent: str | None) -> str | None:
    """Pacemaker 1.1 prints `ocf::heartbeat:IPaddr2`; later ones `ocf:heartbeat:IPaddr2`."""
    return agent.replace("::", ":") if agent else agent


def normalize_role(raw: str | None) -> Role:
    if not raw:
        return Role.UNKNOWN
    alias = _ROLE_ALIASES.get(raw.lower())
    if alias:
        return alias
    for role in Role:
        if role.value.lower() == raw.lower():
            return role
    return Role.UNKNOWN


# ---------------------------------------------------------------- document


def _parse_result(root: Element) -> NodeView:
    status = _status(root.find("status"))
    api = root.get("api-version")
    disconnected = root.find("crm-mon-disconnected")
    if disconnected is not None:
        reason = disconnected.get("description") or status.message
        return _disconnected("2", api, disconnected.get("pacemakerd-state"), reason, status)
    if root.find("summary") is None:
        if status.code in _DISCONNECTED_CODES or status.code != 0:
            pcmkd = root.find("pacemakerd")
            state = pcmkd.get("state") if pcmkd is not None else None
            return _disconnected("2", api, state, status.message, status)
        raise ParseError("crm_mon XML has no <summary>: not a status answer")
    return _parse_body(root, fmt="2", api_version=api, status=status)


def _disconnected(
    fmt: str, api: str | None, pcmkd: str | None, reason: str | None, status: Status | None = None
) -> NodeView:
    st = status or Status(code=102, message=reason or "Not connected")
    return NodeView(format=fmt, connected=False, api_version=api, pacemakerd_state=pcmkd, status=st)


def _status(el: Element | None) -> Status:
    if el is None:
        return Status()
    errors = tuple((e.text or "").strip() for e in el.iter("error"))
    return Status(code=_int(el, "code") or 0, message=el.get("message") or "", errors=errors)


def _parse_body(
    root: Element, *, fmt: str, api_version: str | None, status: Status | None = None
) -> NodeView:
    summary_el = root.find("summary")
    if summary_el is None:
        raise ParseError("crm_mon XML has no <summary>")
    nodes = tuple(_node(n) for n in _children(root.find("nodes"), "node"))
    resources = tuple(_resources(root.find("resources"), depth=0))
    pcmkd = root.find("pacemakerd")
    return NodeView(
        format=fmt,
        connected=True,
        api_version=api_version,
        pacemakerd_state=pcmkd.get("state") if pcmkd is not None else _stack_state(summary_el),
        summary=_summary(summary_el),
        nodes=nodes,
        resources=resources,
        instances=tuple(_flatten(resources, ())),
        node_attributes=tuple(_node_attributes(root.find("node_attributes"))),
        history=tuple(_history(root.find("node_history"))),
        failures=tuple(_failure(f) for f in _children(root.find("failures"), "failure")),
        fence_history=tuple(_fence(f) for f in _children(root.find("fence_history"), "fence_event")),
        tickets=tuple(_ticket(t) for t in _children(root.find("tickets"), "ticket")),
        bans=tuple(_ban(b) for b in _children(root.find("bans"), "ban")),
        status=status or Status(),
    )


def _stack_state(summary: Element) -> str | None:
    stack = summary.find("stack")
    return stack.get("pacemakerd-state") if stack is not None else None


def _summary(el: Element) -> Summary:
    dc = el.find("current_dc")
    res = el.find("resources_configured")
    nodes_conf = el.find("nodes_configured")
    stack = el.find("stack")
    update = el.find("last_update")
    return Summary(
        stack=stack.get("type") if stack is not None else None,
        dc_present=_bool(dc, "present") if dc is not None else False,
        dc_name=dc.get("name") if dc is not None else None,
        dc_id=dc.get("id") if dc is not None else None,
        dc_version=dc.get("version") if dc is not None else None,
        with_quorum=_opt_bool(dc, "with_quorum") if dc is not None else None,
        mixed_version=_opt_bool(dc, "mixed_version") if dc is not None else None,
        last_update=_time(update.get("time")) if update is not None else None,
        last_change=_last_change(el.find("last_change")),
        nodes_configured=_int(nodes_conf, "number") if nodes_conf is not None else None,
        resources_configured=_int(res, "number") if res is not None else None,
        resources_disabled=_int(res, "disabled") if res is not None else None,
        resources_blocked=_int(res, "blocked") if res is not None else None,
        options=_options(el.find("cluster_options")),
    )


def _last_change(el: Element | None) -> LastChange | None:
    if el is None:
        return None
    return LastChange(
        time=_time(el.get("time")), user=el.get("user"), client=el.get("client"),
        origin=el.get("origin"),
    )


def _options(el: Element | None) -> ClusterOptions:
    if el is None:
        return ClusterOptions()
    return ClusterOptions(
        maintenance_mode=_bool(el, "maintenance-mode"),
        stop_all_resources=_bool(el, "stop-all-resources"),
        fencing_enabled=_opt_bool(el, "fencing-enabled", "stonith-enabled"),
        no_quorum_policy=el.get("no-quorum-policy"),
        symmetric_cluster=_opt_bool(el, "symmetric-cluster"),
    )


def _node_type(el: Element) -> NodeType:
    raw = (el.get("type") or "member").lower()
    # A virtualized pacemaker_remote node (guest) is reported as "remote" with its resource id.
    if raw == "remote" and (el.get("id_as_resource") or el.get("container_id")):
        return NodeType.GUEST
    try:
        return NodeType(raw)
    except ValueError:
        return NodeType.UNKNOWN


def _node(el: Element) -> Node:
    return Node(
        name=_required(el, "name"),
        id=el.get("id"),
        type=_node_type(el),
        online=_bool(el, "online"),
        standby=_bool(el, "standby"),
        standby_onfail=_bool(el, "standby_onfail"),
        maintenance=_bool(el, "maintenance"),
        pending=_bool(el, "pending"),
        unclean=_bool(el, "unclean"),
        shutdown=_bool(el, "shutdown"),
        expected_up=_bool(el, "expected_up"),
        is_dc=_bool(el, "is_dc"),
        health=el.get("health"),
        feature_set=el.get("feature_set"),
        resources_running=_int(el, "resources_running"),
    )


# ---------------------------------------------------------------- resources

_COLLECTIVES = {"group": ResourceKind.GROUP, "clone": ResourceKind.CLONE,
                "bundle": ResourceKind.BUNDLE, "replica": ResourceKind.REPLICA}


def _resources(parent: Element | None, depth: int) -> Iterable[Resource]:
    if parent is None:
        return
    if depth > _MAX_DEPTH:
        raise ParseError(f"resources nest deeper than {_MAX_DEPTH} levels")
    for el in parent:
        if el.tag == "resource":
            yield _primitive(el)
        elif el.tag in _COLLECTIVES:
            yield _collective(el, _COLLECTIVES[el.tag], depth)


def _primitive(el: Element) -> Resource:
    target = el.get("target_role")
    return Resource(
        kind=ResourceKind.PRIMITIVE,
        id=_required(el, "id"),
        agent=normalize_agent(el.get("resource_agent")),
        role=normalize_role(el.get("role")),
        target_role=target,
        active=_bool(el, "active"),
        failed=_bool(el, "failed"),
        failure_ignored=_bool(el, "failure_ignored"),
        managed=_bool(el, "managed", default=True),
        blocked=_bool(el, "blocked"),
        orphaned=bool(_opt_bool(el, "removed", "orphaned")),
        disabled=(target or "").lower() == "stopped",
        maintenance=_bool(el, "maintenance"),
        nodes=tuple(_required(n, "name") for n in _children(el, "node")),
        locked_to=el.get("locked_to"),
        pending=el.get("pending"),
    )


def _collective(el: Element, kind: ResourceKind, depth: int) -> Resource:
    children = tuple(_resources(el, depth + 1))
    target = el.get("target_role")
    nodes = tuple(sorted({n for c in children for r in c.walk() for n in r.nodes}))
    return Resource(
        kind=kind,
        id=_required(el, "id"),
        target_role=target,
        active=any(c.active for c in children),
        failed=_bool(el, "failed") or any(c.failed for c in children),
        failure_ignored=_bool(el, "failure_ignored"),
        managed=_bool(el, "managed", default=True),
        blocked=any(c.blocked for c in children),
        disabled=_bool(el, "disabled") or (target or "").lower() == "stopped",
        maintenance=_bool(el, "maintenance"),
        multi_state=_bool(el, "multi_state"),
        unique=_bool(el, "unique"),
        nodes=nodes,
        children=children,
    )


def _flatten(resources: Iterable[Resource], parents: tuple[str, ...]) -> Iterable[Instance]:
    for res in resources:
        if res.kind is ResourceKind.PRIMITIVE:
            yield _instance(res, parents)
        else:
            # Replica ids are bare numbers ("0"); name them after their bundle for humans.
            rid = f"{parents[-1]}-{res.id}" if res.kind is ResourceKind.REPLICA and parents else res.id
            yield from _flatten(res.children, (*parents, rid))


def _instance(res: Resource, parents: tuple[str, ...]) -> Instance:
    return Instance(
        id=res.id,
        agent=res.agent,
        role=res.role or Role.UNKNOWN,
        nodes=res.nodes,
        active=res.active,
        failed=res.failed,
        managed=res.managed,
        blocked=res.blocked,
        orphaned=res.orphaned,
        disabled=res.disabled,
        target_role=res.target_role,
        parents=parents,
    )


# ---------------------------------------------------------------- history, failures, others


def _node_attributes(el: Element | None) -> Iterable[NodeAttribute]:
    for node in _children(el, "node"):
        name = _required(node, "name")
        for attr in _children(node, "attribute"):
            yield NodeAttribute(node=name, name=_required(attr, "name"), value=attr.get("value", ""))


def _history(el: Element | None) -> Iterable[ResourceHistory]:
    for node in _children(el, "node"):
        name = _required(node, "name")
        for rh in _children(node, "resource_history"):
            yield ResourceHistory(
                node=name,
                resource=_required(rh, "id"),
                orphan=_bool(rh, "orphan"),
                migration_threshold=_int(rh, "migration-threshold"),
                fail_count=_int(rh, "fail-count") or 0,
                last_failure=_time(rh.get("last-failure")),
                operations=tuple(_operation(op) for op in _children(rh, "operation_history")),
            )


def _operation(el: Element) -> Operation:
    return Operation(
        task=el.get("task", ""),
        rc=_int(el, "rc"),
        rc_text=el.get("rc_text"),
        call=_int(el, "call"),
        interval_ms=_int(el, "interval"),
        last_rc_change=_time(el.get("last-rc-change")),
        exec_ms=_int(el, "exec-time"),
        queue_ms=_int(el, "queue-time"),
    )


# Lazy resource part + the known task names: ids may contain underscores and digits.
_OP_KEY = re.compile(
    r"^(?P<rsc>.+?)_(?P<task>migrate_to|migrate_from|start|stop|monitor|promote|demote"
    r"|notify|reload|reload-agent|meta-data|validate-all|probe|cancel|[a-z-]+)_(?P<interval>\d+)$"
)


def resource_of_op_key(op_key: str) -> str:
    """`virtual_ip_1_monitor_10000` -> `virtual_ip_1`."""
    match = _OP_KEY.match(op_key)
    return match["rsc"] if match else op_key


def _failure(el: Element) -> FailedAction:
    op_key = el.get("op_key") or el.get("id") or ""
    return FailedAction(
        op_key=op_key,
        node=el.get("node", ""),
        task=el.get("task"),
        resource=resource_of_op_key(op_key),
        exitstatus=el.get("exitstatus"),
        exitreason=el.get("exitreason") or None,
        exitcode=_int(el, "exitcode"),
        call=_int(el, "call"),
        status=el.get("status"),
        interval_ms=_int(el, "interval"),
        last_rc_change=_time(el.get("last-rc-change")),
    )


def _fence(el: Element) -> FenceEvent:
    return FenceEvent(
        action=el.get("action", ""),
        target=el.get("target", ""),
        # Older crm_mon said state=, newer status=; both mean success/failed/pending.
        status=el.get("status") or el.get("state") or "unknown",
        client=el.get("client"),
        origin=el.get("origin"),
        delegate=el.get("delegate"),
        completed=_time(el.get("completed")),
        exit_reason=el.get("exit-reason") or None,
    )


def _ticket(el: Element) -> Ticket:
    return Ticket(
        id=_required(el, "id"),
        status=el.get("status", "unknown"),
        standby=_bool(el, "standby"),
        last_granted=_time(el.get("last-granted")),
    )


def _ban(el: Element) -> Ban:
    return Ban(
        id=_required(el, "id"),
        resource=el.get("resource", ""),
        node=el.get("node", ""),
        weight=_int(el, "weight"),
        promoted_only=bool(_opt_bool(el, "promoted-only", "master_only")),
    )
