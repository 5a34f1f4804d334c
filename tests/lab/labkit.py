"""Driving and observing the lab: deploy/lab scripts for breaking and healing, the bot's own
collector over real SSH for observing, and bounded polling instead of sleeps."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bot.collect import Collector
from bot.pacemaker.health import Finding, Severity
from bot.pacemaker.merge import ClusterReport
from bot.settings import ClusterConfig, Settings, load_settings

LAB_DIR = Path(__file__).resolve().parents[2] / "deploy" / "lab"
CONFIG = Path("/var/lib/cblab/clusterbot.toml")  # written by up.sh
NODES = ("node1", "node2", "node3")
VIPS = {"virtual_ip_1": "node1", "virtual_ip_2": "node2", "virtual_ip_3": "node3"}
CLONE = "loadbalancer-clone"
DAEMONS_UP = (("corosync", "active"), ("pacemaker", "active"), ("pcsd", "active"))
UP_TIMEOUT_S = 900.0  # up.sh, including apt on a fresh machine
SCRIPT_TIMEOUT_S = 120.0  # any one nodectl.sh call
HEAL_TIMEOUT_S = 90.0
POLL_PAUSE_S = 0.1  # between two collections while waiting: pacing only, never synchronisation
OUTPUT_TAIL_LINES = 40
# The lab has fixed names machine-wide: a second test session's up.sh/down.sh would tear down
# ours mid-test. Sessions take turns; the kernel drops the lock if a session dies.
LOCK_FILE = Path("/run/lock/cblab-tests.lock")
LOCK_WAIT_S = 1800.0


def skip_reason(env: Mapping[str, str] = os.environ, euid: int | None = None,
                platform: str = sys.platform) -> str | None:
    """Why lab tests do not run here, or None when they do. They install Debian packages and
    build network namespaces, so a root shell on a workstation does not get them by surprise:
    they need root *and* an opt-in, CI (any value but "", "0", "false") or CLUSTERBOT_LAB=1."""
    if env.get("CLUSTERBOT_SKIP_LAB") == "1":
        return "lab tests: CLUSTERBOT_SKIP_LAB=1 is set"
    if not platform.startswith("linux"):
        return f"lab tests need Linux (network namespaces); this is {platform}"
    if (os.geteuid() if euid is None else euid) != 0:
        return "lab tests need root (network namespaces, mounts, veths, apt): run pytest as root"
    if env.get("CI", "").lower() in ("", "0", "false") and env.get("CLUSTERBOT_LAB") != "1":
        return ("lab tests start a 3-node cluster (apt, network namespaces): set CLUSTERBOT_LAB=1 "
                "to run them (CI runs them)")
    return None


class LabError(Exception):
    """A lab script failed; the message carries the tail of its output."""


def tail(text: str, lines: int = OUTPUT_TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run_script(script: str, *args: str, env: dict[str, str] | None = None,
               timeout: float = SCRIPT_TIMEOUT_S, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run deploy/lab/SCRIPT with bash; stdout and stderr together, as a person would read them."""
    argv = ["bash", str(LAB_DIR / script), *args]
    try:
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=timeout, env={**os.environ, **(env or {})}, check=False)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        raise LabError(f"{script} {' '.join(args)} timed out after {timeout:.0f}s:\n{tail(out)}") from exc
    if check and done.returncode != 0:
        raise LabError(f"{script} {' '.join(args)} exited {done.returncode}:\n{tail(done.stdout)}")
    return done


@contextmanager
def exclusive(timeout: float = LOCK_WAIT_S) -> Iterator[None]:
    """Hold the machine's lab for this test session (waits for another session to finish)."""
    import fcntl  # Unix only: imported here so that elsewhere the lab tests skip, not crash

    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    with LOCK_FILE.open("a+") as fh:
        deadline = time.monotonic() + timeout
        while not _try_lock(fh.fileno()):
            if time.monotonic() >= deadline:
                fh.seek(0)
                raise LabError(f"the lab stayed in use by another test session ({fh.read().strip()}) "
                               f"for {timeout:g}s; see {LOCK_FILE}")
            time.sleep(1.0)  # the other session holds it for minutes: no need to spin
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}: {' '.join(sys.argv)}\n")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _try_lock(fd: int) -> bool:
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def lab_up() -> str:
    """`LAB_TOKEN_MS=1000 bash deploy/lab/up.sh` (pcsd on: the runbook's resync restarts it)."""
    return run_script("up.sh", env={"LAB_TOKEN_MS": "1000", "LAB_PCSD": "1"}, timeout=UP_TIMEOUT_S).stdout


def lab_down() -> str:
    return run_script("down.sh", timeout=SCRIPT_TIMEOUT_S).stdout


