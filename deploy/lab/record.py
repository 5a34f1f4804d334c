#!/usr/bin/env python3
"""Record a real failure sequence on the cblab cluster as a replayable fixture.

While a scripted scenario runs, every node is asked, every --interval seconds, exactly the
read commands the bot's collector sends (crm_mon XML, the daemons' `systemctl is-active`,
`corosync-quorumtool -s`, `corosync-cfgtool -s`), through the bot's own SshPool: the same
persistent connections, read shells, argv and quoting, with the lab's key and pinned
known_hosts. The scenario's steps are run by the recorder itself (nodectl.sh in the root
namespace, or the remediation's command over SSH on the node) and waits are on conditions
seen in the recorded answers, never fixed sleeps.

Output, in OUT/<scenario>/ (the format is a contract; see tests/fakes/sequences.py):
  meta.json      what was done, when, with which exit code; versions; settings
  samples.jsonl  one line per answer that differs from that node's previous answer to that
                 command (ignoring only the clock fields); the text stored is always raw

Run as root with the lab up, holding the lab lock, from the repository's venv:
  flock /run/lock/cblab-tests.lock .venv/bin/python deploy/lab/record.py power_cut_rejoin
`--list` prints the scenarios.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import shlex
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

LAB_DIR = Path(__file__).resolve().parent
REPO = LAB_DIR.parents[1]
sys.path[:0] = [str(LAB_DIR), str(REPO)]

import labwait  # noqa: E402  (deploy/lab/labwait.py: the lab's condition language)

from bot.collect import _VOLATILE, COROSYNC_DAEMONS, controller_argv, target_for  # noqa: E402
from bot.corosync.parse import parse_cfgtool, parse_quorum  # noqa: E402
from bot.errors import ClusterbotError  # noqa: E402
from bot.settings import ClusterConfig, Settings, load_settings  # noqa: E402
from bot.ssh import SshPool  # noqa: E402

CONFIG = Path("/var/lib/cblab/clusterbot.toml")  # written by up.sh
NODECTL = LAB_DIR / "nodectl.sh"
OUT = REPO / "tests" / "fixtures" / "sequences"
INTERVAL_S = 0.25
COMMAND_TIMEOUT_S = 5.0  # one read command; crm_mon and the corosync tools answer or fail at once
STEP_TIMEOUT_S = 120.0  # one action (pcs through pcsd, a corosync restart)
LEAD_S = 3.5  # healthy samples (seen settled) before the first step
TAIL_S = 11.0  # samples after the cluster settled
SETTLE_TIMEOUT_S = 120.0
# quorumtool prints the node's clock; like crm_mon's last_updated it changes on every answer.
_DATE_LINE = re.compile(r"^Date:.*$", re.MULTILINE)


# -- what is asked ------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    cmd: str  # the stable short name in samples.jsonl
    argv: tuple[str, ...]


def probes(cluster: ClusterConfig, kind: str, node: str) -> tuple[Probe, ...]:
    """The collector's read commands to `node` for a cluster of this kind (bot/collect.py)."""
    cmds = cluster.commands
    corosync = (Probe("quorumtool", cmds.quorum), Probe("cfgtool", cmds.links))
    if kind == "corosync":
        return (Probe("daemons", COROSYNC_DAEMONS), *corosync)
    return (Probe("crm_mon", cmds.crm_mon), Probe("daemons", cmds.daemons), *corosync,
            Probe("crmadmin", controller_argv(node)))


def stable(cmd: str, out: str) -> str:
    """The answer without the fields that change on every call (what 'changed' ignores)."""
    if cmd == "crm_mon":
        return _VOLATILE.sub("", out)
    if cmd == "quorumtool":
        return _DATE_LINE.sub("", out)
    return out


@dataclass(frozen=True)
class Answer:
    t: float
    dt: float
    node: str
    cmd: str
    argv: tuple[str, ...]
    rc: int | None  # None: no answer at all (SSH failed); err says why
    out: str
    err: str

    def line(self) -> dict[str, Any]:
        return {"t": round(self.t, 3), "dt": round(self.dt, 3), "node": self.node, "cmd": self.cmd,
                "argv": list(self.argv), "rc": self.rc, "out": self.out, "err": self.err}


# -- conditions on what the recording saw -------------------------------------------------


def crm_xml(answer: Answer | None) -> ET.Element | None:
    if answer is None or answer.rc != 0 or not answer.out.lstrip().startswith("<"):
        return None
    try:
        return ET.fromstring(answer.out)
    except ET.ParseError:
        return None


