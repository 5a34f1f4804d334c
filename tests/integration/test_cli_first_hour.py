"""A new operator's first hour with the command line (issue 16, items 9-19): real processes,
real SSH to loopback nodes, the real Slack client against the loopback fake Slack."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from bot.collect import Collector
from bot.ssh import SshPool
from tests.fakes.nodes import FakeCluster, fake_cluster
from tests.fakes.slack import FakeSlack
from tests.integration.test_cli_status import clusterbot, write_config

ENV_KEYS = ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET", "CLUSTERBOT_CONFIG")


def clean_env(**extra: str) -> dict[str, str]:
    """The test runner's environment without anything that configures clusterbot."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS and not k.startswith("CLUSTERBOT_")}
    return {**env, **extra}


def cli(*args: str, stdin: str = "", env: Mapping[str, str] | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", *args], input=stdin, text=True,
                          capture_output=True, timeout=120, check=False, env=dict(env or clean_env()),
                          cwd=cwd)


def closed_pipe(*args: str, stdin: str = "") -> tuple[int, str]:
    """Run with stdout a pipe whose reader is already gone, as `… | head -3` ends up: every
    write fails with EPIPE."""
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run([sys.executable, "-m", "bot", *args], input=stdin.encode(), stdout=write,
                              stderr=subprocess.PIPE, timeout=120, check=False, env=clean_env())
    finally:
        os.close(write)
    return proc.returncode, proc.stderr.decode()


def healthy_config(fc: FakeCluster, tmp: Path, top: str = 'alert_channel = "C0ALERTS"\n') -> Path:
    return write_config(fc, tmp / "c.toml", top)


# ---------------------------------------------------------------- 9: a closed pipe


def test_demo_piped_into_head_stops_quietly() -> None:
    rc, err = closed_pipe("demo", stdin="/cluster status\n/cluster status\n")
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err, err
    assert rc == 141  # as a shell reports a writer whose reader left (128 + SIGPIPE)


@pytest.mark.parametrize("args,code", [
    (("render", "--example", "node3-crashed"), 141),
    (("render", "--example", "healthy", "--format", "blocks"), 141),
    (("--help",), 0), (("check-config", "--help"), 0),  # argparse exits 0 itself, quietly too
])
def test_other_printing_commands_stop_quietly_on_a_closed_pipe(args: tuple[str, ...], code: int) -> None:
    rc, err = closed_pipe(*args)
    assert err == "" and rc == code


async def test_status_check_config_and_console_stop_quietly_on_a_closed_pipe(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path) as fc:
        cfg = healthy_config(fc, tmp_path)
        for args, stdin in [(("status",), ""), (("status", "--format", "json"), ""),
                            (("check-config", "--connect"), ""),
                            (("console",), "/cluster status\n/cluster list\n")]:
            rc, err = await asyncio.to_thread(closed_pipe, *args, "--config", str(cfg), stdin=stdin)
            assert "Traceback" not in err and "Exception ignored" not in err, (args, err)
            assert rc == 141, (args, err)


# ---------------------------------------------------------------- 10, 19: global options


def test_an_unknown_log_level_is_one_argparse_error_listing_the_choices() -> None:
    out = cli("--log-level", "verbose", "check-config")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "argument --log-level: invalid choice: 'VERBOSE' (choose from 'DEBUG', 'INFO', 'WARNING'" \
        in out.stderr.splitlines()[-1]
    assert cli("render", "--example", "healthy", "--log-format", "yaml").returncode == 2
    count = cli("audit", "-n", "-5")  # checked before anything is opened
    assert count.returncode == 2
    assert "argument -n: expected a whole number from 0 to 1000000000, got '-5'" in count.stderr
    port = cli("run", "--port", "70000")
    assert port.returncode == 2 and "argument --port: expected a whole number from 0 to 65535, got '70000'" \
        in port.stderr.splitlines()[-1]


