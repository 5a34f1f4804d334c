"""deploy/sudoers.d/clusterbot, proven by the real sudo: it allows every command line the bot can
produce and refuses everything else we could think of.

The file is installed, for a throwaway user (tests/sudokit.py), as an include in /etc/sudoers.d
(visudo-checked first, removed afterwards). Its command paths point into a temporary tree of stand-in programs
(sudo only judges a command that exists, and CI has no Pacemaker before the lab starts); nothing
else is changed. Every question is `sudo -l -U USER COMMAND…`, which answers exactly as
`sudo -n COMMAND…` run by that user would be judged.

The allowed lines are generated from the code: the read commands (bot.settings.Commands,
bot.collect), and every argv of the remediation catalogue (commands.REGISTRY) for sample valid
names. A new catalogue step without a sudoers rule fails here.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.collect import COROSYNC_DAEMONS, controller_argv
from bot.remedies import _NAME, Argv, Refused, Target, expand
from bot.settings import Commands
from commands import REGISTRY
from tests import sudokit
from tests.sudokit import SECURE_PATH, SUDOERS

RULE = "clusterbot ALL = (root) NOPASSWD: CLUSTERBOT_READ, CLUSTERBOT_FIX, CLUSTERBOT_NAMED"

# Valid names (bot/remedies.py _NAME), shortest to longest, with every character class it allows.
RESOURCES = ("virtual_ip_2", "_r.1:a-b", "r" * 63)
NODES = ("node2", "n1.example.com", "n" * 63)

# Added this session by other branches that land in the same merge (pcs >= 0.11 moves, pcs
# version detection, predictions from the CIB, the corosync-only cluster's remedy): allowed now.
UPCOMING: tuple[Argv, ...] = (
    ("pcs", "--version"), ("cibadmin", "--query"), ("crm_simulate", "--xml-pipe", "--simulate"),
    ("systemctl", "start", "corosync"), ("systemctl", "start", "pve-cluster"),
    *(("pcs", "resource", "move-with-constraint", r, n) for r in RESOURCES for n in NODES),
)

DENIED: tuple[Argv, ...] = (
    # issue 16: each of these was allowed by the wildcard version of the file
    ("crm_simulate", "--live-check", "--simulate", "--node-down", "node1", "--save-output",
     "/etc/cron.d/evil"),
    ("pcs", "node", "standby", "--all"),
    ("pcs", "resource", "cleanup", "--all", "--force"),
    ("pcs", "resource", "move", "vip", "node2", "--lifetime=P1Y"),
    # the --live-check forms, replaced by --xml-pipe (a CIB on stdin)
    ("crm_simulate", "--live-check", "--simulate"),
    ("crm_simulate", "--live-check", "--simulate", "--node-down", "node1"),
    # what the catalogue never does
    ("pcs",), ("crm_mon",), ("crm_simulate",), ("cibadmin",), ("systemctl",),
    ("pcs", "cluster", "stop"), ("pcs", "cluster", "stop", "--all"), ("pcs", "cluster", "destroy"),
    ("pcs", "cluster", "start", "--all"), ("pcs", "cluster", "start", "node1"),
    ("pcs", "resource", "delete", "vip"), ("pcs", "resource", "move", "vip"),
    ("pcs", "resource", "clear", "vip", "node2"), ("pcs", "resource", "ban", "vip", "node2"),
    ("pcs", "stonith", "fence", "node2"), ("pcs", "node", "maintenance", "node1"),
    ("pcs", "node", "standby"), ("pcs", "property", "set", "stonith-enabled=false"),
    ("cibadmin", "--replace", "--xml-file", "/tmp/cib.xml"), ("cibadmin", "--erase", "--force"),
    ("crm_simulate", "--simulate", "--save-output", "/etc/cron.d/evil"),
    ("crm_mon", "--one-shot", "--inactive", "--output-as=xml", "--output-to=/etc/passwd"),
    ("crm_mon", "--one-shot", "--inactive", "--output-as=html"),
    ("systemctl", "restart", "pacemaker"), ("systemctl", "stop", "corosync"),
    ("systemctl", "start", "pacemaker"), ("systemctl", "start", "corosync.service"),
    ("systemctl", "is-active", "pcsd"), ("systemctl", "edit", "corosync"),
    ("pcs", "node", "standby", "n" * 64),  # one longer than a name may be
    # crmadmin: only a node's state, never its other commands (-K kill, -E election, ...)
    ("crmadmin",), ("crmadmin", "--status=node1"), ("crmadmin", "-S", "node1"),
    ("crmadmin", "--status=node1", "--output-as=xml"), ("crmadmin", "-D"), ("crmadmin", "-K", "node1"),
    ("crmadmin", "--status=node1", "--output-as=xml", "--timeout=1s", "--output-to=/etc/passwd"),
    ("crmadmin", "--status=node1", "--output-as=text", "--timeout=1s"),
    ("crmadmin", "--status=_n", "--output-as=xml", "--timeout=1s"),  # not a configurable node name
    ("crmadmin", "--status=" + "n" * 64, "--output-as=xml", "--timeout=1s"),
)

# Names the bot never sends, in every name position: shell metacharacters, options, paths, empty.
BAD_NAMES = ("vip;id", "$(id)", "`id`", "vip|sh", "vip&", "vip>/etc/x", "*", "vip?", "vip\n", "vip\t",
             "vip\\", "'vip'", '"vip"', "-x", "--all", ".x", "../x", "/etc/x", "", "vip,node2", "n=1")


def catalogue(resources: Iterable[str | None], nodes: Iterable[str | None]) -> set[Argv]:
    """Every argv the remediation catalogue produces for these names (and their absence)."""
    out = set()
    pairs = [(r, n) for r in resources for n in nodes]
    for spec in REGISTRY:
        for step in spec.action.steps if spec.action is not None else ():
            for resource, node in pairs:
                try:
                    out.add(expand(step, Target(resource, node), {}))
                except Refused:  # a required name missing: the bot refuses before running
                    continue
    return out


def allowed_lines() -> set[Argv]:
    defaults = Commands()
    reads = {getattr(defaults, name) for name in Commands.model_fields} | {COROSYNC_DAEMONS}
    reads |= {controller_argv(n) for n in NODES}
    return reads | catalogue((None, *RESOURCES), (None, *NODES)) | set(UPCOMING)


def with_options(argv: Argv) -> list[Argv]:
    """The same line with something added: an option or a file at the end, or before it all."""
    return [(*argv, "--force"), (*argv, "-f", "/etc/shadow"), (*argv, "/etc/x"),
            (argv[0], "-f", "/tmp/cib.xml", *argv[1:]), (argv[0], "--debug", *argv[1:])]


def denied_lines() -> set[Argv]:
    allowed = allowed_lines()
    extra = {line for argv in allowed for line in with_options(argv)}
    bad = catalogue(BAD_NAMES, NODES[:1]) | catalogue(RESOURCES[:1], BAD_NAMES)
    bad |= {("pcs", "resource", "move-with-constraint", b, NODES[0]) for b in BAD_NAMES}
    bad |= {controller_argv(b) for b in BAD_NAMES}
    return (set(DENIED) | extra | bad) - allowed  # `cleanup vip` + "node=n" is legitimately allowed


def test_sample_names_are_ones_the_bot_accepts() -> None:
    assert all(_NAME.fullmatch(n) for n in RESOURCES + NODES)
    assert not any(_NAME.fullmatch(n) for n in BAD_NAMES)


def test_every_catalogue_step_is_covered() -> None:
    steps = {s.argv[:3] for spec in REGISTRY for s in (spec.action.steps if spec.action else ())}
    assert steps and {argv[:3] for argv in allowed_lines()} >= steps


# ---------------------------------------------------------------- the file itself


def aliases(text: str) -> dict[str, list[str]]:
    """{alias: [command, ...]}; entries are separated by a comma before the next path."""
    out = {}
    for found in re.finditer(r"^Cmnd_Alias (\w+) = \\\n((?:    .*\n)+)", text, re.MULTILINE):
        body = " ".join(line.strip().removesuffix("\\").strip() for line in found[2].splitlines())
        out[found[1]] = [c.strip() for c in re.split(r",\s+(?=/)", body)]
    return out


def test_defaults_rule_and_paths() -> None:
    text = SUDOERS.read_text()
    for line in ("Defaults:clusterbot !requiretty", "Defaults:clusterbot env_reset",
                 f'Defaults:clusterbot secure_path="{":".join(SECURE_PATH)}"'):
        assert line in text.splitlines()
    assert [ln for ln in text.splitlines() if ln.startswith("clusterbot ")] == [RULE]
    commands = [c for entries in aliases(text).values() for c in entries]
    assert set(aliases(text)) == {"CLUSTERBOT_READ", "CLUSTERBOT_FIX", "CLUSTERBOT_NAMED"}
    for command in commands:
        path, _, args = command.partition(" ")
        assert str(Path(path).parent) in SECURE_PATH, command  # where `sudo -n NAME` finds it
        assert args, f"{command}: a command without arguments in sudoers allows ANY arguments"
        assert "*" not in args, f"{command}: a sudoers `*` also matches options and extra arguments"
        assert args.startswith("^") == args.endswith("$"), f"{command}: a regex is anchored at both ends"


def test_visudo_accepts_it() -> None:
    visudo = shutil.which("visudo") or "/usr/sbin/visudo"
    if not Path(visudo).exists():
        pytest.skip("visudo is missing (Debian: apt-get install sudo)")
    done = subprocess.run([visudo, "-c", "-f", str(SUDOERS)], capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


# ---------------------------------------------------------------- the real sudo


@dataclass(frozen=True)
class Sudo:
    user: str
    root: Path  # the stand-in tree: ROOT/usr/sbin/pcs, ...

    def path(self, name: str) -> str:
        """Where sudo finds NAME for the bot's user: secure_path, inside the stand-in tree."""
        for directory in SECURE_PATH:
            if (candidate := self.root / directory.lstrip("/") / name).exists():
                return str(candidate)
        return shutil.which(name) or name  # not in the file at all: the machine's own, if any

    def allowing(self, lines: Iterable[Argv]) -> list[str]:
        """Those of LINES sudo allows (asked 4 at a time), as shell text."""
        ordered = sorted(lines)
        with ThreadPoolExecutor(4) as pool:
            verdicts = list(pool.map(self.allows, ordered))
        return [shlex.join(a) for a, ok in zip(ordered, verdicts, strict=True) if ok]

    def allows(self, argv: Argv, path: str | None = None) -> bool:
        done = subprocess.run(["sudo", "-l", "-U", self.user, path or self.path(argv[0]), *argv[1:]],
                              capture_output=True, text=True, timeout=30, check=False)
        return done.returncode == 0