def _node_flag(root: ET.Element, node: str, attr: str) -> bool:
    el = root.find(f"./nodes/node[@name='{node}']")
    return el is not None and el.get(attr) == "true"


def _cluster_maintenance(root: ET.Element) -> bool:
    opts = root.find("./summary/cluster_options")
    return opts is not None and opts.get("maintenance-mode") == "true"


def _pending(root: ET.Element) -> bool:
    """A resource action Pacemaker has not finished (record-pending shows it in crm_mon)."""
    return any(r.get("pending") or r.get("role") in ("Starting", "Stopping", "Migrating")
               for r in root.iter("resource"))


def _recovered(root: ET.Element, rsc: str) -> bool:
    """RSC has a failed action, and a successful monitor newer than it: Pacemaker restarted it
    and its recurring monitor runs again."""
    failed = [f for f in root.iter("failure") if f.get("op_key", "").startswith(rsc + "_")]
    return bool(failed) and all(
        any(op.get("task") == "monitor" and op.get("rc") == "0"
            and int(op.get("call", "-1")) > int(f.get("call", "-1"))
            for op in root.findall(f"./node_history/node[@name='{f.get('node')}']"
                                   f"/resource_history[@id='{rsc}']/operation_history"))
        for f in failed)


def crm_holds(cond: str, root: ET.Element | None) -> bool:
    """labwait's conditions plus maintenance:N, no-maintenance:N, cluster-maintenance,
    no-cluster-maintenance, idle (no pending action), recovered:RES (failed, then monitored
    fine again) and settled (healthy, idle, no
    maintenance anywhere)."""
    kind, _, arg = cond.partition(":")
    if root is None:
        return cond == "down"
    extra: dict[str, Callable[[], bool]] = {
        "maintenance": lambda: _node_flag(root, arg, "maintenance"),
        "no-maintenance": lambda: not _node_flag(root, arg, "maintenance"),
        "cluster-maintenance": lambda: _cluster_maintenance(root),
        "no-cluster-maintenance": lambda: not _cluster_maintenance(root),
        "idle": lambda: not _pending(root),
        "recovered": lambda: _recovered(root, arg),
        "settled": lambda: (labwait.holds("healthy", labwait.View(root)) and not _pending(root)
                            and not _cluster_maintenance(root)
                            and not any(_node_flag(root, n, "maintenance") for n in labwait._LAB_NODES)),
    }
    if kind in extra:
        return extra[kind]()
    return labwait.holds(cond, labwait.View(root))


def members(answer: Answer | None) -> int | None:
    """How many members the node's quorumtool shows while quorate; None otherwise."""
    if answer is None or not answer.out.strip():
        return None
    try:
        quorum = parse_quorum(answer.out)
    except ClusterbotError:
        return None
    return len(quorum.members) if quorum.quorate else None


def links_up(answer: Answer | None) -> bool:
    if answer is None or answer.rc != 0:
        return False
    try:
        status = parse_cfgtool(answer.out)
    except ClusterbotError:
        return False
    return all(not lk.faulty and not lk.down_peers for lk in status.links)


# -- the scenario language ----------------------------------------------------------------


@dataclass(frozen=True)
class Do:
    """One action. `node`: where it runs over SSH; `nodectl`: a nodectl.sh call instead."""

    action: str
    node: str | None
    argv: tuple[str, ...]
    nodectl: bool = False
    remediation: tuple[str, tuple[str, ...]] | None = None


@dataclass(frozen=True)
class Wait:
    """Until every condition holds in the answers of `node` taken after the wait began.
    crm_mon conditions (crm_holds), or `members=K` / `links-up` on Corosync's answers.
    `held_s`: and has held in every round for that long (an on-call who saw it)."""

    node: str
    conds: tuple[str, ...]
    timeout_s: float = 60.0
    held_s: float = 0.0


@dataclass(frozen=True)
class Together:
    """Actions started at the same instant (two nodes cut at once)."""

    steps: tuple[Do, ...]


Step = Do | Wait | Together


@dataclass(frozen=True)
class Scenario:
    description: str
    steps: tuple[Step, ...]
    kind: str = "pacemaker"
    setup: tuple[Step, ...] = ()  # before the recording starts
    teardown: tuple[Step, ...] = ()  # after it ends: back to the healthy lab


