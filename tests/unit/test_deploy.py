"""deploy/: the files an operator installs, checked against the code they describe.

Slack manifests (scopes, events, the slash command's usage hint), the systemd unit
(systemd-analyze verify, MemoryDenyWriteExecute under PR_SET_MDWE), the example TOML and env
files (they load), and the sudoers file (visudo, and every command the bot runs is allowed).
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


# ---------------------------------------------------------------- sudoers

SUDOERS = DEPLOY / "sudoers.d" / "clusterbot"
SECURE_PATH = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")
ALLOWED = {
    "/usr/sbin/crm_mon --one-shot --inactive --output-as=xml", "/usr/sbin/crm_mon -1 -r -X",
    "/usr/bin/systemctl is-active corosync pacemaker pcsd", "/usr/sbin/pacemakerd --version",
    "/usr/bin/systemctl is-active corosync",  # corosync-only clusters (kind = "corosync")
    "/usr/sbin/corosync-quorumtool -s", "/usr/sbin/corosync-cfgtool -s",
    "/usr/sbin/cibadmin --query", "/usr/sbin/crm_simulate --xml-pipe --simulate",
    "/usr/sbin/pcs resource cleanup", "/usr/sbin/pcs cluster start",
    "/usr/bin/systemctl restart corosync", "/usr/bin/systemctl restart pcsd",
    # corosync-only clusters: start-corosync, and its probe for Proxmox's pve-cluster unit
    "/usr/bin/systemctl start corosync", "/usr/bin/systemctl start pve-cluster",
    "/usr/bin/systemctl is-enabled pve-cluster",
    "/usr/sbin/pcs resource cleanup *", "/usr/sbin/pcs node standby *", "/usr/sbin/pcs node unstandby *",
    "/usr/sbin/pcs resource move *", "/usr/sbin/pcs resource move-with-constraint *",
    "/usr/sbin/pcs resource clear *",
}
# bot/remediation.py asks crm_simulate for a prediction before a fix (Remediation._predict).
PREDICTIONS = [("cibadmin", "--query"), ("crm_simulate", "--xml-pipe", "--simulate"),
               # and whether a step's unit is installed (Remediation._plan: pve-cluster)
               ("systemctl", "is-enabled", "pve-cluster")]
NEVER = [("pcs", "cluster", "stop"), ("pcs", "cluster", "destroy"), ("pcs", "resource", "delete", "vip"),
         ("pcs", "stonith", "fence", "node2"), ("systemctl", "restart", "pacemaker"), ("crm_mon",),
         ("crm_mon", "--one-shot", "--inactive", "--output-as=xml", "--output-to=/etc/passwd"),
         ("systemctl", "is-active", "pcsd"), ("pcs",), ("pcs", "node", "maintenance", "node1"),
         ("bash", "-c", "id"), ("crm_simulate",),
         ("crm_simulate", "--live-check", "--simulate", "--save-output=/etc/x"),
         ("crm_simulate", "--xml-pipe", "--simulate", "--save-output=/etc/x"),
         ("cibadmin", "--replace", "--xml-file", "/tmp/x"), ("pcs", "-f", "/etc/x", "resource", "clear", "x")]


def catalogue() -> list[tuple[str, ...]]:
    """Every argv the remediation commands can send, for every resource/node combination."""
    from bot.remedies import Refused, Target, expand

    out = []
    for spec in REGISTRY:
        for step in spec.action.steps if spec.action is not None else ():
            # every pcs version's form of the step (pcs 0.11 moves with move-with-constraint)
            for pcs in (None, *(since for since, _ in step.since_pcs)):
                for resource in (None, "virtual_ip_2"):
                    for node in (None, "node2"):
                        try:
                            out.append(expand(step, Target(resource, node), {}, pcs))
                        except Refused:  # a required name missing: the bot refuses before running
                            continue
    assert out, "no remediation steps found in commands.REGISTRY"
    return sorted(set(out))


def sudoers_commands(text: str) -> list[str]:
    """Every command in a Cmnd_Alias (wildcard form: no commas inside a command)."""
    out = []
    for line in text.replace("\\\n", " ").splitlines():
        if line.startswith("Cmnd_Alias "):
            out += [" ".join(c.split()) for c in line.partition("=")[2].split(",")]
    return out


def allowed(argv: tuple[str, ...], commands: list[str]) -> bool:
    """sudoers semantics, simplified: secure_path lookup, then exact args or a trailing ` *`."""
    args = " ".join(argv[1:])
    for command in commands:
        path, _, pattern = command.partition(" ")
        if Path(path).name != argv[0] or str(Path(path).parent) not in SECURE_PATH:
            continue
        if pattern == args or (pattern.endswith(" *") and args.startswith(pattern[:-1])
                               and len(args) > len(pattern) - 1):
            return True
    return False


def test_sudoers_allows_exactly_the_documented_set() -> None:
    assert set(sudoers_commands(SUDOERS.read_text())) == ALLOWED


def test_every_read_command_is_allowed() -> None:
    commands = sudoers_commands(SUDOERS.read_text())
    defaults = Commands()
    for name in Commands.model_fields:
        argv = getattr(defaults, name)
        assert allowed(argv, commands), f"sudoers does not allow the {name} command {shlex.join(argv)}"


def test_every_remediation_step_is_allowed_and_nothing_dangerous() -> None:
    commands = sudoers_commands(SUDOERS.read_text())
    assert [shlex.join(a) for a in catalogue() + PREDICTIONS if not allowed(a, commands)] == []
    assert [shlex.join(a) for a in NEVER if allowed(a, commands)] == []


def test_sudoers_defaults_for_the_bot_user() -> None:
    text = SUDOERS.read_text()
    for line in ("Defaults:clusterbot !requiretty", "Defaults:clusterbot env_reset",
                 f'Defaults:clusterbot secure_path="{":".join(SECURE_PATH)}"'):
        assert line in text.splitlines()
    rule = [ln for ln in text.splitlines() if ln.startswith("clusterbot ")]
    assert rule == ["clusterbot ALL = (root) NOPASSWD: CLUSTERBOT_READ, CLUSTERBOT_FIX, CLUSTERBOT_NAMED"]


def regex_variant(text: str) -> str:
    """The stricter sudo >= 1.9.10 form documented in the file: swap the wildcard alias for it."""
    without = re.sub(r"^Cmnd_Alias CLUSTERBOT_NAMED = \\\n(?: {4}.*\n)+", "", text, flags=re.MULTILINE)
    assert without != text
    return re.sub(r"^#re# ", "", without, flags=re.MULTILINE)


def regex_rules() -> list[tuple[str, re.Pattern[str]]]:
    """(command name, argument regex) from the commented regex alias."""
    found = re.findall(r"^#re# +/usr/s?bin/(\S+) (\^.*\$)(?:, \\)?$", SUDOERS.read_text(), re.MULTILINE)
    return [(name, re.compile(rx)) for name, rx in found]


def regex_allows(argv: tuple[str, ...]) -> bool:
    return any(name == argv[0] and rx.fullmatch(" ".join(argv[1:])) for name, rx in regex_rules())


def test_regex_variant_allows_the_catalogue_and_no_options() -> None:
    assert len(regex_rules()) == 7  # cleanup x2, standby, unstandby, move, move-with-constraint, clear
    exact = [c for c in ALLOWED if not c.endswith(" *")]
    named = [a for a in catalogue() + PREDICTIONS if not allowed(a, exact)]  # what the wildcards serve
    assert named and [shlex.join(a) for a in named if not regex_allows(a)] == []
    for evil in (("pcs", "node", "standby", "--all"), ("pcs", "node", "standby", "node1", "--all"),
                 ("pcs", "resource", "cleanup", "vip", "-f", "/etc/x"), ("pcs", "node", "standby", "a\\b"),
                 ("pcs", "resource", "move", "vip", "node3", "--wait"), ("pcs", "node", "standby", "-x"),
                 ("pcs", "resource", "move-with-constraint", "vip", "node3", "lifetime=P1D"),
                 ("pcs", "resource", "cleanup", "node=n", "--force"),
                 ("crm_simulate", "--live-check", "--simulate", "--node-down", "n", "--save-output", "/x")):
        assert not regex_allows(evil), evil


VISUDO_HINT = "visudo is missing (Debian: apt-get install sudo)"


@pytest.mark.skipif(shutil.which("visudo") is None and not Path("/usr/sbin/visudo").exists(),
                    reason=VISUDO_HINT)
@pytest.mark.parametrize("variant", ["wildcard", "regex"])
def test_visudo_accepts_it(variant: str, tmp_path: Path) -> None:
    text = SUDOERS.read_text()
    path = SUDOERS
    if variant == "regex":
        path = tmp_path / "clusterbot"
        path.write_text(regex_variant(text))
    visudo = shutil.which("visudo") or "/usr/sbin/visudo"
    done = subprocess.run([visudo, "-c", "-f", str(path)], capture_output=True, text=True, timeout=30,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr


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
