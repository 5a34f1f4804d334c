"""bot.early.guess_nodes: the node list a cold status connects to before validation. A guess
must give the very targets the validated settings give (else the pool opens its own), and a
broken file must give no guess rather than an error (validation reports it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.collect import Collector, target_for
from bot.early import guess_nodes
from bot.settings import load_settings
from bot.ssh import SshPool, SshTarget, build_command

LAB = """
connect_timeout_s = 3
[[clusters]]
name = "lab"
nodes = [{ name = "node1", host = "10.224.77.11", port = 22 },
         { name = "node2", host = "10.224.77.12", port = 2222 }]
ssh_user = "root"
ssh_key = "/k/id_ed25519"
known_hosts = "/k/known_hosts"
sudo = false
[[clusters]]
name = "bare"
nodes = ["db1", "db2"]
ssh_key = "/k/bare"
"""


def connections(path: Path, names: tuple[str, ...] = ()) -> list[tuple[object, ...]]:
    return [SshTarget(node=g.name, host=g.host, port=g.port, user=g.user, client_keys=(g.key,),
                      known_hosts=g.known_hosts, sudo=False,
                      connect_timeout_s=g.connect_timeout_s).connection
            for g in guess_nodes(path, names)]


def validated(path: Path, names: tuple[str, ...] = ()) -> list[tuple[object, ...]]:
    settings = load_settings(path)
    return [target_for(c, n, settings).connection for c in settings.clusters
            if not names or c.name in names for n in c.nodes]


@pytest.mark.parametrize("names", [(), ("lab",), ("bare",), ("nosuch",)])
def test_the_guess_is_what_validation_gives(tmp_path: Path, names: tuple[str, ...]) -> None:
    path = tmp_path / "c.toml"
    path.write_text(LAB)
    assert connections(path, names) == validated(path, names)
    assert len(connections(path, names)) == {(): 4, ("lab",): 2, ("bare",): 2, ("nosuch",): 0}[names]


def test_defaults_are_the_settings_defaults(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[[clusters]]\nname = "c"\nnodes = ["n1"]\nssh_key = "/k"\n')
    (guess,) = guess_nodes(path)
    assert (guess.user, guess.port, guess.known_hosts, guess.connect_timeout_s) == \
           ("clusterbot", 22, Path("/etc/clusterbot/known_hosts"), 5.0)
    assert connections(path) == validated(path)


def test_the_environment_wins_and_the_guess_then_differs(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.toml"
    path.write_text(LAB)
    monkeypatch.setenv("CLUSTERBOT_CONNECT_TIMEOUT_S", "9")
    assert not set(connections(path)) & set(validated(path))  # so no guessed connection is used


@pytest.mark.parametrize("text", [
    "clusters = 3",
    "[[clusters]\nname = ",  # not TOML
    '[[clusters]]\nname = "c"\nnodes = ["n1"]\n',  # no key: nothing to connect with
    '[[clusters]]\nname = "c"\nnodes = [{ name = "n1" }]\nssh_key = "/k"\n',  # no host
    '[[clusters]]\nname = "c"\nnodes = [{ host = "h", port = "x" }]\nssh_key = "/k"\n',
    '[[clusters]]\nname = "c"\nnodes = "n1"\nssh_key = "/k"\n',
    '[[clusters]]\nname = "c"\nnodes = ["n1"]\nssh_key = "/k"\nsudo = "yes"\n',
    'connect_timeout_s = "soon"\n[[clusters]]\nname = "c"\nnodes = ["n1"]\nssh_key = "/k"\n',
])
def test_a_config_validation_would_refuse_gives_no_guess(tmp_path: Path, text: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    assert guess_nodes(path) == []


def test_no_file_gives_no_guess(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLUSTERBOT_CONFIG", raising=False)
    assert guess_nodes(tmp_path / "missing.toml") == []
    monkeypatch.setenv("CLUSTERBOT_CONFIG", str(tmp_path / "c.toml"))
    (tmp_path / "c.toml").write_text('[[clusters]]\nname = "c"\nnodes = ["n1"]\nssh_key = "/k"\n')
    assert [g.host for g in guess_nodes(None)] == ["n1"]


@pytest.mark.parametrize("cluster", [
    '[[clusters]]\nname = "c"\nnodes = ["n1"]\nssh_key = "/k"\n',
    '[[clusters]]\nname = "c"\nkind = "corosync"\nnodes = ["n1"]\nssh_key = "/k"\nsudo = false\n',
])
def test_the_reads_sent_ahead_are_what_a_cold_collector_asks(tmp_path: Path, cluster: str) -> None:
    """Else every cold status would send them for nothing (and then ask again): not wrong,
    since the pool reads them only if the lines match, but slow. A read command added to the
    collector belongs in bot.early's guess too."""
    path = tmp_path / "c.toml"
    path.write_text(cluster)
    (guess,) = guess_nodes(path)
    settings = load_settings(path)
    (conf,) = settings.clusters
    target = target_for(conf, conf.nodes[0], settings)
    collector = Collector(SshPool(), settings, controller=False)  # as `clusterbot status` asks
    assert [build_command(a, guess.sudo) for a in guess.reads] == \
           [build_command(a, target.sudo) for a in collector._argvs(conf, target, None)]


def test_a_file_with_its_own_commands_sends_none_ahead(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[[clusters]]\nname = "c"\nnodes = ["n1"]\nssh_key = "/k"\n'
                    '[clusters.commands]\ncrm_mon = ["crm_mon", "-1", "-X"]\n')
    (guess,) = guess_nodes(path)
    assert guess.reads == ()


def test_the_settings_load_without_pydantic_plugin_lookup(tmp_path: Path) -> None:
    """A cold status does not pay for looking up pydantic plugins (importlib.metadata and every
    installed package's entry points); a process that loaded pydantic first keeps its own."""
    path = tmp_path / "c.toml"
    path.write_text(LAB)
    code = ("import sys; import bot.settings as s; c = s.load_settings(sys.argv[1]); "
            "print(len(c.clusters), 'importlib.metadata' in sys.modules)")
    cold = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                          check=True, timeout=60)
    warm = subprocess.run([sys.executable, "-c", "import pydantic.plugin._loader; " + code, str(path)],
                          capture_output=True, text=True, check=True, timeout=60)
    assert cold.stdout.split() == ["2", "False"]
    assert warm.stdout.split() == ["2", "True"]