def crash(node: str) -> Do:
    return Do("power_cut", node, ("nodectl.sh", node, "crash"), nodectl=True)


def power_on(node: str) -> Do:
    return Do("power_on", node, ("nodectl.sh", node, "start"), nodectl=True)


def pcs(action: str, node: str, *args: str, remedy: tuple[str, tuple[str, ...]] | None = None) -> Do:
    return Do(action, node, ("pcs", *args), remediation=remedy)


def flap(node: str) -> tuple[Step, ...]:
    return (crash(node), Wait("node1", ("offline:" + node,), 30),
            power_on(node), Wait("node1", (f"running:virtual_ip_{node[-1]}@{node}",), 60))


SCENARIOS: dict[str, Scenario] = {
    "power_cut_rejoin": Scenario(
        "node3 power cut (SIGKILL of its cluster stack, VIP and Dummy state dropped), then "
        "its cluster stack started again (the node rejoins)",
        (crash("node3"), Wait("node1", ("offline:node3", "running:virtual_ip_3@!node3")),
         power_on("node3"), Wait("node1", ("healthy",)))),
    "flapping_node": Scenario(
        "node2 power cut and rejoin 5 times in a row (each rejoin waits for virtual_ip_2 back "
        "on node2, then the next cut)",
        tuple(s for _ in range(5) for s in flap("node2"))),
    "cluster_stop_start": Scenario(
        "`pcs cluster stop` on node3, then `pcs cluster start` on node3 (the start remediation)",
        (pcs("cluster_stop", "node3", "cluster", "stop"),
         Wait("node1", ("offline:node3", "running:virtual_ip_3@!node3", "idle")),
         pcs("start", "node3", "cluster", "start", remedy=("start", ("node3",))),
         Wait("node1", ("healthy",)))),
    "resync": Scenario(
        "the runbook resync of a healthy node2: `systemctl restart corosync`, then "
        "`systemctl restart pcsd`, on node2",
        (Do("restart_corosync", "node2", ("systemctl", "restart", "corosync"),
            remediation=("resync", ("node2",))),
         Do("restart_pcsd", "node2", ("systemctl", "restart", "pcsd"),
            remediation=("resync", ("node2",))),
         Wait("node1", ("healthy",)))),
    "standby_unstandby": Scenario(
        "`pcs node standby node2` (run on node1), then `pcs node unstandby node2`",
        (pcs("standby", "node1", "node", "standby", "node2", remedy=("standby", ("node2",))),
         Wait("node1", ("standby:node2", "running:virtual_ip_2@!node2", "clone:loadbalancer-clone=2",
                       "idle")),
         pcs("unstandby", "node1", "node", "unstandby", "node2", remedy=("unstandby", ("node2",))),
         Wait("node1", ("healthy",)))),
    "move_clear": Scenario(
        "`pcs resource move-with-constraint virtual_ip_1 node3` (pcs 0.11: a plain move drops "
        "its constraint and the VIP goes home), then `pcs resource clear virtual_ip_1`",
        (pcs("move", "node1", "resource", "move-with-constraint", "virtual_ip_1", "node3",
             remedy=("move", ("virtual_ip_1", "node3"))),
         Wait("node1", ("running:virtual_ip_1@node3", "idle")),
         pcs("clear", "node1", "resource", "clear", "virtual_ip_1", remedy=("clear", ("virtual_ip_1",))),
         Wait("node1", ("healthy",)))),
    "monitor_failure_cleanup": Scenario(
        "virtual_ip_1's address deleted on node1, so its next monitor fails (monitor 10 s) and "
        "Pacemaker recovers it in place; then `pcs resource cleanup virtual_ip_1`",
        (Do("break_resource", "node1", ("nodectl.sh", "node1", "break-resource", "virtual_ip_1"),
            nodectl=True),
         # The on-call saw the failure before the cleanup was approved: shown for 3 s at least.
         Wait("node1", ("failures",), 30, held_s=3.0),
         Wait("node1", ("recovered:virtual_ip_1", "running:virtual_ip_1@node1", "idle"), 30),
         pcs("cleanup", "node1", "resource", "cleanup", "virtual_ip_1",
             remedy=("cleanup", ("virtual_ip_1",))),
         Wait("node1", ("healthy",)))),
    "quorum_loss": Scenario(
        "node2 and node3 power cut at the same instant (node1 alone: no quorum, so it stops "
        "everything), then both started again",
        (Together((crash("node2"), crash("node3"))),
         Wait("node1", ("offline:node2,node3", "no-quorum", "stopped:virtual_ip_1",
                        "clone:loadbalancer-clone=0", "idle")),
         Together((power_on("node2"), power_on("node3"))),
         Wait("node1", ("healthy",)))),
    "maintenance": Scenario(
        "`pcs node maintenance node2`, `pcs node unmaintenance node2`, then "
        "`pcs property set maintenance-mode=true` and back to false",
        (pcs("node_maintenance", "node1", "node", "maintenance", "node2"),
         Wait("node1", ("maintenance:node2", "idle")),
         pcs("node_unmaintenance", "node1", "node", "unmaintenance", "node2"),
         Wait("node1", ("no-maintenance:node2", "idle")),
         pcs("cluster_maintenance", "node1", "property", "set", "maintenance-mode=true"),
         Wait("node1", ("cluster-maintenance", "idle")),
         pcs("cluster_unmaintenance", "node1", "property", "set", "maintenance-mode=false"),
         Wait("node1", ("no-cluster-maintenance", "healthy")))),
    "corosync_member_loss": Scenario(
        "a corosync-only cluster (Pacemaker stopped on every node first): node3 power cut "
        "(corosync SIGKILLed), then `systemctl start corosync` on node3",
        (crash("node3"), Wait("node1", ("members=2",)),
         Do("start_corosync", "node3", ("systemctl", "start", "corosync")),
         Wait("node1", ("members=3", "links-up"))),
        kind="corosync",
        setup=(Together(tuple(Do("stop_pacemaker", n, ("systemctl", "stop", "pacemaker"))
                              for n in labwait._LAB_NODES)),
               *(Wait(n, ("down",)) for n in labwait._LAB_NODES)),
        teardown=(Together(tuple(Do("start_pacemaker", n, ("systemctl", "start", "pacemaker"))
                                 for n in labwait._LAB_NODES)),
                  Wait("node1", ("healthy",)))),
}


