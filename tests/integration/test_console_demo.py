"""The console and the demo, as a newcomer runs them: piped stdin, real processes."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from pathlib import Path

from bot.console import Console
from bot.demo.cluster import DemoCluster
from bot.runtime import running
from bot.settings import Settings
from tests.fakes.nodes import fake_cluster


def run_cli(*args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", *args], input=stdin, text=True,
                          capture_output=True, timeout=120, check=False)


def test_demo_piped_kill_a_node_and_see_the_status_change() -> None:
    script = "/cluster status\n/demo kill node2\n/cluster status prod-haproxy\n/demo heal node2\n"
    out = run_cli("demo", stdin=script)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    before, after = text.split("demo: node2 crashed", 1)
    assert "🟢 prod-haproxy is healthy" in before and "`virtual_ip_2` → node2" in before
    assert "node2 is OFFLINE" in after and "`virtual_ip_2` → node" in after
    assert "`virtual_ip_2` → node2" not in after.split("demo: node2 healed")[0]
    assert "Traceback" not in out.stderr


def test_console_piped_against_a_config(tmp_path: Path) -> None:
    async def scenario() -> str:
        async with fake_cluster(tmp_path, scenario="b_standby") as fc:
            buf = io.StringIO()
            async with running(fc.settings) as rt:
                con = Console(rt.services, out=buf)
                await con.run(io.StringIO("/cluster status\n/as U0BOSS\nstatus prod-haproxy x y\n"
                                          "/cluster list\n/nonsense\n"))
            return buf.getvalue()

    text = asyncio.run(scenario())
    assert "node2 is in standby" in text and "/cluster unstandby prod-haproxy node2" in text
    assert "you are now U0BOSS" in text
    assert "error: `/cluster status` takes 0 to 1 arguments, got 3" in text
    assert "prod-haproxy (pacemaker) · 3 nodes" in text
    assert "unknown console command /nonsense" in text


def test_console_cli_with_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[[clusters]]\nname = "edge"\nnodes = ["127.0.0.1"]\n')
    out = run_cli("console", "--config", str(cfg), stdin="/cluster list\n/cluster help\n")
    assert out.returncode == 0
    assert "edge (pacemaker) · 1 nodes" in out.stdout and "/cluster status [CLUSTER]" in out.stdout


async def test_demo_cluster_serves_real_ssh() -> None:
    async with DemoCluster() as demo:
        settings = Settings(clusters=(demo.config(),))
        async with running(settings) as rt:
            report = await rt.services.collect(settings.clusters[0])
            assert report.healthy
            await demo.demo_command(("fail", "virtual_ip_2"))
            report = await rt.services.collect(settings.clusters[0])
        assert ("failed_action", "virtual_ip_2@node2") in {f.key for f in report.findings}
