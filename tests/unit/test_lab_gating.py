"""When the lab tests run: root on Linux and asked for (CI or CLUSTERBOT_LAB=1), never by surprise."""

from __future__ import annotations

import pytest

from tests.lab.labkit import skip_reason

ROOT, USER = 0, 1000


@pytest.mark.parametrize(("env", "euid", "runs"), [
    ({}, ROOT, False),  # a root shell on a workstation: no apt, no namespaces by surprise
    ({"CI": "true"}, ROOT, True),  # .ci/run
    ({"CI": "1"}, ROOT, True),
    ({"CI": "false"}, ROOT, False),
    ({"CI": ""}, ROOT, False),
    ({"CLUSTERBOT_LAB": "1"}, ROOT, True),
    ({"CLUSTERBOT_LAB": "0"}, ROOT, False),
    ({"CI": "true", "CLUSTERBOT_SKIP_LAB": "1"}, ROOT, False),
    ({"CLUSTERBOT_LAB": "1", "CLUSTERBOT_SKIP_LAB": "1"}, ROOT, False),
    ({"CI": "true"}, USER, False),
    ({"CLUSTERBOT_LAB": "1"}, USER, False),
])
def test_lab_runs_only_as_root_and_when_asked(env: dict[str, str], euid: int, runs: bool) -> None:
    assert (skip_reason(env, euid, "linux") is None) is runs


def test_each_skip_says_how_to_run_them() -> None:
    assert "CLUSTERBOT_LAB=1" in (skip_reason({}, ROOT, "linux") or "")
    assert "root" in (skip_reason({"CI": "true"}, USER, "linux") or "")
    assert "Linux" in (skip_reason({"CI": "true"}, ROOT, "darwin") or "")