# -- the recorder -------------------------------------------------------------------------


@dataclass
class Recorder:
    pool: SshPool
    settings: Settings
    cluster: ClusterConfig
    kind: str
    interval_s: float
    t0: float = field(default_factory=time.monotonic)
    answers: list[Answer] = field(default_factory=list)  # only changed ones
    latest: dict[tuple[str, str], Answer] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)
    _last: dict[tuple[str, str], tuple[int | None, str, str]] = field(default_factory=dict)
    _tick: asyncio.Event = field(default_factory=asyncio.Event)
    _stop: bool = False
    rounds: int = 0

    def now(self) -> float:
        return time.monotonic() - self.t0

    def target(self, node: str) -> Any:
        conf = self.cluster.node(node)
        assert conf is not None, node
        return target_for(self.cluster, conf, self.settings)

    # sampling

    def samplers(self) -> list[asyncio.Task[None]]:
        """One sampling loop per node, and one more for its crmadmin: a busy controller answers
        in up to 1-2 s (measured), and must not hold up that node's other answers."""
        tasks = []
        for conf in self.cluster.nodes:
            asks = probes(self.cluster, self.kind, conf.name)
            controller = tuple(p for p in asks if p.cmd == "crmadmin")
            rest = tuple(p for p in asks if p.cmd != "crmadmin")
            tasks.append(asyncio.create_task(self.sample(conf.name, rest, counted=True)))
            if controller:
                tasks.append(asyncio.create_task(self.sample(conf.name, controller, counted=False)))
        return tasks

    async def sample(self, node: str, asks: tuple[Probe, ...], *, counted: bool) -> None:
        while not self._stop:
            started = time.monotonic()
            await asyncio.gather(*(self._ask(node, p) for p in asks))
            self.rounds += counted
            self._tick.set()
            await asyncio.sleep(max(0.0, started + self.interval_s - time.monotonic()))

    async def _ask(self, node: str, probe: Probe) -> None:
        t = self.now()
        try:
            done = await self.pool.read(self.target(node), probe.argv, timeout_s=COMMAND_TIMEOUT_S)
            rc, out, err = done.exit_status, done.stdout, done.stderr
        except ClusterbotError as exc:
            rc, out, err = None, "", str(exc)
        answer = Answer(t, self.now() - t, node, probe.cmd, probe.argv, rc, out, err)
        key = (node, probe.cmd)
        self.latest[key] = answer
        same = (rc, stable(probe.cmd, out), err)
        if self._last.get(key) != same:
            self._last[key] = same
            self.answers.append(answer)

    # conditions

    def holds(self, wait: Wait, since: float) -> bool:
        def fresh(cmd: str) -> Answer | None:
            a = self.latest.get((wait.node, cmd))
            return a if a is not None and a.t >= since else None

        def one(cond: str) -> bool:
            if cond.startswith("members="):
                return members(fresh("quorumtool")) == int(cond.partition("=")[2])
            if cond == "links-up":
                return links_up(fresh("cfgtool"))
            answer = fresh("crm_mon")
            return answer is not None and crm_holds(cond, crm_xml(answer))

        return all(one(c) for c in wait.conds)

    def settled(self, since: float) -> bool:
        """Every node agrees the cluster is whole and at rest, in answers taken after since."""
        nodes = [n.name for n in self.cluster.nodes]
        if self.kind == "pacemaker":
            conds: tuple[str, ...] = ("settled", "members=3", "links-up")
        else:
            conds = ("members=3", "links-up")
        daemons_ok = all((a := self.latest.get((n, "daemons"))) is not None and a.rc == 0 and a.t >= since
                         for n in nodes)
        return daemons_ok and all(self.holds(Wait(n, conds), since) for n in nodes)

    def _held(self, wait: Wait, since: float) -> Callable[[], bool]:
        """A check that the wait's conditions hold, and have in every round for `held_s`."""
        first: list[float] = []

        def check() -> bool:
            if not self.holds(wait, since):
                first.clear()
                return False
            first[:] = first or [self.now()]
            return self.now() - first[0] >= wait.held_s

        return check

    async def until(self, check: Callable[[], bool], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not check():
            if time.monotonic() >= deadline:
                return False
            self._tick.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._tick.wait(), max(0.01, deadline - time.monotonic()))
        return True

    # steps

    async def run(self, step: Step, log: list[dict[str, Any]] | None = None) -> None:
        log = self.steps if log is None else log
        if isinstance(step, Together):
            await asyncio.gather(*(self.run(s, log) for s in step.steps))
            return
        t = self.now()
        entry: dict[str, Any]
        if isinstance(step, Wait):
            met = await self.until(self._held(step, t), step.timeout_s)
            held = f" held {step.held_s:g}s" if step.held_s else ""
            entry = {"node": step.node, "action": "wait", "command": " ".join(step.conds) + held,
                     "rc": 0 if met else 1}
        else:
            rc, out = await self._do(step)
            entry = {"node": step.node, "action": step.action, "command": _command(step), "rc": rc}
            if out.strip():
                entry["output"] = out.strip()[-2000:]
            if step.remediation is not None:
                entry["remediation"] = {"action": step.remediation[0],
                                        "args": list(step.remediation[1])}
        log.append({"t": round(t, 3), "t_end": round(self.now(), 3), **entry})
        print(f"[{self.now():7.3f}] {entry['action']} {entry['command']} rc={entry['rc']}",
              file=sys.stderr)
        if entry["rc"] != 0:
            raise StepFailed(f"{entry['action']} ({entry['command']}) rc={entry['rc']}")

    async def _do(self, step: Do) -> tuple[int, str]:
        if step.nodectl:
            proc = await asyncio.create_subprocess_exec(
                "bash", str(NODECTL), *step.argv[1:], stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT)
            out, _ = await asyncio.wait_for(proc.communicate(), STEP_TIMEOUT_S)
            return proc.returncode or 0, out.decode(errors="replace")
        assert step.node is not None
        done = await self.pool.run(self.target(step.node), step.argv, timeout_s=STEP_TIMEOUT_S)
        return done.exit_status, done.stdout + done.stderr


