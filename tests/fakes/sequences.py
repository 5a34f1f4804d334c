"""Real timing sequences recorded on the lab (deploy/lab/record.py), for replay.

A recording is `tests/fixtures/sequences/<scenario>/`: `meta.json` (what was done, when) and
`samples.jsonl` (every node's answer to every read command the collector sends, one line each
time an answer changed, ignoring only the clock fields). Recordings made before the collector
asked crmadmin (issue 14) have no `crmadmin` lines: replaying them, that command has no answer.
`Sequence.answer(node, cmd, t)` is what that node would have answered that command at t seconds
into the recording.

The format and this API are a contract shared with the replay tests: fields may be added,
never renamed or removed.
"""

from __future__ import annotations

import json
import shlex
from bisect import bisect_right
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

from bot.collect import COROSYNC_DAEMONS, controller_argv
from bot.settings import Commands

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sequences"
Remediation = tuple[str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class Sample:
    """One answer: asked at `t` (seconds since the recording began), answered `dt` later.
    `rc` is None when there was no answer at all (SSH failed): `err` says why."""

    t: float
    dt: float
    node: str
    cmd: str
    argv: tuple[str, ...]
    rc: int | None
    out: str
    err: str


@dataclass(frozen=True, slots=True)
class Step:
    """One scripted step. `action` "wait" is the recorder waiting for a condition (`command`)
    in `node`'s answers; `remediation` is set for steps that are catalogue fixes."""

    t: float
    t_end: float
    node: str | None
    action: str
    command: str
    rc: int
    remediation: Remediation | None = None


@dataclass(frozen=True)
class Sequence:
    name: str
    description: str
    kind: str  # "pacemaker" | "corosync"
    nodes: tuple[str, ...]
    vips: tuple[str, ...]
    everywhere: tuple[str, ...]
    duration: float
    interval_s: float
    token_ms: int
    steps: tuple[Step, ...]
    samples: tuple[Sample, ...]
    # (node, cmd) -> (times, samples), both sorted by t: what answer() bisects.
    _index: Mapping[tuple[str, str], tuple[tuple[float, ...], tuple[Sample, ...]]] = field(
        default_factory=lambda: MappingProxyType({}), repr=False, compare=False)

    @property
    def cmds(self) -> tuple[str, ...]:
        """The commands recorded, in a stable order."""
        return tuple(sorted({cmd for _, cmd in self._index}))

    @property
    def ready(self) -> float:
        """The first instant at which every node has answered every command once: a replay
        that starts here never meets a node without an answer."""
        return max((samples[0].t for _, samples in self._index.values()), default=0.0)

    def answer(self, node: str, cmd: str, t: float) -> Sample | None:
        """The latest answer of node to cmd at or before t; None before the first one."""
        times, samples = self._index.get((node, cmd), ((), ()))
        i = bisect_right(times, t)
        return samples[i - 1] if i else None

    def reply(self, node: str, command_line: str, t: float) -> Sample | None:
        """What node answered this command line (as the collector sends it) at t; None for a
        command the recording does not hold, or before its first answer."""
        cmd = cmd_of(command_line)
        return None if cmd is None else self.answer(node, cmd, t)

    def changes(self, node: str, cmd: str) -> tuple[Sample, ...]:
        """Every distinct answer of node to cmd, in time order."""
        return self._index.get((node, cmd), ((), ()))[1]

    def first_change(self, node: str, cmd: str, when: Callable[[Sample], bool],
                     after: float = 0.0) -> Sample | None:
        """The first answer of node to cmd at or after `after` for which `when` holds."""
        return next((s for s in self.changes(node, cmd) if s.t >= after and when(s)), None)

    def step(self, action: str, nth: int = 0) -> Step | None:
        """The nth step (0-based) with this action, or None."""
        found = [s for s in self.steps if s.action == action]
        return found[nth] if nth < len(found) else None

    @property
    def remediations(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.remediation is not None)

    def times(self) -> tuple[float, ...]:
        """Every instant at which some answer changed, sorted (the points worth polling at)."""
        return tuple(sorted({s.t for s in self.samples}))


def names() -> tuple[str, ...]:
    """The recorded scenarios, sorted."""
    if not FIXTURES.is_dir():
        return ()
    return tuple(sorted(p.parent.name for p in FIXTURES.glob("*/meta.json")))


@cache
def load(name: str) -> Sequence:
    """The recording `name` (cached: a Sequence is immutable)."""
    where = FIXTURES / name
    if not (where / "meta.json").is_file():
        raise FileNotFoundError(f"no recorded sequence {name!r} in {FIXTURES}")
    meta = json.loads((where / "meta.json").read_text())
    samples = tuple(sorted((_sample(json.loads(line)) for line in _lines(where / "samples.jsonl")),
                           key=lambda s: s.t))
    return Sequence(
        name=meta["scenario"], description=meta["description"], kind=meta["kind"],
        nodes=tuple(meta["nodes"]), vips=tuple(meta["vips"]), everywhere=tuple(meta["everywhere"]),
        duration=float(meta["duration_s"]), interval_s=float(meta["interval_s"]),
        token_ms=int(meta["token_ms"]), steps=tuple(_step(s) for s in meta["steps"]),
        samples=samples, _index=_indexed(samples))


# The collector's read commands (bot/collect.py), by the name recordings store them under.
_CMDS: dict[tuple[str, ...], str] = {
    Commands().crm_mon: "crm_mon",
    Commands().daemons: "daemons",
    COROSYNC_DAEMONS: "daemons",
    Commands().quorum: "quorumtool",
    Commands().links: "cfgtool",
}


def cmd_of(command_line: str) -> str | None:
    """The recorded command a command line asks for (as bot.ssh.build_command quotes it,
    with or without `sudo -n`); None for anything the recordings cannot answer."""
    try:
        argv = shlex.split(command_line)
    except ValueError:
        return None
    if argv[:2] == ["sudo", "-n"]:
        argv = argv[2:]
    if len(argv) > 1 and tuple(argv) == controller_argv(argv[1].removeprefix("--status=")):
        return "crmadmin"  # its argv names the node asked: one line per node
    return _CMDS.get(tuple(argv))


def _lines(path: Path) -> Iterator[str]:
    with path.open() as fh:
        yield from (line for line in fh if line.strip())


def _sample(raw: dict[str, Any]) -> Sample:
    return Sample(t=float(raw["t"]), dt=float(raw["dt"]), node=raw["node"], cmd=raw["cmd"],
                  argv=tuple(raw["argv"]), rc=raw["rc"], out=raw["out"], err=raw["err"])


def _step(raw: dict[str, Any]) -> Step:
    fix = raw.get("remediation")
    return Step(t=float(raw["t"]), t_end=float(raw["t_end"]), node=raw["node"],
                action=raw["action"], command=raw["command"], rc=int(raw["rc"]),
                remediation=(fix["action"], tuple(fix["args"])) if fix else None)


def _indexed(samples: tuple[Sample, ...],
             ) -> Mapping[tuple[str, str], tuple[tuple[float, ...], tuple[Sample, ...]]]:
    groups: dict[tuple[str, str], list[Sample]] = {}
    for s in samples:
        groups.setdefault((s.node, s.cmd), []).append(s)
    return MappingProxyType({key: (tuple(s.t for s in group), tuple(group))
                             for key, group in groups.items()})
