"""deploy/: the files an operator installs, checked against the code they describe.

Slack manifests (scopes, events, the slash command's usage hint), the systemd unit
(systemd-analyze verify, MemoryDenyWriteExecute under PR_SET_MDWE), the example TOML and env
files (they load). The sudoers file: tests/integration/test_sudoers.py (the real sudo).
"""

from __future__ import annotations

import ctypes
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.config_doc import env_var
from bot.settings import ClusterConfig, Commands, NodeConfig, Settings, load_settings
from bot.slack.app import COMMAND
from commands import REGISTRY

DEPLOY = Path(__file__).parents[2] / "deploy"

# ---------------------------------------------------------------- Slack app manifests

SCOPES = ["commands", "chat:write", "chat:write.public", "app_mentions:read", "channels:history",
          "groups:history", "usergroups:read"]
EVENTS = ["app_mention", "message.channels", "message.groups"]
EVENTS_URL = "https://YOUR-HOST/slack/events"


def manifest(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((DEPLOY / name).read_text())
    assert isinstance(doc, dict)
    return doc


def usage_hint() -> str:
    """What Slack shows after `/cluster`: every registered command's usage, in registry order."""
    return " | ".join(spec.usage.removeprefix(f"{COMMAND} ") for spec in REGISTRY)


@pytest.mark.parametrize("name", ["slack-app-manifest.yml", "slack-app-manifest.http.yml"])
def test_manifest_matches_the_code(name: str) -> None:
    m = manifest(name)
    assert m["_metadata"]["major_version"] == 1
    (slash,) = m["features"]["slash_commands"]
    assert slash["command"] == COMMAND == "/cluster"
    assert slash["usage_hint"] == usage_hint(), "update the usage_hint in both manifests"
    assert m["oauth_config"]["scopes"]["bot"] == SCOPES
    assert m["settings"]["event_subscriptions"]["bot_events"] == EVENTS
    assert m["settings"]["interactivity"]["is_enabled"] is True
    assert "user" not in m["oauth_config"]["scopes"]  # a bot, never acting as a user
    # Limits from Slack's manifest schema (v1).
    assert len(m["display_information"]["name"]) <= 35
    assert len(m["display_information"]["description"]) <= 140
    assert len(m["features"]["bot_user"]["display_name"]) <= 80
    assert len(slash["command"]) <= 32 and len(slash["usage_hint"]) <= 1000


def test_socket_and_http_manifests_differ_only_in_transport() -> None:
    socket, http = manifest("slack-app-manifest.yml"), manifest("slack-app-manifest.http.yml")
    assert socket["settings"]["socket_mode_enabled"] is True
    assert http["settings"]["socket_mode_enabled"] is False
    assert http["features"]["slash_commands"][0]["url"] == EVENTS_URL
    assert http["settings"]["event_subscriptions"]["request_url"] == EVENTS_URL
    assert http["settings"]["interactivity"]["request_url"] == EVENTS_URL
    assert "url" not in socket["features"]["slash_commands"][0]
    assert "request_url" not in socket["settings"]["event_subscriptions"]
    assert "request_url" not in socket["settings"]["interactivity"]

    def transport_free(m: dict[str, Any]) -> dict[str, Any]:
        m["features"]["slash_commands"][0].pop("url", None)
        m["settings"]["event_subscriptions"].pop("request_url", None)
        m["settings"]["interactivity"].pop("request_url", None)
        m["settings"].pop("socket_mode_enabled")
        return m

    assert transport_free(socket) == transport_free(http)


# ---------------------------------------------------------------- systemd unit

UNIT = DEPLOY / "clusterbot.service"
EXEC_START = "ExecStart=/opt/clusterbot/.venv/bin/clusterbot run --config /etc/clusterbot/clusterbot.toml"
SYSTEMD_HINT = "systemd-analyze is missing (Debian: apt-get install systemd)"


def unit_settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def verify(unit_text: str, tmp_path: Path) -> list[str]:
    """systemd-analyze verify on a copy; the lines it printed about that copy."""
    copy = tmp_path / "clusterbot.service"
    copy.write_text(unit_text)
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", str(copy)],
                          capture_output=True, text=True, timeout=60, check=False)
    about_us = [ln for ln in (done.stdout + done.stderr).splitlines() if "clusterbot.service" in ln]
    if done.returncode != 0:
        about_us.append(f"exit status {done.returncode}: {done.stderr.strip()}")
    return about_us


def runnable_copy() -> str:
    """The unit with ExecStart pointed at /bin/true: verify refuses a missing executable, and
    CI has no /opt/clusterbot. Nothing else changes."""
    text = UNIT.read_text()
    assert text.count(EXEC_START + "\n") == 1 and text.count("ExecStart=") == 1
    return text.replace(EXEC_START, "ExecStart=/bin/true")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason=SYSTEMD_HINT)
def test_unit_verifies(tmp_path: Path) -> None:
    assert verify(runnable_copy(), tmp_path) == []


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason=SYSTEMD_HINT)
def test_verify_would_catch_a_typo(tmp_path: Path) -> None:
    """systemd only warns about unknown keys (exit 0): verify() must still report them."""
    broken = runnable_copy().replace("NoNewPrivileges=yes", "NoNewPrivilege=yes")
    assert any("NoNewPrivilege" in line for line in verify(broken, tmp_path))


