"""Settings: the TOML file, CLUSTERBOT_* overrides, Slack secrets, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.settings import load_settings

ISSUE_EXAMPLE = """
[[clusters]]
name = "prod-haproxy"
nodes = ["prod-haproxy01.estuary.tech", { name = "node2", host = "10.0.0.12", port = 2222 }]
ssh_user = "clusterbot"
ssh_key = "/etc/clusterbot/id_ed25519"
known_hosts = "/etc/clusterbot/known_hosts"
sudo = true
vips = ["virtual_ip_1", "virtual_ip_2", "virtual_ip_3"]   # spread one per node
everywhere = ["loadbalancer-clone"]                      # must run on every online node
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "clusterbot.toml"
    path.write_text(text)
    return path


def test_the_documented_example(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, ISSUE_EXAMPLE))
    c = s.clusters[0]
    assert [(n.name, n.host, n.port) for n in c.nodes] == [
        ("prod-haproxy01.estuary.tech", "prod-haproxy01.estuary.tech", 22), ("node2", "10.0.0.12", 2222)]
    assert c.sudo and c.ssh_key == Path("/etc/clusterbot/id_ed25519")
    assert c.expectations.vips == ("virtual_ip_1", "virtual_ip_2", "virtual_ip_3")
    assert c.commands.crm_mon == ("crm_mon", "--one-shot", "--inactive", "--output-as=xml")
    assert s.connect_timeout_s == 5 and s.command_timeout_s == 15 and s.poll_interval_s == 5


def test_env_overrides_file_and_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLUSTERBOT_POLL_INTERVAL_S", "1.5")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-secret")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "shh")
    s = load_settings(write(tmp_path, "poll_interval_s = 9\n" + ISSUE_EXAMPLE))
    assert s.poll_interval_s == 1.5
    assert s.slack_bot_token is not None and s.slack_bot_token.get_secret_value() == "xoxb-secret"
    assert "xoxb-secret" not in repr(s) and "shh" not in str(s)


def test_config_path_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLUSTERBOT_CONFIG", str(write(tmp_path, ISSUE_EXAMPLE)))
    assert load_settings().clusters[0].name == "prod-haproxy"


@pytest.mark.parametrize("text,needle", [
    ('[[clusters]]\nname = "x"\nnodes = [{ name = "n", host = "h", port = 99999 }]\n',
     "clusters.0.nodes.0.port: Input should be less than or equal to 65535"),
    ('[[clusters]]\nname = "x; rm -rf /"\nnodes = ["a"]\n', "clusters.0.name: String should match pattern"),
    ('[[clusters]]\nname = "x"\nnodes = []\n', "clusters.0.nodes: "),
    ('[[clusters]]\nname = "x"\nnodes = ["a"]\nsshuser = "typo"\n',
     "clusters.0.sshuser: unknown key; did you mean 'ssh_user'?"),
    ('[[clusters]]\nname = "x"\nnodes = ["a", "a"]\n', "duplicate node names"),
    ('[[clusters]]\nname = "x"\nnodes = ["a"]\n[[clusters]]\nname = "x"\nnodes = ["b"]\n',
     "duplicate cluster names: x"),
    ('poll_interval_s = "soon"\n', "poll_interval_s: Input should be a valid number"),
    ("flap_window_s = inf\n", "flap_window_s: Input should be a finite number"),
    ("command_timeout_s = nan\n", "command_timeout_s: Input should be a finite number"),
    ("[[clusters]\n", "clusterbot.toml: "),
])
def test_mistakes_are_one_line_naming_the_key(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, text))
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_an_empty_environment_value_means_unset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `CLUSTERBOT_ALERT_CHANNEL=` in a systemd environment file must not blank the file's channel.
    monkeypatch.setenv("CLUSTERBOT_ALERT_CHANNEL", "")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "")
    s = load_settings(write(tmp_path, 'alert_channel = "C0ALERTS"\n' + ISSUE_EXAMPLE))
    assert s.alert_channel == "C0ALERTS" and s.slack_bot_token is None


@pytest.mark.parametrize("name,value", [
    ("CLUSTERBOT_POLL_INTERVAL_S", "abc"), ("CLUSTERBOT_FLAP_WINDOW_S", "inf"),
    ("CLUSTERBOT_MAX_CONCURRENCY", "0")])
def test_a_bad_environment_value_names_the_variable_not_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, ISSUE_EXAMPLE))
    assert str(err.value).startswith(f"environment {name}: ") and "clusterbot.toml" not in str(err.value)