async def test_global_options_work_before_and_after_the_subcommand(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path) as fc:
        cfg = str(healthy_config(fc, tmp_path))
        after = await asyncio.to_thread(cli, "check-config", "--log-level", "info", "--config", cfg,
                                        "--log-format", "json")
        before = await asyncio.to_thread(cli, "--log-level", "INFO", "--config", cfg, "check-config")
        mixed = await asyncio.to_thread(cli, "--config", cfg, "status", "--log-level", "debug",
                                        "--format", "json")
    for out in (after, before):
        assert out.returncode == 0, out.stderr
        assert "config OK" in out.stdout
    assert mixed.returncode == 0, mixed.stderr
    assert json.loads(mixed.stdout)["cluster"] == "prod-haproxy"
    assert "DEBUG bot.ssh: node1: `crm_mon` exited 0" in mixed.stderr  # --log-level after it applied
    assert cli("--config", cfg, "render", "--example", "healthy").returncode == 2  # render reads none


# ---------------------------------------------------------------- 11: no leaks on early exits


async def test_run_and_demo_slack_early_exits_leave_no_asyncio_warnings(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path) as fc, FakeSlack(bot_token="xoxb-right") as slack:
        cfg = str(healthy_config(fc, tmp_path))
        port = {"CLUSTERBOT_HTTP_PORT": "0", "CLUSTERBOT_HTTP_HOST": "127.0.0.1",
                "SLACK_SIGNING_SECRET": "s", "CLUSTERBOT_SLACK_API_URL": slack.api_url}
        runs = {
            "no token": await asyncio.to_thread(cli, "run", "--config", cfg, env=clean_env(**port)),
            "refused token": await asyncio.to_thread(
                cli, "run", "--config", cfg, env=clean_env(SLACK_BOT_TOKEN="xoxb-wrong", **port)),
            "no signing secret": await asyncio.to_thread(cli, "run", "--config", cfg, env=clean_env(
                **{**port, "SLACK_BOT_TOKEN": "xoxb-right", "SLACK_SIGNING_SECRET": ""})),
            "demo, no token": await asyncio.to_thread(cli, "demo", "--slack", env=clean_env(**port)),
            "demo, refused token": await asyncio.to_thread(
                cli, "demo", "--slack", env=clean_env(SLACK_BOT_TOKEN="xoxb-wrong", **port)),
        }
    for what, out in runs.items():
        assert out.returncode == 2, (what, out.stderr)
        said = [line for line in out.stderr.splitlines() if line.startswith("clusterbot: ")]
        assert len(said) == 1 and ("SLACK_SIGNING_SECRET" if "secret" in what else "SLACK_BOT_TOKEN") \
            in said[0], (what, out.stderr)
        # `run` logs at INFO by default (its Slack calls); nothing worse than that may follow.
        others = [line for line in out.stderr.splitlines() if line not in said]
        assert all(" INFO " in line for line in others), (what, out.stderr)
        assert "Unclosed" not in out.stderr and "Traceback" not in out.stderr, (what, out.stderr)


# ---------------------------------------------------------------- 12: unreachable nodes


async def test_status_with_two_unreachable_nodes_says_it_once_per_node(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path) as fc:
        for name in ("node2", "node3"):
            server = fc.nodes[name].server
            assert server is not None
            await server.set_reachable(False)
        cfg = healthy_config(fc, tmp_path)
        rc, out, err = await clusterbot("status", "--config", str(cfg))
    assert rc == 1
    lines = err.splitlines()
    assert len([line for line in lines if "node2" in line]) <= 1, err
    assert len([line for line in lines if "node3" in line]) <= 1, err
    assert len(lines) <= 2, err
    for text in (out, err):
        assert "retrying" not in text and "another 0." not in text, text
    assert "node2 did not answer" in out and "node3 did not answer" in out


