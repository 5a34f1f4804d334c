"""`clusterbot render`: the real console script, as users run it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PCMK
from tests.unit.test_render_escaping import EVIL, assert_escaped, evil_capture


def run(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "bot", "render", *args], input=stdin,
                          capture_output=True, timeout=60, check=False)


def test_render_file_text() -> None:
    out = run(str(PCMK / "b_standby" / "node1.crm_mon.xml"), "--cluster", "prod-haproxy")
    assert out.returncode == 1  # a node in standby is a finding: unhealthy, as `status` says
    text = out.stdout.decode()
    assert "node2 is in standby" in text and "/cluster unstandby prod-haproxy node2" in text


def test_render_stdin_json() -> None:
    data = (PCMK / "d_two_nodes_down" / "node1.crm_mon.xml").read_bytes()
    out = run("-", "--format", "json", stdin=data)
    assert out.returncode == 1  # critical: no quorum
    doc = json.loads(out.stdout)
    assert doc["quorum"] is False and doc["dc"] == "node1"
    assert doc["findings"][0]["code"] == "no_quorum"


def test_render_bundled_example_blocks() -> None:
    out = run("--example", "node3-crashed", "--format", "blocks")
    assert out.returncode == 1
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


def test_cli_render_text_blocks_and_json(tmp_path: Path) -> None:
    """`clusterbot render` on the real capture: text and JSON as the agent wrote it, blocks escaped."""
    xml = tmp_path / "node1.crm_mon.xml"
    xml.write_bytes(evil_capture("node1"))
    assert (PCMK / "e_failed_actions" / "node1.crm_mon.xml").read_bytes() != xml.read_bytes()

    def render(fmt: str) -> str:
        out = subprocess.run([sys.executable, "-m", "bot", "render", str(xml), "--cluster", "prod-haproxy",
                              "--format", fmt], capture_output=True, timeout=60, check=False)
        assert out.returncode == 1, out.stderr  # failed actions: unhealthy
        return out.stdout.decode()

    text = render("text")
    assert f"({EVIL}) not cleaned up" in text and "&lt;" not in text
    blocks = render("blocks")
    assert_escaped(json.dumps(json.loads(blocks), ensure_ascii=False))
    assert EVIL in json.dumps(json.loads(render("json")), ensure_ascii=False)