class StepFailed(Exception):
    pass


def _command(step: Do) -> str:
    if step.nodectl:
        return "deploy/lab/" + shlex.join(step.argv)
    return f"ssh {step.node} {shlex.join(step.argv)}"


# -- one recording ------------------------------------------------------------------------


async def versions(pool: SshPool, rec: Recorder) -> dict[str, str]:
    asks = {"pacemaker": ("pacemakerd", "--version"), "corosync": ("corosync", "-v"),
            "pcs": ("pcs", "--version")}
    found = {}
    for name, argv in asks.items():
        done = await pool.run(rec.target("node1"), argv, timeout_s=30)
        text = (done.stdout or done.stderr).strip()
        match = re.search(r"\d+\.\d+\.\d+", text)
        found[name] = match.group(0) if match else text.splitlines()[0] if text else ""
    return found


async def record(name: str, scenario: Scenario, out_dir: Path, interval_s: float,
                 token_ms: int) -> Path:
    settings = load_settings(CONFIG)
    cluster = settings.clusters[0]
    # A shell per probe: five at once (the collector asks crmadmin after the daemons, on their
    # shell), so no round falls back to an exec session, which costs the node an sshd fork.
    async with SshPool(max_shells_per_connection=5) as pool:
        prep = Recorder(pool, settings, cluster, "pacemaker", interval_s)
        vers = await versions(pool, prep)
        await _phase(prep, scenario.setup, "setup")
        rec = Recorder(pool, settings, cluster, scenario.kind, interval_s)
        samplers = rec.samplers()
        try:
            if not await rec.until(lambda: rec.settled(0.0), 60):
                raise StepFailed("the cluster is not healthy at the start; heal the lab first")
            await asyncio.sleep(LEAD_S)  # the healthy lead-in
            if not rec.settled(0.0):
                raise StepFailed("the cluster changed during the lead-in")
            for step in scenario.steps:
                await rec.run(step)
            last = rec.now()
            if not await rec.until(lambda: rec.settled(last), SETTLE_TIMEOUT_S):
                raise StepFailed(f"not settled {SETTLE_TIMEOUT_S:.0f} s after the last step")
            settled_at = rec.now()
            await asyncio.sleep(TAIL_S)
        finally:
            rec._stop = True
            await asyncio.gather(*samplers, return_exceptions=True)
        duration = rec.now()
        post = Recorder(pool, settings, cluster, "pacemaker", interval_s)
        await _phase(post, scenario.teardown, "teardown")
    meta = {
        "scenario": name, "description": scenario.description, "kind": scenario.kind,
        "nodes": [n.name for n in cluster.nodes], "vips": list(cluster.vips),
        "everywhere": list(cluster.everywhere),
        "recorded": datetime.now(UTC).isoformat(timespec="seconds"), "versions": vers,
        "token_ms": token_ms, "interval_s": interval_s, "duration_s": round(duration, 3),
        "settled_s": round(settled_at, 3), "rounds": rec.rounds,
        "setup": prep.steps, "teardown": post.steps, "steps": rec.steps,
    }
    return write(out_dir / name, meta, rec.answers)


