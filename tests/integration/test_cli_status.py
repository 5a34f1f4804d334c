"""`clusterbot status` / `check-config` as a user runs them, against loopback SSH nodes."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from tests.fakes.nodes import FakeCluster, fake_cluster


def write_config(fc: FakeCluster, path: Path, top: str = 'alert_channel = "C0ALERTS"\n') -> Path:
    c = fc.config
    nodes = ", ".join(f'{{ name = "{n.name}", host = "{n.host}", port = {n.port} }}' for n in c.nodes)
    pacemaker = ('vips = ["virtual_ip_1", "virtual_ip_2", "virtual_ip_3"]\n'
                 'everywhere = ["loadbalancer-clone"]\n') if c.kind == "pacemaker" else 'kind = "corosync"\n'
    path.write_text(f"""{top}
state_dir = "{path.parent / 'state'}"
connect_timeout_s = 2
command_timeout_s = 2
[[clusters]]
name = "{c.name}"
nodes = [{nodes}]
ssh_user = "{c.ssh_user}"
ssh_key = "{c.ssh_key}"
known_hosts = "{c.known_hosts}"
sudo = true
{pacemaker}""")
    return path


async def clusterbot(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_status_healthy_json_exit_0(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path) as fc:
        cfg = write_config(fc, tmp_path / "c.toml")
        rc, out, err = await clusterbot("status", "--config", str(cfg), "--format", "json")
    assert rc == 0, err
    data = json.loads(out)
    assert data["cluster"] == "prod-haproxy" and data["quorum"] is True and data["dc"] == "node1"
    assert [v["node"] for v in data["views"]] == ["node1", "node2", "node3"]
    assert all(v["ok"] for v in data["views"])


async def test_status_crashed_node_exit_1_text(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path, scenario="c_node3_crashed") as fc:
        cfg = write_config(fc, tmp_path / "c.toml")
        rc, out, _ = await clusterbot("status", "--config", str(cfg))
    assert rc == 1
    assert "node3 is OFFLINE" in out and "/cluster start prod-haproxy node3" in out


async def test_status_unknown_cluster_exit_2(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path) as fc:
        cfg = write_config(fc, tmp_path / "c.toml")
        rc, out, err = await clusterbot("status", "nope", "--config", str(cfg))
    assert rc == 2 and out == ""
    assert err.strip() == "clusterbot: unknown cluster 'nope' (configured: prod-haproxy)"


async def test_bad_config_one_line_naming_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[[clusters]]\nname = "x"\nnodes = [{ name = "n1", host = "h", port = "ssh" }]\n')
    rc, _, err = await clusterbot("check-config", "--config", str(cfg))
    assert rc == 2 and err.count("\n") == 1
    assert "clusters.0.nodes.0.port" in err and "Traceback" not in err


async def test_check_config_connect(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path) as fc:
        fc.nodes["node2"].mode = "sudo_refused"
        cfg = write_config(fc, tmp_path / "c.toml")
        rc, out, _ = await clusterbot("check-config", "--connect", "--config", str(cfg))
    assert rc == 1
    lines = {line.split(":")[0].strip(): line for line in out.splitlines() if "/" in line}
    assert lines["OK  prod-haproxy/node1"].endswith("sudo OK, crm_mon OK")
    assert "BAD prod-haproxy/node2" in lines and "sudo" in lines["BAD prod-haproxy/node2"]


async def test_check_config_connect_on_a_corosync_only_cluster(tmp_path: Path) -> None:
    # No pacemakerd or crm_mon there: the node is checked by its quorum view.
    async with fake_cluster(tmp_path, kind="corosync", name="pve") as fc:
        cfg = write_config(fc, tmp_path / "c.toml")
        rc, out, err = await clusterbot("check-config", "--connect", "--config", str(cfg))
    assert rc == 0, out + err
    checks = [line for line in out.splitlines() if line.startswith(("  OK  pve/", "  BAD pve/"))]
    assert len(checks) == 3 and all(line.strip().startswith("OK ") for line in checks)
    assert all(line.endswith("sudo OK, corosync-quorumtool OK") for line in checks)


async def test_check_config_connect_on_old_pacemaker_uses_the_legacy_crm_mon(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path) as fc:
        fc.nodes["node3"].mode = "legacy"  # Pacemaker 1.1: no --output-as
        cfg = write_config(fc, tmp_path / "c.toml")
        rc, out, err = await clusterbot("check-config", "--connect", "--config", str(cfg))
    assert rc == 0, out + err
    assert "OK  prod-haproxy/node3: reachable, host key OK, Pacemaker 2.1.5, sudo OK, crm_mon OK" in out


async def test_status_connects_as_the_validated_settings_say_not_as_the_file_guessed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cold status connects ahead from the file alone (bot.early) and runs the read commands
    there; the environment then overrides the user. The connections made for the file's user
    (which the nodes accept) must not answer: the nodes refuse the validated user."""
    async with fake_cluster(tmp_path) as fc:
        cfg = write_config(fc, tmp_path / "c.toml")
        cluster = fc.config.model_dump(mode="json") | {"ssh_user": "someone-else"}
        monkeypatch.setenv("CLUSTERBOT_CLUSTERS", json.dumps([cluster]))
        rc, out, err = await clusterbot("status", "--config", str(cfg), "--format", "json")
    assert rc == 1, out + err
    views = json.loads(out)["views"]
    assert [v["ok"] for v in views] == [False] * 3
    assert all("someone-else@" in v["error"] and "refused our key" in v["error"] for v in views), views


async def test_a_one_shot_status_asks_no_controller_state(tmp_path: Path) -> None:
    """`clusterbot status` asks each node four questions down one read shell: crmadmin's
    controller state informs only the watcher's settling and nothing a status shows, so a cron
    job or monitoring check does not make every node's controller answer it."""
    async with fake_cluster(tmp_path) as fc:
        cfg = write_config(fc, tmp_path / "c.toml")
        rc, out, err = await clusterbot("status", "--config", str(cfg), "--format", "json")
        asked = [sorted(c.split()[2] for c in server.commands) for server in fc.servers()]
        sessions = [(server.connections_accepted, server.shells) for server in fc.servers()]
    assert rc == 0, err
    assert asked == [["corosync-cfgtool", "corosync-quorumtool", "crm_mon", "systemctl"]] * 3
    assert sessions == [(1, 1)] * 3
    assert all(v["ok"] for v in json.loads(out)["views"])