def nodectl(node: str, action: str, *args: str, check: bool = True,
            timeout: float = SCRIPT_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return run_script("nodectl.sh", node, action, *args, check=check, timeout=timeout)


async def anodectl(node: str, action: str, *args: str, check: bool = True) -> str:
    """nodectl from a test's event loop, without blocking the bot running on it."""
    done = await asyncio.to_thread(nodectl, node, action, *args, check=check)
    return done.stdout


def wait(node: str, *conditions: str, timeout: float = HEAL_TIMEOUT_S) -> None:
    """`nodectl.sh NODE wait`: poll crm_mon inside NODE until every condition holds."""
    done = nodectl(node, "wait", "--timeout", f"{timeout:g}", *conditions, check=False,
                   timeout=timeout + 30)
    if done.returncode != 0:
        raise LabError(f"{node}: not {' '.join(conditions)} within {timeout:g}s:\n{tail(done.stdout)}")


def holds(node: str, *conditions: str) -> bool:
    """The conditions hold right now on NODE (one crm_mon, no waiting)."""
    return nodectl(node, "wait", "--timeout", "0", *conditions, check=False).returncode == 0


def heal() -> None:
    """Back to the baseline every test starts from: all daemons up, no standby, no maintenance,
    no failed actions, virtual_ip_N on nodeN and the clone everywhere, as every node sees it."""
    for node in NODES:
        nodectl(node, "exec", "systemctl", "start", "sshd", "pacemaker", "pcsd")
    wait("node1", "online:" + ",".join(NODES), "quorum", "dc")
    crm = ("exec", "crm_attribute")
    nodectl("node1", *crm, "--type", "crm_config", "--name", "maintenance-mode", "--delete")
    for node in NODES:
        nodectl(node, "unstandby")
        for lifetime in ("forever", "reboot"):
            nodectl("node1", *crm, "--node", node, "--name", "maintenance", "--lifetime", lifetime,
                    "--delete")
    if not holds("node1", "no-failures"):
        nodectl("node1", "exec", "crm_resource", "--cleanup")
    for node in NODES:
        wait(node, "healthy")


def settings(state_dir: Path, **overrides: Any) -> Settings:
    """The lab's bot config (up.sh writes it) with this test's own state directory."""
    return load_settings(CONFIG, state_dir=state_dir, **overrides)


def fresh_ssh(cluster: ClusterConfig, *command: str) -> float:
    """Seconds for one command on node1 over a new ssh connection (OpenSSH client, pinned host
    key): the manual step the bot is compared with."""
    node = cluster.nodes[0]
    argv = ["ssh", "-F", "/dev/null", "-i", str(cluster.ssh_key), "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={cluster.known_hosts}", f"root@{node.host}", *command]
    t0 = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    elapsed = time.perf_counter() - t0
    assert done.returncode == 0, done.stderr
    assert "virtual_ip_1" in done.stdout
    return elapsed


def cold_status(*extra: str) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """`clusterbot status lab --format json` as a cron job runs it: a new process, new
    connections. Returns its wall time, its CPU time and what it did."""
    import resource
    exe = Path(sys.executable).with_name("clusterbot")
    argv = [str(exe)] if exe.exists() else [sys.executable, "-m", "bot"]
    argv += ["status", "lab", "--format", "json", "--config", str(CONFIG), *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu, done


# ---------------------------------------------------------------- observing with the bot


def where(report: ClusterReport, resource: str) -> tuple[str, ...]:
    assert report.reference is not None, f"no node could report the cluster: {describe(report)}"
    return report.reference.running_on(resource)


def finding(report: ClusterReport, code: str, subject: str) -> Finding | None:
    return next((f for f in report.findings if f.key == (code, subject)), None)


def keys(report: ClusterReport, above: Severity | None = None) -> list[tuple[str, str]]:
    return [f.key for f in report.findings if above is None or f.severity > above]


def describe(report: ClusterReport) -> str:
    """One line for failure messages: the findings and where the VIPs are."""
    found = ", ".join(f"{f.severity.label}:{f.code}:{f.subject}" for f in report.findings) or "none"
    view = report.reference
    placed = ("; " + ", ".join(f"{v}@{'+'.join(view.running_on(v)) or '-'}" for v in VIPS)
              if view is not None else "")
    return f"reference={report.reference_node} healthy={report.healthy} findings=[{found}]{placed}"


async def report_until(collector: Collector, cluster: ClusterConfig,
                       condition: Callable[[ClusterReport], bool], what: str,
                       timeout: float = 60.0) -> ClusterReport:
    """Collect (real SSH, every node) until CONDITION holds; fail after TIMEOUT seconds."""
    deadline = time.monotonic() + timeout
    while True:
        report = await collector.collect(cluster)
        if condition(report):
            return report
        if time.monotonic() >= deadline:
            raise AssertionError(f"lab: not {what} within {timeout:g}s; last report: {describe(report)}")
        await asyncio.sleep(POLL_PAUSE_S)


def vips_home(report: ClusterReport) -> bool:
    return all(where(report, vip) == (node,) for vip, node in VIPS.items())
