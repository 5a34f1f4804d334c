"""Pure simulator of a prod-haproxy-shaped Pacemaker 2.1.5 cluster (no I/O, injected clock).

Answers the commands clusterbot sends over SSH with output shaped like the real lab captures.
"""

from __future__ import annotations

import copy
import shlex
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bot.demo.simcib import CibShape, cib_xml, read_cib, summary_line

__all__ = ["Completed", "FailedAction", "Simulator", "Snapshot"]

PACEMAKER_VERSION = "2.1.5"
DC_VERSION = "2.1.5-a3f44794f94"
FEATURE_SET = "3.16.1"
API_VERSION = "2.25"
VIP_AGENT = "ocf:heartbeat:IPaddr2"
CLONE_AGENT = "ocf:pacemaker:Dummy"
MONITOR_MS = 10000
INFINITY = 1000000  # Pacemaker's score/fail-count "INFINITY"

# What crm_mon says when pacemakerd is not reachable (captured from the lab).
NOT_CONNECTED_ERRORS = (
    "error: Could not connect to launcher: Connection refused",
    "crm_mon: Connection to cluster failed: Connection refused",
)
_RC_TEXT = {0: "ok", 1: "error", 6: "not configured", 7: "not running"}
_EXIT_REASON = {VIP_AGENT: "[findif] failed"}
_UNITS = ("corosync", "pacemaker", "pcsd")
PVE_CLUSTER = "pve-cluster"  # Proxmox VE's cluster filesystem (pmxcfs); only on a proxmox simulator
_BIN_DIRS = ("/usr/sbin/", "/usr/bin/", "/sbin/", "/bin/")
_WAIT_REPLY = "Waiting for 1 reply from the controller\n... got reply (done)\n"
_NO_CIB = "Error: unable to get cib\n"
PCS_VERSION = "0.11.5"  # the lab's and Debian 12's
# pcs >= 0.11 `resource move` (constraint removed after the move), for a resource that would then
# go back: verbatim from the lab (tests/fixtures/cib/lab-2.1.5/README.md).
_WONT_STAY = ("Error: Unable to ensure that moved resource '{}' will stay on the same node after a "
              "constraint used for moving it is removed.\n")
_CIB_DOWN = ("Signon to CIB failed: Transport endpoint is not connected\n"
             "Init failed, could not perform requested operations\n")


@dataclass(frozen=True)
class Completed:
    """What a command returned: the SSH layer relays these three verbatim."""

    exit_status: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class FailedAction:
    """One entry of crm_mon's <failures>, with the fail-count of its (resource, node)."""

    resource: str
    node: str
    task: str
    exitcode: int
    call: int
    when: datetime
    fail_count: int


@dataclass(frozen=True)
class Snapshot:
    """The cluster as the quorate (else largest) partition sees it; for tests and the demo."""

    vips: Mapping[str, str | None]
    clone_nodes: tuple[str, ...]
    online: tuple[str, ...]
    partitions: tuple[tuple[str, ...], ...]
    quorate: bool
    dc: str | None
    maintenance_mode: bool
    failures: tuple[FailedAction, ...]


@dataclass(frozen=True)
class _Op:
    call: int
    task: str
    rc: int
    interval_ms: int
    when: datetime
    exec_ms: int


@dataclass
class _RscHistory:
    """The lrm_resource of one (node, primitive): the slots Pacemaker keeps per resource."""

    probe: _Op | None = None
    last: _Op | None = None
    monitor: _Op | None = None
    failure: _Op | None = None
    fail_count: int = 0
    last_failure: datetime | None = None

    def ops(self) -> list[_Op]:
        ops = [o for o in (self.probe, self.last, self.monitor, self.failure) if o is not None]
        if self.probe is not None and self.last is None:
            ops.append(self.probe)  # real crm_mon lists a probe twice while it is last_0 (e2, f2)
        return sorted(ops, key=lambda op: op.call)


@dataclass(frozen=True)
class _LastChange:
    when: datetime
    user: str
    client: str
    origin: str


@dataclass
class _NodeState:
    powered: bool = True
    units: dict[str, str] = field(default_factory=lambda: dict.fromkeys(_UNITS, "active"))
    standby: bool = False
    maintenance: bool = False
    desynced: bool = False
    expected_up: bool = True
    calls: int = 18


@dataclass(frozen=True)
class _El:
    tag: str
    attrs: tuple[tuple[str, str], ...] = ()
    children: tuple[_El, ...] = ()
    text: str | None = None


# ---------------------------------------------------------------- formatting helpers


def _ctime(when: datetime) -> str:
    """Pacemaker's epoch2str (ctime without the newline): the day is space-padded."""
    return f"{when:%a %b} {when.day:2d} {when:%H:%M:%S %Y}"


def _iso(when: datetime) -> str:
    return f"{when:%Y-%m-%d %H:%M:%S}Z"