async def test_a_node_in_connect_backoff_is_described_like_the_first_failure(tmp_path: Path) -> None:
    # The watcher polls again while the pool still backs off: its incident text must say why the
    # node is unreachable, never the pool's schedule ("not retrying for another 0.5s").
    async with fake_cluster(tmp_path) as fc:
        server = fc.nodes["node2"].server
        assert server is not None
        await server.set_reachable(False)
        async with SshPool() as pool:
            collector = Collector(pool, fc.settings)
            reports = [await collector.collect(fc.config) for _ in range(3)]
    errors = []
    for report in reports:
        node2 = report.result("node2")
        assert node2 is not None and node2.error is not None
        errors.append(str(node2.error))
    assert all("retrying" not in e for e in errors), errors
    assert len(set(errors)) == 1 and "cannot connect to 127.0.0.1:" in errors[0], errors


# ---------------------------------------------------------------- 13: configuration mistakes


def test_every_config_mistake_at_once_with_did_you_mean(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('alert_chanel = "C1"\npoll_interval_s = "soon"\n[[clusters]]\nname = "x"\n'
                   'nodes = [{ name = "n1", host = "h", prot = 22 }]\nsshuser = "u"\n'
                   '[clusters.commands]\ncrm_mn = ["crm_mon"]\n')
    out = cli("check-config", "--config", str(cfg))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    lines = out.stderr.splitlines()
    assert all(line.startswith(f"clusterbot: {cfg}: ") for line in lines), lines
    said = {line.removeprefix(f"clusterbot: {cfg}: ") for line in lines}
    assert said == {
        "alert_chanel: unknown key; did you mean 'alert_channel'?",
        "poll_interval_s: Input should be a valid number, unable to parse string as a number",
        "clusters.0.nodes.0.prot: unknown key; did you mean 'port'?",
        "clusters.0.sshuser: unknown key; did you mean 'ssh_user'?",
        "clusters.0.commands.crm_mn: unknown key; did you mean 'crm_mon'?",
    }


def test_check_config_fails_on_missing_files_and_an_unusable_state_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'alert_channel = "C1"\nstate_dir = "{blocker}/state"\n[[clusters]]\nname = "x"\n'
                   f'nodes = ["n1"]\nssh_key = "{tmp_path}/nokey"\nknown_hosts = "{tmp_path}/nohosts"\n')
    out = cli("check-config", "--config", str(cfg))
    assert out.returncode == 1, out.stdout + out.stderr
    problems = [line.strip() for line in out.stdout.splitlines() if line.startswith("  problem: ")]
    assert problems == [f"problem: x: ssh_key {tmp_path}/nokey does not exist",
                        f"problem: x: known_hosts {tmp_path}/nohosts does not exist",
                        f"problem: state_dir {blocker}/state: {blocker} is not a directory"]
    assert "config OK" not in out.stdout and out.stdout.splitlines()[-1] == "config has 3 problems"
    assert not (blocker.parent / "state").exists()


async def test_check_config_and_run_refuse_a_key_or_known_hosts_that_is_not_one(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path) as fc:
        cfg = healthy_config(fc, tmp_path)
        fc.keys.client_key_path.write_text("not a key\n")
        fc.keys.known_hosts.write_text("garbage\n")
        check = await asyncio.to_thread(cli, "check-config", "--config", str(cfg))
        run = await asyncio.to_thread(cli, "run", "--config", str(cfg), env=clean_env(
            SLACK_BOT_TOKEN="xoxb-x", SLACK_SIGNING_SECRET="s", CLUSTERBOT_HTTP_PORT="0"))
    assert check.returncode == 1
    assert [line for line in check.stdout.splitlines() if "problem:" in line] == [
        f"  problem: prod-haproxy: ssh_key {fc.keys.client_key_path} cannot be used: Invalid private key",
        f"  problem: prod-haproxy: known_hosts {fc.keys.known_hosts} cannot be used: "
        "Invalid known hosts entry: garbage"]
    assert run.returncode == 2 and run.stderr.splitlines()[-1] == (
        "clusterbot: not starting: fix the above (clusterbot check-config lists the same)")


