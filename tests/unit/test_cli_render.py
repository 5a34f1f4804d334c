"""`clusterbot render`: the real console script, as users run it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import PCMK


def run(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "bot", "render", *args], input=stdin,
                          capture_output=True, timeout=60, check=False)


def test_render_file_text() -> None:
    out = run(str(PCMK / "b_standby" / "node1.crm_mon.xml"), "--cluster", "prod-haproxy")
    assert out.returncode == 0
    text = out.stdout.decode()
    assert "node2 is in standby" in text and "/cluster unstandby prod-haproxy node2" in text


def test_render_stdin_json() -> None:
    data = (PCMK / "d_two_nodes_down" / "node1.crm_mon.xml").read_bytes()
    out = run("-", "--format", "json", stdin=data)
    assert out.returncode == 0
    doc = json.loads(out.stdout)
    assert doc["quorum"] is False and doc["dc"] == "node1"
    assert doc["findings"][0]["code"] == "no_quorum"


def test_render_bundled_example_blocks() -> None:
    out = run("--example", "node3-crashed", "--format", "blocks")
    assert out.returncode == 0
    payload = json.loads(out.stdout)
    assert payload["text"] and len(payload["blocks"]) <= 50


@pytest.mark.parametrize("stdin,needle", [
    (b"", "empty crm_mon output"),
    (b"<pacemaker-result", "not well-formed XML"),
    (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a SYSTEM "file:///etc/passwd">]><x>&a;</x>', "DOCTYPE"),
])
def test_bad_input_exit_2_one_line(stdin: bytes, needle: str) -> None:
    out = run("-", stdin=stdin)
    assert out.returncode == 2
    err = out.stderr.decode()
    assert err.count("\n") == 1 and needle in err and "Traceback" not in err
    assert out.stdout == b""


def test_missing_file() -> None:
    out = run("/nonexistent/file.xml")
    assert out.returncode == 2 and "cannot read /nonexistent/file.xml" in out.stderr.decode()