def in_tree(text: str, root: Path) -> str:
    """The file with its commands in the stand-in tree ROOT; nothing else changed."""
    for old, new in ((" /usr/sbin/", f" {root}/usr/sbin/"), (" /usr/bin/", f" {root}/usr/bin/"),
                     (f'secure_path="{":".join(SECURE_PATH)}"',
                      f'secure_path="{":".join(str(root) + d for d in SECURE_PATH)}"')):
        assert old in text, f"{old!r} not found: update in_tree()"
        text = text.replace(old, new)
    return text


@pytest.fixture(scope="module")
def sudo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sudo]:
    if (why := sudokit.skip_reason()) is not None:
        pytest.skip(why)
    root = tmp_path_factory.mktemp("stand-ins")
    text = SUDOERS.read_text()
    for path in sorted(set(re.findall(r" (/usr/s?bin/[\w.-]+)", text))):
        stand_in = root / path.lstrip("/")
        stand_in.parent.mkdir(parents=True, exist_ok=True)
        stand_in.write_text("#!/bin/sh\nexit 0\n")
        stand_in.chmod(0o755)
    for directory in SECURE_PATH:
        (root / directory.lstrip("/")).mkdir(parents=True, exist_ok=True)
    with sudokit.installed(lambda u: in_tree(sudokit.for_user(text, u), root), "/usr/sbin/nologin") as user:
        yield Sudo(user, root)