def _attr(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _escape(text: str, quote: bool) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if quote:
        text = text.replace('"', "&quot;").replace("\n", "&#10;").replace("\t", "&#9;")
    return text


def _e(tag: str, attrs: Sequence[tuple[str, str | int | bool]] = (), *children: _El) -> _El:
    return _El(tag, tuple((k, _attr(v)) for k, v in attrs), children)


def _lines(el: _El, depth: int = 0) -> Iterator[str]:
    pad = "  " * depth
    head = pad + "<" + el.tag + "".join(f' {k}="{_escape(v, True)}"' for k, v in el.attrs)
    if el.text is not None:
        yield f"{head}>{_escape(el.text, False)}</{el.tag}>"
    elif not el.children:
        yield head + "/>"
    else:
        yield head + ">"
        for child in el.children:
            yield from _lines(child, depth + 1)
        yield f"{pad}</{el.tag}>"


def _serialize(el: _El) -> str:
    return "\n".join(_lines(el)) + "\n"


def _exec_ms(agent: str, task: str) -> int:
    """Plausible, deterministic run times (IPaddr2 is slower than Dummy, as in the lab)."""
    base = {"start": 45, "stop": 60, "monitor": 28, "probe": 55}[task]
    return base if agent == VIP_AGENT else base // 3


def _ok(stdout: str = "") -> Completed:
    return Completed(0, stdout, "")


def _err(stderr: str, status: int = 1) -> Completed:
    return Completed(status, "", stderr)


def _unsupported(argv: Sequence[str]) -> Completed:
    # A real tool with arguments we do not model: say so plainly instead of faking output.
    return _err(f"{argv[0]}: not simulated by the clusterbot demo: {shlex.join(argv)}\n", 64)


def _strip_sudo(argv: Sequence[str]) -> list[str]:
    args = list(argv)
    if args[:1] == ["sudo"]:
        args = args[1:]
        while args[:1] and args[0] in ("-n", "--non-interactive", "--"):
            args = args[1:]
    return args


def _program(word: str) -> str:
    for prefix in _BIN_DIRS:
        if word.startswith(prefix) and "/" not in word[len(prefix) :]:
            return word[len(prefix) :]
    return word


def _parse_opts(
    args: Sequence[str], flags: Mapping[str, str], valued: Mapping[str, str]
) -> dict[str, str] | None:
    """Tiny getopt: flags map to "1", valued options take `--x V`, `--x=V` or `-x V`."""
    out: dict[str, str] = {}
    i = 0
    while i < len(args):
        name, eq, inline = args[i].partition("=")
        if not eq and args[i] in flags:
            out[flags[args[i]]] = "1"
        elif name in valued and eq:
            out[valued[name]] = inline
        elif args[i] in valued and i + 1 < len(args):
            out[valued[args[i]]] = args[i + 1]
            i += 1
        else:
            return None
        i += 1
    return out


# ---------------------------------------------------------------- the simulator


class Simulator:
    """Cluster state plus `handle(node, argv)`, the command interface the SSH layer calls."""

    def __init__(
        self,
        nodes: Sequence[str] = ("node1", "node2", "node3"),
        vips: Sequence[str] = ("virtual_ip_1", "virtual_ip_2", "virtual_ip_3"),
        clone: tuple[str, str] = ("loadbalancer-clone", "loadbalancer"),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        cluster_name: str = "prod-haproxy",
        proxmox: bool = False,
        pcs_version: str = PCS_VERSION,
    ) -> None:
        """`proxmox`: the shape of a Proxmox VE cluster: Corosync and pve-cluster run on every
        node, Pacemaker and pcsd nowhere."""
        if len(vips) > len(nodes) or len(set(nodes)) != len(nodes):
            raise ValueError("need distinct nodes and at most one VIP per node")
        self.nodes = tuple(nodes)
        self.vips = tuple(vips)
        self.clone_id, self.clone_primitive = clone
        self.cluster_name = cluster_name
        self.pcs_version = pcs_version
        self._pcs_0_11 = tuple(int(p) for p in pcs_version.split(".")[:2]) >= (0, 11)
        self._epoch = 5
        self._clock = clock
        self._state = {n: _NodeState() for n in self.nodes}
        self._history: dict[str, dict[str, _RscHistory]] = {n: {} for n in self.nodes}
        self._vip_at: dict[str, str | None] = dict.fromkeys(self.vips)
        self._clone_on: set[str] = set()
        self._moves: dict[str, str] = {}
        self._broken: set[str] = set()
        self._maintenance_mode = False
        self._dcs: dict[frozenset[str], str] = {}
        self._ring = 0x12
        self._parts = self._partitions()
        self._last_change = _LastChange(self._now(), "root", "cibadmin", self.nodes[0])
        if proxmox:
            for st in self._state.values():
                st.units.update({"pacemaker": "inactive", "pcsd": "inactive", PVE_CLUSTER: "active"})
                st.expected_up = False
        self._settle()

    # ------------------------------------------------------------ public introspection

    def reachable(self, node: str) -> bool:
        """False once the node is powered off: the SSH layer must refuse connections."""
        return self._node(node).powered

    def snapshot(self) -> Snapshot:
        primary = self._primary()
        members = self._pcmk(primary) if primary else ()
        return Snapshot(
            vips={v: n if n in members else None for v, n in self._vip_at.items()},
            clone_nodes=tuple(n for n in members if n in self._clone_on),
            online=members,
            partitions=tuple(tuple(n for n in self.nodes if n in p) for p in self._parts),
            # Corosync's quorum: a quorate partition exists even where no Pacemaker runs.
            quorate=any(self._quorate(p) for p in self._parts),
            dc=self._dcs.get(primary) if primary else None,
            maintenance_mode=self._maintenance_mode,
            failures=self._failures(members),
        )

    # ------------------------------------------------------------ mutators (demo / tests)

    def crash(self, node: str) -> None:
        """corosync and pacemaker SIGKILLed (lab's c_node3_crashed): ssh still answers."""
        st = self._node(node)
        st.units.update(corosync="failed", pacemaker="failed")
        self._forget(node)
        self._settle()

    def power_off(self, node: str) -> None:
        st = self._node(node)
        st.powered = False
        st.units = dict.fromkeys(_UNITS, "inactive")
        self._forget(node)
        self._settle()

    def heal(self, node: str) -> None:
        """Power on and start the whole stack (and pcsd), as a boot with enabled units would."""
        st = self._node(node)
        st.powered = True
        st.desynced = False
        st.units["pcsd"] = "active"
        self._start_unit(node, "pacemaker")

    def fail(self, resource: str, node: str | None = None) -> None:
        """A monitor failure (exit 7 'not running') on a running instance, recovered in place."""
        prim = self._primitive(resource)
        where = self._running_instance(prim, node)
        if not self._managed_on(where):
            raise ValueError(f"{resource} is unmanaged on {where}: no monitor runs there")
        entry = self._entry(where, prim)
        call = entry.monitor.call if entry.monitor else self._next_call(where)
        entry.failure = _Op(call, "monitor", 7, MONITOR_MS, self._now(), 0)
        entry.monitor = None
        entry.fail_count += 1
        entry.last_failure = self._now()
        self._stop(where, prim)
        self._settle()

    def break_resource(self, resource: str) -> None:
        """From now on the agent's start fails 'not configured'; running instances restart."""
        prim = self._primitive(resource)
        self._broken.add(prim)
        for node in self._running_nodes(prim):
            if self._managed_on(node):
                self._stop(node, prim)
        self._settle()

    def repair(self, resource: str) -> None:
        """Fix the agent's config; the resource starts again only after a cleanup."""
        self._broken.discard(self._primitive(resource))

    def desync(self, node: str) -> None:
        """The runbook's "node out of sync": its corosync sees only itself."""
        st = self._node(node)
        if st.units["corosync"] != "active":
            raise ValueError(f"corosync is not running on {node}")
        st.desynced = True
        self._settle()

    def stop(self, node: str, unit: str) -> None:
        """`systemctl stop UNIT` on the node (stopping corosync stops pacemaker first)."""
        if unit not in self._node(node).units:
            raise ValueError(f"{node} has no unit {unit}")
        self._stop_unit(node, unit)

    def set_cluster_maintenance(self, on: bool, origin: str | None = None) -> None:
        self._maintenance_mode = on
        self._touch("root", "cibadmin", origin or self._any_dc())
        self._settle()

    # ------------------------------------------------------------ command interface

    def handle(self, node: str, argv: Sequence[str], stdin: str = "") -> Completed:
        """Run argv as if typed on `node`. Nothing is ever executed or shell-interpreted."""
        if not self._node(node).powered:
            return _err(f"ssh: connect to host {node} port 22: No route to host\n", 255)
        args = _strip_sudo(argv)
        if not args:
            return _ok()
        if _program(args[0]) == "crm_simulate":  # the only program here that reads its stdin
            return self._cmd_crm_simulate(node, args[1:], stdin)
        handler = self._programs().get(_program(args[0]))
        if handler is None:
            return _err(f"bash: {args[0]}: command not found\n", 127)
        return handler(node, [_program(args[0]), *args[1:]])

    def handle_line(self, node: str, command: str, stdin: str = "") -> Completed:
        """For an SSH exec request: split like a shell would, but never interpret operators."""
        try:
            argv = shlex.split(command)
        except ValueError:
            return _err("bash: -c: line 1: unexpected EOF while looking for matching quote\n", 2)
        return self.handle(node, argv, stdin)

    def _programs(self) -> dict[str, Callable[[str, list[str]], Completed]]:
        return {
            "crm_mon": self._cmd_crm_mon,
            "crm_resource": self._cmd_crm_resource,
            "corosync-quorumtool": self._cmd_quorumtool,
            "corosync-cfgtool": self._cmd_cfgtool,
            "systemctl": self._cmd_systemctl,
            "pcs": self._cmd_pcs,
            "cibadmin": self._cmd_cibadmin,
            "crmadmin": self._cmd_crmadmin,
        }

    # ------------------------------------------------------------ crmadmin

    def _cmd_crmadmin(self, node: str, argv: list[str]) -> Completed:
        """`crmadmin --status=NODE --output-as=xml`: the controller's state. This cluster acts in
        no time (every change is whole at once), so a DC is always at rest: S_IDLE, the others
        S_NOT_DC. Answers as captured from the lab (tests/fixtures/crmadmin-2.1.5)."""
        opts = _parse_opts(argv[1:], {}, {"--status": "status", "-S": "status", "--output-as": "as",
                                          "--timeout": "timeout", "-t": "timeout"})
        if opts is None or "status" not in opts or opts.get("as") != "xml":
            return _unsupported(argv)
        request = " ".join(argv)
        if self._node(node).units["pacemaker"] != "active":
            return _crmadmin_failed(request, 102, "Not connected",
                                    "Could not connect to controller: Connection refused")
        target, part = opts["status"], self._partition_of(node)
        if part is None or target not in self._pcmk(part):
            return _crmadmin_failed(request, 124, "Timeout occurred",
                                    "No reply received from controller before timeout (1000ms)")
        state = "S_IDLE" if self._dcs.get(part) == target else "S_NOT_DC"
        crmd = _e("crmd", [("node_name", target), ("state", state), ("result", "ok")])
        return _ok(_serialize(_e("pacemaker-result", [("api-version", API_VERSION), ("request", request)],
                                 crmd, _e("status", [("code", 0), ("message", "OK")]))))

    # ------------------------------------------------------------ the CIB and crm_simulate

    def _cmd_cibadmin(self, node: str, argv: list[str]) -> Completed:
        if argv[1:] not in (["--query"], ["-Q"]):
            return _unsupported(argv)
        if not self._alive(node):
            return _err(_CIB_DOWN, 102)
        return _ok(cib_xml(self._cib_shape()))

    def _cib_shape(self) -> CibShape:
        return CibShape(self.nodes, self.vips, (self.clone_id, self.clone_primitive),
                        {n: st.standby for n, st in self._state.items()}, dict(self._moves),
                        self._epoch, self._any_dc())

    def _cmd_crm_simulate(self, node: str, args: list[str], stdin: str) -> Completed:
        """`crm_simulate --xml-pipe --simulate`: this cluster as the given CIB would place it."""
        if sorted(args) != ["--simulate", "--xml-pipe"]:
            return _unsupported(["crm_simulate", *args])
        wanted = read_cib(stdin)
        if wanted is None:
            return _err("crm_simulate: Could not parse the CIB from standard input\n", 65)
        moves, standby = wanted
        after = copy.deepcopy(self)
        after._moves = {r: n for r, n in moves.items() if r in self.vips and n in self.nodes}
        for name, on in standby.items():
            if name in self.nodes:
                after._state[name].standby = on
        after._settle()
        return _ok("Current cluster status:\n\nTransition Summary:\n"
                   + "".join(f"{line}\n" for line in self._transition_to(after))
                   + "\nExecuting Cluster Transition:\n\nRevised Cluster Status:\n")

    def _transition_to(self, after: Simulator) -> Iterator[str]:
        for vip in self.vips:
            was, will = self._vip_at[vip], after._vip_at[vip]
            if was and will and was != will:
                yield summary_line("Move", vip, f"{was} -> {will}")
            elif will and not was:
                yield summary_line("Start", vip, will)
            elif was and not will:
                yield summary_line("Stop", vip, was, "due to node availability")
        for n in self.nodes:
            name = self._instance_name(self.clone_primitive, n)
            if n in after._clone_on and n not in self._clone_on:
                yield summary_line("Start", name, n)
            elif n in self._clone_on and n not in after._clone_on:
                yield summary_line("Stop", name, n, "due to node availability")

    # ------------------------------------------------------------ crm_mon

    def _cmd_crm_mon(self, node: str, argv: list[str]) -> Completed:
        # -X/--as-xml still exists in 2.1.5 (deprecated, hidden): it selects the *legacy* XML
        # writer, i.e. the same sections under <crm_mon version="2.1.5"> and no <status>, so
        # we answer that rather than a usage error. Not captured in the lab: read from 2.1's
        # tools/crm_mon.c (as_xml_cb) and lib/common/output_xml.c (legacy_xml).
        opts = _crm_mon_opts(argv[1:])
        if opts is None or "oneshot" not in opts or not ({"xml", "legacy"} & opts):
            return _unsupported(argv)
        legacy = "legacy" in opts
        if self._node(node).units["pacemaker"] != "active":
            return _not_connected(" ".join(argv), legacy)
        body = self._status_elements(node)
        if legacy:
            return _ok(_serialize(_e("crm_mon", [("version", PACEMAKER_VERSION)], *body)))
        root = _e(
            "pacemaker-result",
            [("api-version", API_VERSION), ("request", " ".join(argv))],
            *body,
            _e("status", [("code", 0), ("message", "OK")]),
        )
        return _ok(_serialize(root))

    def _status_elements(self, node: str) -> list[_El]:
        part = self._partition_of(node)
        online = self._pcmk(part) if part else ()
        now = self._now()
        els = [
            _e("pacemakerd", [("sys_from", "pacemakerd"), ("state", "running"),
                              ("last_updated", _iso(now))]),
            self._summary_el(part, now),
            _e("nodes", (), *(self._node_el(n, online, part) for n in self.nodes)),
            _e("resources", (), *self._resource_els(online)),
            _e("node_history", (), *self._history_els(online)),
        ]
        failed = self._failed_ops(online)
        if failed:
            els.append(_e("failures", (), *(self._failure_el(n, p, op) for n, p, op in failed)))
        return els

    def _summary_el(self, part: frozenset[str] | None, now: datetime) -> _El:
        dc = self._dcs[part] if part else self.nodes[0]
        lc = self._last_change
        return _e(
            "summary", (),
            _e("stack", [("type", "corosync")]),
            _e("current_dc", [("present", True), ("version", DC_VERSION), ("name", dc),
                              ("id", self._id(dc)), ("with_quorum", self._quorate(part)),
                              ("mixed_version", False)]),
            _e("last_update", [("time", _ctime(now))]),
            _e("last_change", [("time", _ctime(lc.when)), ("user", lc.user),
                               ("client", lc.client), ("origin", lc.origin)]),
            _e("nodes_configured", [("number", len(self.nodes))]),
            _e("resources_configured", [("number", len(self.vips) + len(self.nodes)),
                                        ("disabled", 0), ("blocked", 0)]),
            _e("cluster_options", [("stonith-enabled", False), ("symmetric-cluster", True),
                                   ("no-quorum-policy", "stop"),
                                   ("maintenance-mode", self._maintenance_mode),
                                   ("stop-all-resources", False), ("stonith-timeout-ms", 60000),
                                   ("priority-fencing-delay-ms", 0)]),
        )

    def _node_el(self, node: str, online: tuple[str, ...], part: frozenset[str] | None) -> _El:
        st = self._state[node]
        up = node in online
        attrs: list[tuple[str, str | int | bool]] = [
            ("name", node), ("id", self._id(node)), ("online", up), ("standby", st.standby),
            ("standby_onfail", False), ("maintenance", st.maintenance), ("pending", False),
            ("unclean", False), ("health", "green"),
        ]
        if up:
            attrs.append(("feature_set", FEATURE_SET))  # absent for offline nodes, as in c/d
        attrs += [
            ("shutdown", False), ("expected_up", st.expected_up),
            ("is_dc", part is not None and self._dcs.get(part) == node),
            ("resources_running", self._count_running(node) if up else 0), ("type", "member"),
        ]
        return _e("node", attrs)

    def _resource_els(self, online: tuple[str, ...]) -> Iterator[_El]:
        for vip in self.vips:
            where = self._vip_at[vip]
            yield self._primitive_el(vip, VIP_AGENT, where if where in online else None)
        running = [n for n in online if n in self._clone_on]
        instances = [*running, *[None] * (len(self.nodes) - len(running))]
        yield _e(
            "clone",
            [("id", self.clone_id), ("multi_state", False), ("unique", False),
             ("managed", not self._maintenance_mode), ("disabled", False), ("failed", False),
             ("failure_ignored", False)],
            *(self._primitive_el(self.clone_primitive, CLONE_AGENT, n) for n in instances),
        )

    def _primitive_el(self, rsc: str, agent: str, node: str | None) -> _El:
        managed = self._managed_on(node) if node else not self._maintenance_mode
        attrs = [
            ("id", rsc), ("resource_agent", agent), ("role", "Started" if node else "Stopped"),
            ("active", node is not None), ("orphaned", False), ("blocked", False),
            ("managed", managed), ("failed", False), ("failure_ignored", False),
            ("nodes_running_on", 1 if node else 0),
        ]
        if node is None:
            return _e("resource", attrs)
        return _e("resource", attrs, _e("node", [("name", node), ("id", self._id(node)),
                                                 ("cached", True)]))

    def _history_els(self, online: tuple[str, ...]) -> Iterator[_El]:
        for node in online:
            entries = [self._rsc_history_el(r, h) for r, h in self._history[node].items()]
            entries = [el for el in entries if el.children]
            if entries:
                yield _e("node", [("name", node)], *entries)

    def _rsc_history_el(self, rsc: str, hist: _RscHistory) -> _El:
        attrs: list[tuple[str, str | int | bool]] = [
            ("id", rsc), ("orphan", False), ("migration-threshold", INFINITY)]
        if hist.fail_count:
            attrs.append(("fail-count", hist.fail_count))
        if hist.last_failure is not None:
            attrs.append(("last-failure", _ctime(hist.last_failure)))
        return _e("resource_history", attrs, *(_op_el(op) for op in hist.ops()))

    def _failure_el(self, node: str, prim: str, op: _Op) -> _El:
        agent = CLONE_AGENT if prim == self.clone_primitive else VIP_AGENT
        reason = _EXIT_REASON.get(agent, "") if op.rc == 6 else ""
        return _e("failure", [
            ("op_key", f"{prim}_{op.task}_{op.interval_ms}"), ("node", node),
            ("exitstatus", _RC_TEXT[op.rc]), ("exitreason", reason), ("exitcode", op.rc),
            ("call", op.call), ("status", "complete"), ("last-rc-change", _iso(op.when)),
            ("queued", 0), ("exec", op.exec_ms), ("interval", op.interval_ms), ("task", op.task),
        ])

    # ------------------------------------------------------------ corosync-quorumtool

    def _cmd_quorumtool(self, node: str, argv: list[str]) -> Completed:
        if argv[1:] != ["-s"]:
            return _unsupported(argv)
        part = self._partition_of(node)
        if part is None:
            return _err("Cannot initialize CMAP service\n")
        quorate = self._quorate(part)
        return Completed(0 if quorate else 2, self._quorum_text(node, part, quorate), "")

    def _quorum_text(self, node: str, part: frozenset[str], quorate: bool) -> str:
        members = [n for n in self.nodes if n in part]
        ring = f"{self._id(members[0])}.{self._ring:x}"
        need = len(self.nodes) // 2 + 1
        lines = [
            "Quorum information", "------------------", f"Date:             {_ctime(self._now())}",
            "Quorum provider:  corosync_votequorum", f"Nodes:            {len(members)}",
            f"Node ID:          {self._id(node)}", f"Ring ID:          {ring}",
            f"Quorate:          {'Yes' if quorate else 'No'}", "",
            "Votequorum information", "----------------------",
            f"Expected votes:   {len(self.nodes)}", f"Highest expected: {len(self.nodes)}",
            f"Total votes:      {len(members)}",
            f"Quorum:           {need} {' ' if quorate else 'Activity blocked'}",
            "Flags:            Quorate " if quorate else "Flags:            ", "",
            "Membership information", "----------------------", "    Nodeid      Votes Name",
        ]
        for m in members:
            local = " (local)" if m == node else ""
            lines.append(f"{self._id(m):>10} {1:>10} {m}{local}")
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------ corosync-cfgtool

    def _cmd_cfgtool(self, node: str, argv: list[str]) -> Completed:
        if argv[1:] != ["-s"]:
            return _unsupported(argv)
        if self._partition_of(node) is None:
            return _err("Could not initialize corosync configuration API error 2\n")
        return _ok(self._cfgtool_text(node))

    def _cfgtool_text(self, node: str) -> str:
        """Corosync 3.1.7 knet, one udp link (lab-corosync-3 captures, tabs and padding included)."""
        lines = [f"Local node ID {self._id(node)}, transport knet", "LINK ID 0 udp",
                 f"\taddr\t= {self._address(node)}", "\tstatus:"]
        for peer in self.nodes:
            # knet keeps a link up while both corosyncs run and see each other: a crashed or
            # cut-off (desynced) peer is disconnected.
            state = "localhost" if peer == node else (
                "connected" if self._partition_of(peer) == self._partition_of(node) else "disconnected")
            lines.append(f"\t\tnodeid: {self._id(peer):>10}:\t{state}")
        return "\n".join(lines) + "\n"

    def _address(self, node: str) -> str:
        return f"10.224.77.{10 + self._id(node)}"  # the lab's ring0 addresses

    # ------------------------------------------------------------ systemctl

    def _cmd_systemctl(self, node: str, argv: list[str]) -> Completed:
        verb, units = (argv[1], argv[2:]) if len(argv) > 2 else ("", [])
        names = [u.removesuffix(".service") for u in units if u not in ("-q", "--quiet")]
        if verb == "is-active":
            return self._is_active(node, names, quiet=len(names) != len(units))
        if verb == "is-enabled" and len(names) == len(units) == 1:
            return self._is_enabled(node, names[0])
        if verb not in ("start", "stop", "restart") or len(names) != len(units):
            return _unsupported(argv)
        unknown = [u for u in names if u not in self._state[node].units]
        if unknown:
            why = "not loaded" if verb == "stop" else "not found"
            unit = f"{unknown[0]}.service"
            return _err(f"Failed to {verb} {unit}: Unit {unit} {why}.\n", 5)
        for unit in names:
            {"start": self._start_unit, "stop": self._stop_unit,
             "restart": self._restart_unit}[verb](node, unit)
        return _ok()

    def _is_active(self, node: str, units: list[str], quiet: bool) -> Completed:
        # A SIGKILLed unit is "failed", a cleanly stopped one "inactive" (systemd's wording).
        states = [self._state[node].units.get(u, "inactive") for u in units]
        status = 0 if all(s == "active" for s in states) else 3
        return Completed(status, "" if quiet else "".join(s + "\n" for s in states), "")

    def _is_enabled(self, node: str, unit: str) -> Completed:
        # systemd's answers: the state for an installed unit, an error for an unknown one.
        if unit not in self._state[node].units:
            return _err(f"Failed to get unit file state for {unit}.service: No such file or directory\n")
        return _ok("enabled\n")

    def _start_unit(self, node: str, unit: str) -> None:
        st = self._state[node]
        if unit in ("pcsd", PVE_CLUSTER):
            st.units[unit] = "active"
            return
        st.units["corosync"] = "active"  # pacemaker.service Requires= corosync.service
        if unit == "pacemaker" and st.units["pacemaker"] != "active":
            st.units["pacemaker"] = "active"
            st.expected_up = True
            st.calls = 13  # a fresh executor: call ids restart (g1_node2_back shows 14)
        self._settle()

    def _stop_unit(self, node: str, unit: str) -> None:
        st = self._state[node]
        if unit in ("pcsd", PVE_CLUSTER):
            st.units[unit] = "inactive"
            return
        if st.units["pacemaker"] != "inactive":
            st.units["pacemaker"] = "inactive"  # stopping corosync stops pacemaker first
            st.expected_up = False
            self._forget(node)
        if unit == "corosync":
            st.units["corosync"] = "inactive"
            st.desynced = False
        self._settle()

    def _restart_unit(self, node: str, unit: str) -> None:
        # systemd propagates a corosync restart to pacemaker only if pacemaker was running.
        was_running = self._state[node].units["pacemaker"] == "active"
        self._stop_unit(node, unit)
        self._start_unit(node, unit)
        if unit == "corosync" and was_running:
            self._start_unit(node, "pacemaker")

    # ------------------------------------------------------------ crm_resource

    def _cmd_crm_resource(self, node: str, argv: list[str]) -> Completed:
        opts = _parse_opts(argv[1:], {"--cleanup": "cleanup", "-C": "cleanup"},
                           {"--resource": "rsc", "-r": "rsc", "--node": "node", "-N": "node"})
        if opts is None or "cleanup" not in opts:
            return _unsupported(argv)
        if self._state[node].units["pacemaker"] != "active":
            return _err("Could not connect to the CIB: Transport endpoint is not connected\n"
                        "Error performing operation: Transport endpoint is not connected\n", 102)
        problem = self._check_names(opts.get("rsc"), opts.get("node"))
        if problem is not None:
            return _err(f"crm_resource: {problem}\n", 105)
        return _ok(self._cleanup(node, opts.get("rsc"), opts.get("node")))

    def _check_names(self, rsc: str | None, target: str | None) -> str | None:
        if rsc is not None and not self._known_resource(rsc):
            return f"Resource '{rsc}' not found"
        if target is not None and target not in self.nodes:
            return f"Node '{target}' not found"
        return None

    def _cleanup(self, node: str, rsc: str | None, target: str | None) -> str:
        part = self._partition_of(node)
        nodes = [target] if target else list(self._pcmk(part) if part else ())
        prims = [self._primitive(rsc)] if rsc else self._failed_primitives(nodes)
        for prim in prims:
            for n in nodes:
                self._reprobe(n, prim)
        self._touch("hacluster", "crmd", self._dcs.get(part, node) if part else node)
        self._settle()
        if rsc is None:
            where = f"on {target}" if target else "on all nodes"
            return f"Cleaned up all resources {where}\n" + _WAIT_REPLY
        lines = [f"Cleaned up {self._instance_name(prim, n)} on {n}\n"
                 for prim in prims for n in nodes]
        return "".join(lines) + _WAIT_REPLY

    def _reprobe(self, node: str, prim: str) -> None:
        """Cleanup deletes the resource's history; the re-probe finds it where it runs."""
        self._history[node].pop(prim, None)
        if node in self._running_nodes(prim):
            self._entry(node, prim).probe = self._op(node, prim, "probe")

    def _failed_primitives(self, nodes: Sequence[str]) -> list[str]:
        prims = [*self.vips, self.clone_primitive]
        return [p for p in prims if any(self._history[n].get(p, _RscHistory()).failure
                                        for n in nodes)]

    def _instance_name(self, prim: str, node: str) -> str:
        return f"{prim}:{self.nodes.index(node)}" if prim == self.clone_primitive else prim

    # ------------------------------------------------------------ pcs

    def _cmd_pcs(self, node: str, argv: list[str]) -> Completed:
        if argv[1:] == ["--version"]:
            return _ok(f"{self.pcs_version}\n")
        sub = argv[1:3]
        if sub in (["cluster", "start"], ["cluster", "stop"]) and len(argv) == 3:
            return self._pcs_cluster(node, sub[1])
        handler = self._pcs_handlers().get(" ".join(sub))
        if handler is None:
            return _unsupported(argv)
        if not self._alive(node):
            return _err(_NO_CIB)  # every one of these reads or writes the CIB first
        return handler(node, argv[3:])

    def _pcs_handlers(self) -> dict[str, Callable[[str, list[str]], Completed]]:
        def node_attr(attr: str, value: bool) -> Callable[[str, list[str]], Completed]:
            return lambda node, args: self._pcs_node_attr(node, attr, value, args)

        return {
            "resource cleanup": self._pcs_cleanup,
            "resource move": lambda node, args: self._pcs_move(node, args, keep=not self._pcs_0_11),
            "resource move-with-constraint": self._pcs_move_with_constraint,
            "resource clear": self._pcs_clear,
            "property set": lambda node, args: self._pcs_property(node, args, unset=False),
            "property unset": lambda node, args: self._pcs_property(node, args, unset=True),
            "node standby": node_attr("standby", True),
            "node unstandby": node_attr("standby", False),
            "node maintenance": node_attr("maintenance", True),
            "node unmaintenance": node_attr("maintenance", False),
        }

    def _pcs_cluster(self, node: str, verb: str) -> Completed:
        if verb == "start":
            self._start_unit(node, "pacemaker")
            return _ok("Starting Cluster...\n")
        self._stop_unit(node, "corosync")
        return _ok("Stopping Cluster (pacemaker)...\nStopping Cluster (corosync)...\n")

    def _pcs_node_attr(self, node: str, attr: str, value: bool, args: list[str]) -> Completed:
        if len(args) > 1:
            return _unsupported(["pcs", "node", attr, *args])
        target = args[0] if args else node
        if target not in self.nodes:
            return _err(f"Error: Node '{target}' does not appear to exist in configuration\n")
        setattr(self._state[target], attr, value)
        self._touch("root", "cibadmin", node)
        self._settle()
        return _ok()

    def _pcs_property(self, node: str, args: list[str], unset: bool) -> Completed:
        if len(args) != 1:
            return _unsupported(["pcs", "property", "unset" if unset else "set", *args])
        name, eq, value = args[0].partition("=")
        if name != "maintenance-mode":
            return _err(f"Error: unknown cluster property: '{name}', (use --force to override)\n")
        if not unset and value.lower() not in ("true", "false"):
            return _err(f"Error: invalid value of property: '{args[0]}', "
                        "(use --force to override)\n")
        if unset and eq:
            return _unsupported(["pcs", "property", "unset", *args])
        self.set_cluster_maintenance(not unset and value.lower() == "true", origin=node)
        return _ok()

    def _pcs_cleanup(self, node: str, args: list[str]) -> Completed:
        rsc, target = _pcs_cleanup_args(args)
        if rsc == "" or target == "":
            return _unsupported(["pcs", "resource", "cleanup", *args])
        problem = self._check_names(rsc, target)
        if problem is not None:
            what = f": {rsc}" if rsc else "s"
            return _err(f"Error: Unable to forget failed operations of resource{what}\n"
                        f"crm_resource: {problem}\n")
        return _ok(self._cleanup(node, rsc, target))

    def _pcs_move_with_constraint(self, node: str, args: list[str]) -> Completed:
        if not self._pcs_0_11:  # pcs 0.10 knows no such command: it prints its usage
            return _err("\nUsage: pcs resource [commands]...\nManage pacemaker resources\n")
        return self._pcs_move(node, args, keep=True)

    def _pcs_move(self, node: str, args: list[str], keep: bool) -> Completed:
        """keep: leave the cli-prefer constraint (pcs < 0.11 `move`, `move-with-constraint`);
        else pcs 0.11's `move`, which removes it and refuses a resource that would go back."""
        if len(args) != 2:
            return _unsupported(["pcs", "resource", "move", *args])
        rsc, target = args
        if rsc in (self.clone_id, self.clone_primitive):
            return _err("Error: cannot move cloned resources\n")
        if rsc not in self.vips:
            return _err(f"Error: Resource '{rsc}' does not exist\n")
        if target not in self.nodes:
            return _err(f"Error: Node '{target}' does not appear to exist in configuration\n")
        if not keep:
            after = copy.deepcopy(self)
            after._moves.pop(rsc, None)
            after._settle()
            if after._vip_at[rsc] != target:
                return _err(_WONT_STAY.format(rsc))
        self._moves[rsc] = target  # a cli-prefer constraint, kept until `pcs resource clear`
        self._touch("root", "crm_resource", node)
        self._settle()
        if not keep:
            self._moves.pop(rsc)
            self._settle()
        if keep and self._pcs_0_11:  # on stderr, exit 0, as the lab's pcs 0.11.5 says it
            return Completed(0, "", f"Warning: A move constraint has been created and the resource "
                                    f"'{rsc}' may or may not move depending on other configuration\n")
        return _ok()

    def _pcs_clear(self, node: str, args: list[str]) -> Completed:
        if len(args) != 1:
            return _unsupported(["pcs", "resource", "clear", *args])
        if not self._known_resource(args[0]):
            return _err(f"Error: Resource '{args[0]}' does not exist\n")
        if self._moves.pop(args[0], None) is None:
            return _ok()
        self._touch("root", "crm_resource", node)
        self._settle()
        return _ok(f"Removing constraint: cli-prefer-{args[0]}\n")

    # ------------------------------------------------------------ membership, quorum, DC

    def _partitions(self) -> tuple[frozenset[str], ...]:
        up = [n for n in self.nodes if self._state[n].units["corosync"] == "active"]
        main = frozenset(n for n in up if not self._state[n].desynced)
        lonely = [frozenset({n}) for n in up if self._state[n].desynced]
        return (main, *lonely) if main else tuple(lonely)

    def _partition_of(self, node: str) -> frozenset[str] | None:
        return next((p for p in self._parts if node in p), None)

    def _quorate(self, part: frozenset[str] | None) -> bool:
        return part is not None and 2 * len(part) > len(self.nodes)

    def _pcmk(self, part: frozenset[str]) -> tuple[str, ...]:
        return tuple(n for n in self.nodes if n in part and self._alive(n))

    def _primary(self) -> frozenset[str] | None:
        with_pcmk = [p for p in self._parts if self._pcmk(p)]
        return max(with_pcmk, key=lambda p: (self._quorate(p), len(p)), default=None)

    def _elect(self) -> None:
        """The DC keeps its role while it stays in its partition; else the lowest id wins."""
        old = set(self._dcs.values())
        dcs: dict[frozenset[str], str] = {}
        for part in self._parts:
            members = self._pcmk(part)
            if members:
                dcs[part] = next((n for n in members if n in old), members[0])
        self._dcs = dcs

    def _any_dc(self) -> str:
        primary = self._primary()
        return self._dcs[primary] if primary else self.nodes[0]

    # ------------------------------------------------------------ the scheduler

    def _settle(self) -> None:
        parts = self._partitions()
        if parts != self._parts:
            self._ring += 4  # each membership change is a new ring (lab: 1.12, 1.16, 1.1a)
            self._parts = parts
        self._elect()
        for _ in range(3):  # a failed clone start bans the clone, which stops the rest
            before = (dict(self._vip_at), set(self._clone_on))
            self._stop_unwanted()
            self._place_vips()
            self._place_clone()
            if before == (self._vip_at, self._clone_on):
                break
        self._sync_monitors()

    def _eligible(self) -> tuple[str, ...]:
        quorate = [p for p in self._parts if self._quorate(p)]
        if not quorate or self._maintenance_mode:
            return ()
        st = self._state
        return tuple(n for n in self._pcmk(quorate[0])
                     if not st[n].standby and not st[n].maintenance)

    def _stop_unwanted(self) -> None:
        eligible = self._eligible()
        for prim in (*self.vips, self.clone_primitive):
            for node in self._running_nodes(prim):
                if self._managed_on(node) and node not in eligible:
                    self._stop(node, prim)

    def _place_vips(self) -> None:
        # Allocation goes in config order and counts what is placed so far: that is why
        # b_standby sends virtual_ip_2 to node3, not node1 (virtual_ip_3 is not yet placed).
        eligible = self._eligible()
        load = Counter(n for n in self._vip_at.values() if n and not self._managed_on(n))
        for vip in self.vips:
            current = self._vip_at[vip]
            if current is not None and not self._managed_on(current):
                continue
            target = self._vip_target(vip, eligible, load)
            if current is not None and current != target:
                self._stop(current, vip)
            if target is not None and (current == target or self._start(target, vip)):
                load[target] += 1

    def _vip_target(self, vip: str, eligible: Sequence[str], load: Counter[str]) -> str | None:
        if not eligible or self._banned(vip):
            return None
        preferred = self._moves.get(vip, self.nodes[self.vips.index(vip)])
        if preferred in eligible:
            return preferred
        return min(eligible, key=lambda n: (load[n], self.nodes.index(n)))

    def _place_clone(self) -> None:
        prim = self.clone_primitive
        want = set() if self._banned(prim) else set(self._eligible())
        for node in self._running_nodes(prim):
            if self._managed_on(node) and node not in want:
                self._stop(node, prim)
        for node in self.nodes:
            if node in want and node not in self._clone_on:
                self._start(node, prim)

    def _start(self, node: str, prim: str) -> bool:
        if prim in self._broken:
            self._record_fatal_start(node, prim)
            return False
        self._entry(node, prim).last = self._op(node, prim, "start")
        if prim == self.clone_primitive:
            self._clone_on.add(node)
        else:
            self._vip_at[prim] = node
        return True

    def _record_fatal_start(self, node: str, prim: str) -> None:
        # rc 6 is a hard error: Pacemaker bans the resource everywhere until a cleanup.
        entry = self._entry(node, prim)
        entry.failure = self._op(node, prim, "start", rc=6)
        entry.last = self._op(node, prim, "stop")
        entry.fail_count = INFINITY
        entry.last_failure = self._now()

    def _stop(self, node: str, prim: str) -> None:
        self._entry(node, prim).last = self._op(node, prim, "stop")
        self._unplace(node, prim)

    def _unplace(self, node: str, prim: str) -> None:
        if prim == self.clone_primitive:
            self._clone_on.discard(node)
        elif self._vip_at.get(prim) == node:
            self._vip_at[prim] = None

    def _sync_monitors(self) -> None:
        """Recurring monitors run on managed instances only (f2 shows them cancelled)."""
        for prim in (*self.vips, self.clone_primitive):
            for node in self._running_nodes(prim):
                entry = self._entry(node, prim)
                if not self._managed_on(node):
                    entry.monitor = None
                elif entry.monitor is None or (entry.last and entry.monitor.call < entry.last.call):
                    entry.monitor = self._op(node, prim, "monitor", interval=MONITOR_MS)

    def _banned(self, prim: str) -> bool:
        return any(
            (h := self._history[n].get(prim)) is not None and h.failure is not None
            and h.failure.rc == 6
            for n in self.nodes if self._alive(n)
        )

    # ------------------------------------------------------------ small state helpers

    def _now(self) -> datetime:
        now = self._clock()
        return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)

    def _node(self, node: str) -> _NodeState:
        if node not in self._state:
            raise ValueError(f"unknown node {node!r}")
        return self._state[node]

    def _id(self, node: str) -> int:
        return self.nodes.index(node) + 1

    def _alive(self, node: str) -> bool:
        return self._state[node].units["pacemaker"] == "active"

    def _managed_on(self, node: str) -> bool:
        return not self._maintenance_mode and not self._state[node].maintenance

    def _known_resource(self, rsc: str) -> bool:
        return rsc in self.vips or rsc in (self.clone_id, self.clone_primitive)

    def _primitive(self, resource: str) -> str:
        if not self._known_resource(resource):
            raise ValueError(f"unknown resource {resource!r}")
        return self.clone_primitive if resource == self.clone_id else resource

    def _running_nodes(self, prim: str) -> list[str]:
        if prim == self.clone_primitive:
            return [n for n in self.nodes if n in self._clone_on]
        where = self._vip_at[prim]
        return [where] if where else []

    def _running_instance(self, prim: str, node: str | None) -> str:
        running = self._running_nodes(prim)
        if node is not None:
            self._node(node)
        candidates = [n for n in running if node in (None, n)]
        if not candidates:
            raise ValueError(f"{prim} is not running{f' on {node}' if node else ''}")
        return candidates[0]

    def _count_running(self, node: str) -> int:
        return sum(node in self._running_nodes(p) for p in (*self.vips, self.clone_primitive))

    def _entry(self, node: str, prim: str) -> _RscHistory:
        return self._history[node].setdefault(prim, _RscHistory())

    def _next_call(self, node: str) -> int:
        self._state[node].calls += 1
        return self._state[node].calls

    def _op(self, node: str, prim: str, task: str, rc: int = 0, interval: int = 0) -> _Op:
        agent = CLONE_AGENT if prim == self.clone_primitive else VIP_AGENT
        exec_ms = _exec_ms(agent, task) if rc in (0, 6) else 0
        return _Op(self._next_call(node), task, rc, interval, self._now(), exec_ms)

    def _forget(self, node: str) -> None:
        """The node left: its resources are gone and the others drop its status section."""
        for prim in (*self.vips, self.clone_primitive):
            self._unplace(node, prim)
        self._history[node] = {}
        self._state[node].desynced = False

    def _touch(self, user: str, client: str, origin: str) -> None:
        self._last_change = _LastChange(self._now(), user, client, origin)
        self._epoch += 1

    def _failed_ops(self, online: Sequence[str]) -> list[tuple[str, str, _Op]]:
        return [(node, prim, h.failure) for node in online
                for prim, h in self._history[node].items() if h.failure is not None]

    def _failures(self, online: Sequence[str]) -> tuple[FailedAction, ...]:
        return tuple(
            FailedAction(prim, node, op.task, op.rc, op.call, op.when,
                         self._history[node][prim].fail_count)
            for node, prim, op in self._failed_ops(online)
        )