def test_unit_hardening_and_paths() -> None:
    s = unit_settings()
    expected = {
        "User": "clusterbot", "Group": "clusterbot", "EnvironmentFile": "/etc/clusterbot/clusterbot.env",
        "Restart": "on-failure", "RestartSec": "5", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
        "ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes", "ProtectControlGroups": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "StateDirectory": "clusterbot",
        "ReadOnlyPaths": "/etc/clusterbot", "CapabilityBoundingSet": "", "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes", "SystemCallFilter": "@system-service",
    }
    assert {k: s.get(k, ["<missing>"])[-1] for k in expected} == expected
    assert "CLUSTERBOT_STATE_DIR=/var/lib/clusterbot" in s["Environment"]
    assert f"ExecStart={s['ExecStart'][0]}" == EXEC_START


def test_exec_start_parses_with_the_real_cli() -> None:
    from bot.cli import _parser

    args = _parser().parse_args(shlex.split(EXEC_START.removeprefix("ExecStart="))[1:])
    assert args.command == "run" and args.config == "/etc/clusterbot/clusterbot.toml"


MDWE_PROBE = textwrap.dedent("""
    import ctypes, mmap, sys
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
        sys.exit(77)
    try:
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        sys.exit("MDWE is not in force: a W+X mapping succeeded")
    except PermissionError:
        pass
    import asyncio, sqlite3
    import aiohttp, asyncssh, lxml.etree, prometheus_client, pydantic_settings, slack_bolt
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    key = asyncssh.generate_private_key("ssh-ed25519")
    key.sign(b"x", b"ssh-ed25519")
    Ed25519PrivateKey.generate().sign(b"x")
    AESGCM(AESGCM.generate_key(bit_length=256)).encrypt(b"0" * 12, b"data", None)
    lxml.etree.fromstring(b"<crm_mon><nodes/></crm_mon>")
    sqlite3.connect(":memory:").execute("select 1")
    import bot.server, bot.ops_http
    print("ok")
""")


def test_memory_deny_write_execute_keeps_the_bot_working() -> None:
    """What MemoryDenyWriteExecute=yes enforces, via the kernel's PR_SET_MDWE (Linux >= 6.3)."""
    if sys.platform != "linux":
        pytest.skip("PR_SET_MDWE is Linux-only")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(66, 0, 0, 0, 0) < 0:  # PR_GET_MDWE in this process: does the kernel know it?
        pytest.skip("kernel has no PR_SET_MDWE (Linux < 6.3): cannot emulate MemoryDenyWriteExecute")
    done = subprocess.run([sys.executable, "-c", MDWE_PROBE], capture_output=True, text=True,
                          timeout=120, check=False, cwd=Path(__file__).parents[2],
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


# ---------------------------------------------------------------- example configuration


def mentioned(text: str, key: str) -> bool:
    """`key = ...` as a line (maybe commented out), inside an inline table, or a table header."""
    k = re.escape(key)
    return re.search(rf"(^|[\s{{,#]){k}\s*=|^\[\[?([a-z_]+\.)*{k}\]", text, re.MULTILINE) is not None


def test_example_toml_loads_and_mentions_every_key() -> None:
    path = DEPLOY / "clusterbot.example.toml"
    s = load_settings(path)
    assert s.clusters and s.clusters[0].commands == Commands()  # the shown commands are the defaults
    text = path.read_text()
    for model in (Settings, ClusterConfig, NodeConfig, Commands):
        missing = [k for k in model.model_fields if not mentioned(text, k)]
        assert missing == [], f"{model.__name__} keys missing from the example: {missing}"


def env_example() -> dict[str, tuple[str, bool]]:
    """{KEY: (value, commented out)} from the env example."""
    out = {}
    for line in (DEPLOY / "clusterbot.env.example").read_text().splitlines():
        found = re.fullmatch(r"(#?)([A-Z][A-Z0-9_]*)=(.*)", line)
        if found:
            out[found[2]] = (found[3], bool(found[1]))
    return out


def test_env_example_names_real_settings_and_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    known = {env_var(Settings, name, f).strip("`"): name for name, f in Settings.model_fields.items()}
    entries = env_example()
    unknown = sorted(set(entries) - set(known))
    assert unknown == [], f"not settings: {unknown}"
    for secret in Settings.SECRET_FIELDS:
        assert env_var(Settings, secret, Settings.model_fields[secret]).strip("`") in entries
    for key, (value, commented) in entries.items():
        if not commented:
            monkeypatch.setenv(key, value)
    s = load_settings(None)
    assert s.slack_bot_token is not None and s.slack_bot_token.get_secret_value().startswith("xoxb-")


# ---------------------------------------------------------------- the alert agent's shell

AGENT = DEPLOY / "alert-agent" / "clusterbot-alert.sh"


def test_alert_agent_parses_and_is_executable() -> None:
    assert os.access(AGENT, os.X_OK), "pcs alert create needs an executable agent"
    done = subprocess.run(["bash", "-n", str(AGENT)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is missing (Debian: shellcheck)")
def test_alert_agent_passes_shellcheck() -> None:
    done = subprocess.run(["shellcheck", "--severity=info", str(AGENT)], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stdout
