"""Typed, immutable model of what one node's crm_mon says about its cluster.

Everything here is a frozen value: tuples, not lists; enums for the closed vocabularies.
Attributes that a Pacemaker version may omit are Optional, never guessed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Role(StrEnum):
    STARTED = "Started"
    STOPPED = "Stopped"
    PROMOTED = "Promoted"
    UNPROMOTED = "Unpromoted"
    STARTING = "Starting"
    STOPPING = "Stopping"
    MIGRATING = "Migrating"
    UNKNOWN = "Unknown"


class NodeType(StrEnum):
    MEMBER = "member"
    REMOTE = "remote"
    GUEST = "guest"
    PING = "ping"
    UNKNOWN = "unknown"


class ResourceKind(StrEnum):
    PRIMITIVE = "primitive"
    GROUP = "group"
    CLONE = "clone"
    BUNDLE = "bundle"
    REPLICA = "replica"


@dataclass(frozen=True, slots=True)
class LastChange:
    time: datetime | None
    user: str | None
    client: str | None
    origin: str | None


@dataclass(frozen=True, slots=True)
class ClusterOptions:
    maintenance_mode: bool = False
    stop_all_resources: bool = False
    # Pacemaker 3 renamed stonith-enabled to fencing-enabled; None when neither is reported.
    fencing_enabled: bool | None = None
    no_quorum_policy: str | None = None
    symmetric_cluster: bool | None = None


@dataclass(frozen=True, slots=True)
class Summary:
    stack: str | None = None
    dc_present: bool = False
    dc_name: str | None = None
    dc_id: str | None = None
    dc_version: str | None = None
    with_quorum: bool | None = None
    mixed_version: bool | None = None
    last_update: datetime | None = None
    last_change: LastChange | None = None
    nodes_configured: int | None = None
    resources_configured: int | None = None
    resources_disabled: int | None = None
    resources_blocked: int | None = None
    options: ClusterOptions = field(default_factory=ClusterOptions)


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    id: str | None = None
    type: NodeType = NodeType.MEMBER
    online: bool = False
    standby: bool = False
    standby_onfail: bool = False
    maintenance: bool = False
    pending: bool = False
    unclean: bool = False
    shutdown: bool = False
    expected_up: bool = False
    is_dc: bool = False
    health: str | None = None
    feature_set: str | None = None
    resources_running: int | None = None

    @property
    def healthy(self) -> bool:
        """Can serve resources: the runbook's notion of a healthy node."""
        return (
            self.online
            and not (self.standby or self.standby_onfail or self.maintenance)
            and not (self.pending or self.unclean or self.shutdown)
            and self.health in (None, "green")
        )


@dataclass(frozen=True, slots=True)
class Resource:
    """A node of the resource tree: a primitive, or a collective with children."""

    kind: ResourceKind
    id: str
    agent: str | None = None
    role: Role | None = None
    target_role: str | None = None
    active: bool = False
    failed: bool = False
    failure_ignored: bool = False
    managed: bool = True
    blocked: bool = False
    orphaned: bool = False
    disabled: bool = False
    maintenance: bool = False
    multi_state: bool = False
    unique: bool = False
    nodes: tuple[str, ...] = ()
    locked_to: str | None = None
    pending: str | None = None
    children: tuple[Resource, ...] = ()

    def walk(self) -> Iterator[Resource]:
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass(frozen=True, slots=True)
class Instance:
    """One primitive instance, flattened out of the tree with its ancestors' ids."""

    id: str
    agent: str | None
    role: Role
    nodes: tuple[str, ...]
    active: bool
    failed: bool
    managed: bool
    blocked: bool
    orphaned: bool
    disabled: bool
    target_role: str | None
    parents: tuple[str, ...]

    @property
    def top(self) -> str:
        """The id a user names: the outermost collective, or the primitive itself."""
        return self.parents[0] if self.parents else self.id


@dataclass(frozen=True, slots=True)
class NodeAttribute:
    node: str
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class Operation:
    task: str
    rc: int | None
    rc_text: str | None
    call: int | None = None
    interval_ms: int | None = None
    last_rc_change: datetime | None = None
    exec_ms: int | None = None
    queue_ms: int | None = None


