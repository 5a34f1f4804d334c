"""deploy/sudoers.d/clusterbot on the real cluster, as in production: the bot logs in as an
unprivileged user with `sudo = true`. Everything it reads, and the fixes' tools, run through the
real sudo with the real Pacemaker binaries; a command line outside the file is refused and changes
nothing. (tests/integration/test_sudoers.py proves every line with `sudo -l`; this proves that
what sudo allows is what the bot actually runs.)
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from bot.collect import Ask, Collector
from bot.errors import SudoRefused
from bot.pacemaker.snapshot import snapshot
from bot.settings import ClusterConfig
from tests import sudokit
from tests.integration.buildkit import sh
from tests.lab import labkit
from tests.lab.labkit import DAEMONS_UP, NODES

SKIP = sudokit.skip_reason() or (None if shutil.which("setfacl") else "needs setfacl (Debian: acl)")
pytestmark = pytest.mark.skipif(SKIP is not None, reason=SKIP or "")


@contextmanager
def in_node_shadows(user: str) -> Iterator[None]:
    """Each node sees its own copy of /etc/shadow (deploy/lab/up.sh); sudo's PAM account check and
    sshd look the user up there. Edited in place: the copy is bind-mounted into the node."""
    files = [labkit.CONFIG.parent / "nodes" / node / "shadow" for node in NODES]
    before = {f: f.read_text() for f in files}
    try:
        for f in files:
            with f.open("a") as fh:
                fh.write(f"{user}:*:20000:0:99999:7:::\n")  # no password, not locked
        yield
    finally:
        for f, text in before.items():
            with f.open("r+") as fh:
                fh.write(text)
                fh.truncate()


@contextmanager
def may_read_authorized_keys(user: str) -> Iterator[None]:
    """The lab's sshd reads one root-owned authorized_keys for every user, and reads it as that
    user: let this one user through (ACL entries, removed afterwards)."""
    keys = labkit.CONFIG.parent / "ssh" / "authorized_keys"
    grants = [(keys.parent.parent, "x"), (keys.parent, "x"), (keys, "r")]
    try:
        for path, perm in grants:
            sh("setfacl", "-m", f"u:{user}:{perm}", path)
        yield
    finally:
        for path, _ in grants:
            subprocess.run(["setfacl", "-x", f"u:{user}", str(path)], capture_output=True, check=False)


@pytest.fixture(scope="module")
def bot_user(lab: None) -> Iterator[str]:
    text = sudokit.SUDOERS.read_text()
    with sudokit.installed(lambda u: sudokit.for_user(text, u), "/bin/sh") as user, \
            in_node_shadows(user), may_read_authorized_keys(user):
        yield user


@pytest.fixture
def as_bot(cluster: ClusterConfig, bot_user: str) -> ClusterConfig:
    """The lab's cluster as production has it: the bot's own user, every command through sudo."""
    return cluster.model_copy(update={"ssh_user": bot_user, "sudo": True})


async def test_everything_the_bot_reads_goes_through_sudo(collector: Collector,
                                                          as_bot: ClusterConfig) -> None:
    report = await collector.collect(as_bot, ask=Ask.ALL)
    for result in report.results:
        assert result.ok and result.error is None, (result.node, result.error)
        assert result.daemons is not None and result.daemons.states == DAEMONS_UP, result.node
        assert result.corosync is not None and result.corosync_error is None, result.corosync_error
        assert result.controller is not None, result.node  # crmadmin: is Pacemaker acting?
    assert report.healthy and labkit.vips_home(report)
    assert snapshot(report, as_bot.expectations).pacemaker_acting is False
    # The control: the same user without sudo gets no answer from Pacemaker.
    plain = await collector.collect(as_bot.model_copy(update={"sudo": False}), ask=Ask.ALL)
    assert not any(r.ok for r in plain.results)


async def test_fix_tools_run_through_sudo_and_nothing_else(collector: Collector, as_bot: ClusterConfig,
                                                           cluster: ClusterConfig) -> None:
    cleanup = await collector.run(as_bot, "node1", ("pcs", "resource", "cleanup", "virtual_ip_1"))
    assert cleanup.exit_status == 0, cleanup.stderr
    cib = await collector.run(as_bot, "node1", ("cibadmin", "--query"))
    assert cib.exit_status == 0 and cib.stdout.lstrip().startswith("<cib"), cib.stderr
    pcs = await collector.run(as_bot, "node1", ("pcs", "--version"))
    assert pcs.exit_status == 0 and pcs.stdout.startswith("0.11."), pcs.stdout
    for refused in (("pcs", "node", "standby", "--all"), ("pcs", "node", "standby", "node2", "--wait"),
                    ("crm_simulate", "--live-check", "--simulate", "--save-output", "/tmp/cblab-evil")):
        with pytest.raises(SudoRefused):
            await collector.run(as_bot, "node1", refused)
    report = await collector.collect(cluster, ask=Ask.ALL)  # as root: nothing changed
    view = report.reference
    assert view is not None and not any(n.standby for n in view.nodes)
    assert report.healthy and labkit.vips_home(report)