def test_a_misspelt_environment_variable_is_a_problem_not_silence(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    (tmp_path / "kh").write_text("")
    cfg.write_text(f'alert_channel = "C1"\nstate_dir = "{tmp_path}/state"\n[[clusters]]\nname = "x"\n'
                   f'nodes = ["n1"]\nssh_key = "{key}"\nknown_hosts = "{tmp_path}/kh"\n')
    assert cli("check-config", "--config", str(cfg)).stdout.splitlines()[-1] == "config OK"
    out = cli("check-config", "--config", str(cfg), env=clean_env(
        CLUSTERBOT_POLL_INTERVAL="30", CLUSTERBOT_ALERT_CONFIG="/etc/clusterbot/alert.conf"))
    assert out.returncode == 1
    assert [line for line in out.stdout.splitlines() if "problem:" in line] == [
        "  problem: environment CLUSTERBOT_POLL_INTERVAL is not a setting and is ignored; did you mean "
        "CLUSTERBOT_POLL_INTERVAL_S?"]


def test_no_config_file_names_the_files_looked_for(tmp_path: Path) -> None:
    for command in ("check-config", "status", "console", "run"):
        out = cli(command, cwd=tmp_path)
        assert out.returncode == 2, out.stderr
        assert out.stderr == ("clusterbot: no config file: none given (--config, $CLUSTERBOT_CONFIG) and "
                              "/etc/clusterbot/clusterbot.toml does not exist\n"), (command, out.stderr)
    out = cli("status", env=clean_env(CLUSTERBOT_CONFIG=str(tmp_path / "gone.toml")))
    assert out.stderr == (f"clusterbot: config file {tmp_path}/gone.toml (named by $CLUSTERBOT_CONFIG) "
                          "does not exist\n")


# ---------------------------------------------------------------- 14: read-only commands create nothing


def test_audit_of_an_empty_state_dir_says_so_and_creates_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'state_dir = "{state}"\n')
    out = cli("audit", "--config", str(cfg))
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr == (f"clusterbot: no state in {state} (no clusterbot.sqlite3): the bot has not run "
                          "with this state_dir; check state_dir or --config\n")
    assert list(state.iterdir()) == []
    out = cli("audit", "--config", str(cfg), env=clean_env(CLUSTERBOT_STATE_DIR=str(tmp_path / "nope")))
    assert out.returncode == 2 and not (tmp_path / "nope").exists()


async def test_run_without_its_slack_secrets_refuses_in_one_line_and_creates_nothing(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path) as fc:
        cfg = str(healthy_config(fc, tmp_path))
        no_token = await asyncio.to_thread(cli, "run", "--config", cfg)
        no_secret = await asyncio.to_thread(cli, "run", "--config", cfg,
                                            env=clean_env(SLACK_BOT_TOKEN="xoxb-test"))
    assert (no_token.returncode, no_token.stderr) == (
        2, "clusterbot: SLACK_BOT_TOKEN is not set (the xoxb- token from OAuth & Permissions)\n")
    assert (no_secret.returncode, no_secret.stderr) == (
        2, "clusterbot: SLACK_SIGNING_SECRET is required in HTTP mode (Basic Information page)\n")
    assert not (tmp_path / "state").exists()  # no state directory, no database


# ---------------------------------------------------------------- 15: where alerts go


async def test_a_cluster_without_alert_channel_is_a_problem_and_run_refuses(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path) as fc:
        cfg = str(healthy_config(fc, tmp_path, top=""))
        check = await asyncio.to_thread(cli, "check-config", "--config", cfg)
        run = await asyncio.to_thread(cli, "run", "--config", cfg, env=clean_env(
            SLACK_BOT_TOKEN="xoxb-x", CLUSTERBOT_HTTP_PORT="0", CLUSTERBOT_HTTP_HOST="127.0.0.1"))
    assert check.returncode == 1
    assert ("  problem: prod-haproxy: no alert_channel: set the cluster's or the top-level alert_channel "
            "to the channel id its incidents go to") in check.stdout.splitlines()
    assert "alerts to (none)" in check.stdout
    assert run.returncode == 2 and run.stderr.splitlines() == [
        "clusterbot: prod-haproxy: no alert_channel: set the cluster's or the top-level alert_channel "
        "to the channel id its incidents go to",
        "clusterbot: not starting: fix the above (clusterbot check-config lists the same)"]
    assert not (tmp_path / "state").exists()  # refused before anything was created