def test_sudo_allows_every_line_the_bot_produces(sudo: Sudo) -> None:
    lines = allowed_lines()
    assert len(lines) > 50
    assert sorted(set(sudo.allowing(lines)) ^ {shlex.join(a) for a in lines}) == []  # none refused


def test_sudo_refuses_everything_else(sudo: Sudo) -> None:
    lines = denied_lines()
    assert len(lines) > 300  # the generated ones are there
    assert sudo.allowing(lines) == []


def test_sudo_refuses_the_same_program_elsewhere(sudo: Sudo, tmp_path: Path) -> None:
    """Path tricks: the allowed arguments, but a copy of the program, another program, a shell."""
    copy = tmp_path / "pcs"
    shutil.copy2(sudo.path("pcs"), copy)
    assert sudo.allows(("pcs", "--version"))  # the control: the real one is allowed
    assert not sudo.allows(("pcs", "--version"), path=str(copy))
    for argv in (("env", "pcs", "--version"), ("sh", "-c", "pcs --version"),
                 ("nice", "pcs", "--version"), ("sudo", "pcs", "--version")):
        assert not sudo.allows(argv), argv


def test_bare_names_resolve_through_secure_path_only(sudo: Sudo, tmp_path: Path) -> None:
    """As the bot runs it: `sudo -n pcs …` by that user, with a PATH that offers another pcs."""
    (tmp_path / "pcs").write_text("#!/bin/sh\nexit 0\n")
    (tmp_path / "pcs").chmod(0o755)
    tmp_path.chmod(0o755)
    done = subprocess.run(["runuser", "-u", sudo.user, "--", "sudo", "-n", "-l", "pcs", "--version"],
                          capture_output=True, text=True, timeout=30, check=False,
                          env={"PATH": f"{tmp_path}:/usr/sbin:/usr/bin:/sbin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{sudo.root}/usr/sbin/pcs --version"