# ---------------------------------------------------------------- module-level parsers


def _op_el(op: _Op) -> _El:
    attrs: list[tuple[str, str | int | bool]] = [
        ("call", op.call), ("task", op.task), ("rc", op.rc), ("rc_text", _RC_TEXT[op.rc])]
    if op.interval_ms:
        attrs.append(("interval", f"{op.interval_ms}ms"))
    attrs += [("last-rc-change", _ctime(op.when)), ("exec-time", f"{op.exec_ms}ms"),
              ("queue-time", "0ms")]
    return _e("operation_history", attrs)


_CRM_MON_FLAGS = {
    "-1": "oneshot", "--one-shot": "oneshot", "-r": "inactive", "--inactive": "inactive",
    "-X": "legacy", "--as-xml": "legacy",
}


def _crm_mon_opts(args: Sequence[str]) -> set[str] | None:
    """The options we model; `-1r` style bundles of those short flags are accepted too."""
    out: set[str] = set()
    it = iter(args)
    for arg in it:
        if arg in _CRM_MON_FLAGS:
            out.add(_CRM_MON_FLAGS[arg])
        elif arg == "--output-as=xml" or (arg == "--output-as" and next(it, None) == "xml"):
            out.add("xml")
        elif len(arg) > 2 and arg[0] == "-" and all(f"-{c}" in _CRM_MON_FLAGS for c in arg[1:]):
            out.update(_CRM_MON_FLAGS[f"-{c}"] for c in arg[1:])
        else:
            return None
    return out