async def test_run_on_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    async with fake_cluster(tmp_path) as fc, FakeSlack(bot_token="xoxb-right") as slack:
        cfg = str(healthy_config(fc, tmp_path))
        taken = slack.port  # someone listens there already
        out = await asyncio.to_thread(cli, "run", "--config", cfg, "--log-level", "warning", env=clean_env(
            SLACK_BOT_TOKEN="xoxb-right", SLACK_SIGNING_SECRET="s", CLUSTERBOT_HTTP_HOST="127.0.0.1",
            CLUSTERBOT_HTTP_PORT=str(taken), CLUSTERBOT_SLACK_API_URL=slack.api_url))
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr == (f"clusterbot: cannot listen: error while attempting to bind on address "
                          f"('127.0.0.1', {taken}): address already in use; check http_host, http_port "
                          "and metrics_port\n")


# ---------------------------------------------------------------- 17: one exit-code rule


@pytest.mark.parametrize("example,code", [("healthy", 0), ("standby-node2", 1), ("node3-crashed", 1)])
def test_render_exit_code_follows_health_like_status(example: str, code: int) -> None:
    for fmt in ("text", "json"):
        out = cli("render", "--example", example, "--format", fmt)
        assert out.returncode == code, (fmt, out.stderr)


# ---------------------------------------------------------------- 18: logs


async def test_run_logs_its_lifecycle_by_default_and_ssh_commands_only_at_debug(tmp_path: Path) -> None:
    """`clusterbot run` as systemd starts it (no --log-level): the journal shows that it runs and
    the incident it posts, as JSON with a timezone and the fields as keys, and no SSH command."""
    async with fake_cluster(tmp_path, scenario="c_node3_crashed") as fc, \
            FakeSlack(bot_token="xoxb-right") as slack:
        cfg = str(healthy_config(fc, tmp_path))
        env = clean_env(SLACK_BOT_TOKEN="xoxb-right", SLACK_SIGNING_SECRET="s", CLUSTERBOT_HTTP_PORT="0",
                        CLUSTERBOT_HTTP_HOST="127.0.0.1", CLUSTERBOT_SLACK_API_URL=slack.api_url,
                        CLUSTERBOT_POLL_INTERVAL_S="0.2")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", "--config", cfg, "--log-format", "json", env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        assert proc.stderr is not None
        lines: list[dict[str, object]] = []
        try:
            async with asyncio.timeout(60):
                while not any(r.get("incident") for r in lines):
                    lines.append(json.loads(await proc.stderr.readline()))
                await asyncio.sleep(1.0)  # five more polls of three nodes
        finally:
            proc.send_signal(signal.SIGTERM)
            tail = await asyncio.wait_for(proc.stderr.read(), 30)
            await asyncio.wait_for(proc.wait(), 30)
        lines += [json.loads(line) for line in tail.decode().splitlines() if line]
    assert proc.returncode == 0
    running = next(r for r in lines if "watching 1 clusters" in str(r["msg"]))
    assert running["level"] == "info" and str(running["ts"]).endswith("+00:00")
    alert = next(r for r in lines if r.get("incident"))
    assert alert["level"] == "info" and alert["channel"] == "C0ALERTS" and alert["kind"] == "root"
    assert "prod-haproxy: unhealthy at start" in str(alert["msg"])
    assert not [r for r in lines if r["logger"] == "bot.ssh"], "SSH commands belong at DEBUG"
    assert lines[-1]["msg"] == "clusterbot stopped" and lines[-1]["level"] == "info"
