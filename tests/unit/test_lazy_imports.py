"""Each command line loads only what it uses (issue 17): `--help` nothing heavy, `render` no SSH
or settings, `status --format json` no Slack, web server, store or Block Kit rendering. Checked in
a fresh interpreter, by what ends up in sys.modules; the time it saves is in tests/bench."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = ("import sys, json, bot.cli\n"
         "try:\n    rc = bot.cli.main(sys.argv[1:])\nexcept SystemExit as e:\n    rc = e.code\n"
         "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\n")
HEAVY = ("asyncssh", "pydantic", "pydantic_settings", "lxml", "asyncio", "slack_sdk", "slack_bolt",
         "aiohttp", "sqlite3", "prometheus_client")


def loaded(*args: str, tmp: Path | None = None) -> set[str]:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, check=False, env={"PATH": "/usr/bin:/bin"})
    last = done.stderr.strip().splitlines()[-1]
    return set(json.loads(last))


def tops(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_help_loads_nothing_heavy() -> None:
    got = loaded("--help")
    assert tops(got) & set(HEAVY) == set()
    assert {m for m in got if m.startswith(("bot.", "commands"))} <= {"bot.cli", "bot.cli_run", "bot.ops",
                                                                       "bot.log", "bot.errors", "bot.version"}


def test_render_loads_no_ssh_settings_or_slack() -> None:
    got = loaded("render", "--example", "healthy")
    assert "lxml" in tops(got) and "bot.render.text" in got
    assert tops(got) & {"asyncssh", "pydantic", "pydantic_settings", "asyncio", "slack_sdk", "slack_bolt",
                        "aiohttp", "sqlite3"} == set()


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_status_loads_ssh_and_settings_but_no_slack_or_store(fmt: str, tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[[clusters]]\nname = "c1"\nnodes = [{ name = "n1", host = "127.0.0.1", port = 1 }]\n'
                      f'ssh_user = "x"\nssh_key = "{tmp_path}/key"\nknown_hosts = "{tmp_path}/kh"\n')
    got = loaded("status", "--config", str(config), "--format", fmt)
    assert {"asyncssh", "pydantic_settings", "lxml"} <= tops(got)  # what it does use
    assert tops(got) & {"slack_sdk", "slack_bolt", "aiohttp", "sqlite3", "prometheus_client"} == set()
    assert ("bot.render.blocks" in got) is False and ("bot.render.status" in got) is (fmt == "text")
    assert "cryptography.x509" not in got  # asyncssh's X.509 support: nothing OpenSSH uses


def test_asyncssh_finds_its_libraries_without_subprocesses() -> None:
    """The same answers as ctypes.util.find_library (which runs ldconfig, gcc and ld)."""
    probe = ("import subprocess, json\n"
             "spawned = []\n"
             "real = subprocess.Popen.__init__\n"
             "subprocess.Popen.__init__ = lambda self, *a, **k: spawned.append(a) or real(self, *a, **k)\n"
             "import bot.ssh\n"
             "subprocess.Popen.__init__ = real\n"
             "import asyncssh.crypto.pq as pq, asyncssh.crypto.umac as umac, ctypes.util\n"
             "slow = {n: ctypes.util.find_library(n) for n in ('nettle', 'oqs', 'liboqs')}\n"
             "print(json.dumps([len(spawned), getattr(umac, '_nettle_lib', None), pq._oqs_lib, slow]))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, check=True)
    spawned, nettle, oqs, slow = json.loads(done.stdout)
    assert spawned == 0
    assert nettle == slow["nettle"] and oqs == (slow["oqs"] or slow["liboqs"])


def test_no_pydantic_plugin_scan() -> None:
    """A pydantic plugin would see every setting (tokens too); scanning for them costs startup."""
    probe = ("import importlib.metadata as md\nscans = []\nreal = md.entry_points\n"
             "md.entry_points = lambda **kw: scans.append(kw) or real(**kw)\n"
             "from bot.settings import Settings\nSettings()\nprint(len(scans))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, check=True, env={"PATH": "/usr/bin:/bin"})
    assert done.stdout.strip() == "0"