@dataclass(frozen=True, slots=True)
class ResourceHistory:
    node: str
    resource: str
    orphan: bool = False
    migration_threshold: int | None = None
    fail_count: int = 0
    last_failure: datetime | None = None
    operations: tuple[Operation, ...] = ()


@dataclass(frozen=True, slots=True)
class FailedAction:
    op_key: str
    node: str
    task: str | None
    resource: str
    exitstatus: str | None = None
    exitreason: str | None = None
    exitcode: int | None = None
    call: int | None = None
    status: str | None = None
    interval_ms: int | None = None
    last_rc_change: datetime | None = None


@dataclass(frozen=True, slots=True)
class FenceEvent:
    action: str
    target: str
    status: str
    client: str | None = None
    origin: str | None = None
    delegate: str | None = None
    completed: datetime | None = None
    exit_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Ticket:
    id: str
    status: str
    standby: bool = False
    last_granted: datetime | None = None


@dataclass(frozen=True, slots=True)
class Ban:
    id: str
    resource: str
    node: str
    weight: int | None = None
    promoted_only: bool = False


@dataclass(frozen=True, slots=True)
class Status:
    code: int = 0
    message: str = "OK"
    errors: tuple[str, ...] = ()


# A controller at rest: the DC waiting for something to happen, or a member that is not the DC.
# Anything else (S_POLICY_ENGINE, S_TRANSITION_ENGINE, S_INTEGRATION, S_FINALIZE_JOIN,
# S_ELECTION, S_PENDING, S_STARTING, ...) is Pacemaker acting: computing or running a
# transition, integrating a joining node, electing a DC.
CONTROLLER_AT_REST = frozenset({"S_IDLE", "S_NOT_DC"})


@dataclass(frozen=True, slots=True)
class ControllerStatus:
    """`crmadmin --status=NODE`: the state of one node's controller (its finite state machine)."""

    node: str
    state: str  # kept as Pacemaker says it: a newer Pacemaker may add states

    @property
    def at_rest(self) -> bool:
        return self.state in CONTROLLER_AT_REST


@dataclass(frozen=True, slots=True)
class NodeView:
    """One node's crm_mon answer. `connected` is False when crm_mon could not reach Pacemaker."""

    format: str  # "2" for <pacemaker-result>, "legacy" for <crm_mon version=...>
    connected: bool
    api_version: str | None = None
    pacemakerd_state: str | None = None
    summary: Summary = field(default_factory=Summary)
    nodes: tuple[Node, ...] = ()
    resources: tuple[Resource, ...] = ()
    instances: tuple[Instance, ...] = ()
    node_attributes: tuple[NodeAttribute, ...] = ()
    history: tuple[ResourceHistory, ...] = ()
    failures: tuple[FailedAction, ...] = ()
    fence_history: tuple[FenceEvent, ...] = ()
    tickets: tuple[Ticket, ...] = ()
    bans: tuple[Ban, ...] = ()
    status: Status = field(default_factory=Status)

    @property
    def quorate(self) -> bool | None:
        return self.summary.with_quorum if self.connected else None

    @property
    def dc(self) -> str | None:
        return self.summary.dc_name if self.summary.dc_present else None

    def node(self, name: str) -> Node | None:
        return next((n for n in self.nodes if n.name == name), None)

    def resource(self, rid: str) -> Resource | None:
        """Find a resource by id anywhere in the tree (the first match for clone instances)."""
        for top in self.resources:
            for res in top.walk():
                if res.id == rid:
                    return res
        return None

    def instances_of(self, rid: str) -> tuple[Instance, ...]:
        """Primitive instances of `rid`, whether it names a primitive or a collective."""
        return tuple(i for i in self.instances if i.id == rid or rid in i.parents)

    def running_on(self, rid: str) -> tuple[str, ...]:
        """Nodes where any instance of `rid` is active, sorted, without repeats."""
        nodes = {n for i in self.instances_of(rid) if i.active for n in i.nodes}
        return tuple(sorted(nodes))
