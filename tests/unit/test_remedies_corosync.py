"""The corosync-only remedy's pure parts: which steps run, and on which cluster kinds."""

from __future__ import annotations

import pytest

from bot.remedies import Plan, Target, probed_units, unit_installed, with_units
from commands import REGISTRY
from commands.start_corosync import ACTION


@pytest.mark.parametrize(("stdout", "installed"), [
    ("enabled\n", True), ("disabled\n", True), ("static\n", True), ("indirect\n", True),
    ("masked\n", False),  # an admin said never start it
    ("", False),  # "Failed to get unit file state for pve-cluster.service: No such file or directory"
    ("not-found\n", False),
])
def test_unit_installed_reads_systemctl_is_enabled(stdout: str, installed: bool) -> None:
    assert unit_installed(stdout) is installed


def test_pve_cluster_step_only_where_the_unit_is() -> None:
    assert probed_units(ACTION) == ("pve-cluster",)
    full = Plan("start-corosync", Target(node="node3"), "node3",
                (("systemctl", "start", "corosync"), ("systemctl", "start", "pve-cluster")), "why", None)
    assert with_units(ACTION, full, frozenset()).commands == (("systemctl", "start", "corosync"),)
    assert with_units(ACTION, full, frozenset({"pve-cluster"})).commands == full.commands


def test_each_remedy_is_for_one_kind_of_cluster() -> None:
    kinds = {s.name: s.action.kinds for s in REGISTRY if s.action is not None}
    assert kinds.pop("start-corosync") == ("corosync",)
    assert set(kinds.values()) == {("pacemaker",)}  # pcs and pcsd exist only there