def _not_connected(request: str, legacy: bool) -> Completed:
    """crm_mon on a node whose pacemakerd is down: exit 102 (CRM_EX_DISCONNECT)."""
    if legacy:
        # Legacy XML (2.1's output_xml.c) prints the exit reason and errors on stderr.
        stderr = "Not connected\n" + "".join(e + "\n" for e in NOT_CONNECTED_ERRORS)
        return Completed(102, f'<crm_mon version="{PACEMAKER_VERSION}"/>\n', stderr)
    errors = tuple(_El("error", text=e) for e in NOT_CONNECTED_ERRORS)
    status = _El("status", (("code", "102"), ("message", "Not connected")),
                 (_El("errors", children=errors),))
    root = _e("pacemaker-result", [("api-version", API_VERSION), ("request", request)], status)
    return Completed(102, _serialize(root), "")


def _crmadmin_failed(request: str, code: int, message: str, error: str) -> Completed:
    """crmadmin's XML answer when it gets no state: the code is also its exit status."""
    errors = (_El("error", text=f"error: {error}"),
              _El("error", text=f"error: Command failed: {error.rpartition(': ')[2]}"))
    status = _El("status", (("code", str(code)), ("message", message)), (_El("errors", children=errors),))
    root = _e("pacemaker-result", [("api-version", API_VERSION), ("request", request)], status)
    return Completed(code, _serialize(root), "")


def _pcs_cleanup_args(args: Sequence[str]) -> tuple[str | None, str | None]:
    """`[RESOURCE] [node=N | --node N | --node=N]`; "" marks something we do not model."""
    rsc: str | None = None
    target: str | None = None
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg.startswith("node=") or arg.startswith("--node="):
            target = arg.partition("=")[2]
        elif arg == "--node":
            target = rest.pop(0) if rest else ""
        elif rsc is None and not arg.startswith("-") and "=" not in arg:
            rsc = arg
        else:
            return "", ""
    return rsc, target