async def _phase(rec: Recorder, steps: Sequence[Step], what: str) -> None:
    """Setup or teardown: not sampled, but its steps are kept in meta.json all the same."""
    samplers = rec.samplers() if steps else []
    try:
        for step in steps:
            await rec.run(step)
    finally:
        rec._stop = True
        await asyncio.gather(*samplers, return_exceptions=True)
    if steps:
        print(f"{what} done in {rec.now():.1f} s", file=sys.stderr)


def write(where: Path, meta: dict[str, Any], answers: list[Answer]) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    lines = sorted(answers, key=lambda a: (a.t, a.node, a.cmd))
    with (where / "samples.jsonl").open("w") as fh:
        for a in lines:
            fh.write(json.dumps(a.line(), ensure_ascii=False) + "\n")
    (where / "meta.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
    return where


def token_ms() -> int:
    """The lab's running totem token, from node1's corosync.conf."""
    conf = Path("/var/lib/cblab/nodes/node1/etc-corosync/corosync.conf")
    match = re.search(r"^\s*token:\s*(\d+)", conf.read_text(), re.MULTILINE) if conf.exists() else None
    return int(match.group(1)) if match else 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", nargs="*", help="scenario names (see --list)")
    parser.add_argument("--list", action="store_true", help="print the scenarios and exit")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--interval", type=float, default=INTERVAL_S,
                        help=f"seconds between two rounds on a node (default {INTERVAL_S})")
    args = parser.parse_args(argv)
    if args.list or not args.scenario:
        for name, sc in SCENARIOS.items():
            print(f"{name:24} {sc.description}")
        return 0
    unknown = [s for s in args.scenario if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s): {' '.join(unknown)}")
    if not 0.2 <= args.interval <= 0.5:
        parser.error("--interval must be within 0.2-0.5 s")
    for name in args.scenario:
        where = asyncio.run(record(name, SCENARIOS[name], args.out, args.interval, token_ms()))
        print(f"recorded {name} -> {where}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except StepFailed as exc:
        print(f"record: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
