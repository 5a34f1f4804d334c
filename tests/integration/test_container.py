"""deploy/container/Containerfile, built and run with podman: non-root, `--version`, a piped demo,
and `clusterbot run` reported healthy by the image's own HEALTHCHECK on /healthz.

Slow (a Debian base image from debootstrap the first time, ~2 min; the image build ~30 s), so it
runs as root with podman, runc and debootstrap installed and CI set (as .ci/run does) or
CLUSTERBOT_CONTAINER=1. Container registries are not reachable from our machines, hence the
base image from Debian's own packages (cached as localhost/clusterbot-base:bookworm). Podman
runs with runc and cgroupfs, which work on these machines' hybrid cgroups; its healthcheck timer
needs systemd, so the check is run by hand (`podman healthcheck run`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import bot
from tests.integration.buildkit import ROOT, sh, source_copy

BASE = "localhost/clusterbot-base:bookworm"
PODMAN = ("podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs")
# No network but loopback; limits podman would otherwise raise to the host's, which it may not here.
OPTS = ("--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096")
RUN = (*PODMAN, "run", "--rm", *OPTS)
HEALTHY_WITHIN_S = 60.0


def skip_reason() -> str | None:
    asked = os.environ.get("CLUSTERBOT_CONTAINER") == "1"
    if os.environ.get("CI", "").lower() in ("", "0", "false") and not asked:
        return "container test: slow; runs in CI or with CLUSTERBOT_CONTAINER=1"
    if os.geteuid() != 0:
        return "container test: needs root"
    missing = [t for t in ("podman", "runc", "debootstrap") if shutil.which(t) is None]
    return f"container test: {' '.join(missing)} missing (Debian packages)" if missing else None


pytestmark = pytest.mark.skipif((why := skip_reason()) is not None, reason=why or "")


def base_image(tmp: Path) -> str:
    """Debian 12 with python3-venv, from Debian's mirror (once per machine)."""
    if subprocess.run([*PODMAN, "image", "exists", BASE], check=False).returncode == 0:
        return BASE
    rootfs = tmp / "rootfs"
    sh("debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates", "bookworm",
       rootfs, "http://deb.debian.org/debian", timeout=900)
    shutil.rmtree(rootfs / "var" / "lib" / "apt" / "lists", ignore_errors=True)
    for deb in (rootfs / "var" / "cache" / "apt" / "archives").glob("*.deb"):
        deb.unlink()
    sh("tar", "-C", rootfs, "-cf", tmp / "rootfs.tar", ".", timeout=300)
    sh(*PODMAN, "import", tmp / "rootfs.tar", BASE, timeout=300)
    return BASE


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("container")
    context = source_copy(tmp / "context")
    # As the Containerfile says: the wheel and its pinned dependencies, so the build needs no index.
    sh(sys.executable, "-m", "pip", "wheel", "--quiet", "-c", context / "constraints.txt",
       "-w", context / "dist", context, timeout=900)
    tag = f"localhost/clusterbot-test:{uuid.uuid4().hex[:8]}"
    base = base_image(tmp)
    started = time.monotonic()
    sh(*PODMAN, "build", "--isolation", "chroot", "--format", "docker", "--build-arg",
       f"BASE={base}", "-f", ROOT / "deploy" / "container" / "Containerfile", "-t", tag, context,
       timeout=900)
    print(f"\ncontainer image built in {time.monotonic() - started:.1f}s")
    try:
        yield tag
    finally:
        subprocess.run([*PODMAN, "rmi", "-f", tag], capture_output=True, timeout=120, check=False)


def test_image_runs_as_non_root(image: str) -> None:
    assert sh(*RUN, "--entrypoint", "id", image, "-u").strip() != "0"
    assert sh(*RUN, image, "--version") == f"clusterbot {bot.__version__}\n"
    assert "prod-haproxy is healthy" in sh(*RUN, "-i", image, "demo", stdin="/cluster status\n")


def test_healthcheck_reports_a_running_bot_healthy(image: str, tmp_path: Path) -> None:
    config = tmp_path / "etc"
    config.mkdir(mode=0o755)
    config.chmod(0o755)
    # `run` refuses a config check-config would flag: a real key and known_hosts, readable by
    # the image's unprivileged user (test files only: a real key is 0600 and owned by that user).
    import asyncssh

    asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(config / "id_ed25519"))
    (config / "known_hosts").write_text("")
    for f in ("id_ed25519", "known_hosts"):
        (config / f).chmod(0o644)
    (config / "clusterbot.toml").write_text(
        'alert_channel = "C0ALERTS0"\nslack_api_url = "http://127.0.0.1:9/api/"\n'  # nothing listens
        '[[clusters]]\nname = "c1"\nssh_key = "/etc/clusterbot/id_ed25519"\n'
        'known_hosts = "/etc/clusterbot/known_hosts"\n'
        'nodes = [{ name = "n1", host = "127.0.0.1", port = 9 }]\n')
    (config / "clusterbot.toml").chmod(0o644)
    name = f"cbtest-{uuid.uuid4().hex[:8]}"
    sh(*PODMAN, "run", "-d", "--name", name, *OPTS, "-v", f"{config}:/etc/clusterbot:ro",
       "-e", "SLACK_BOT_TOKEN=xoxb-test", "-e", "SLACK_SIGNING_SECRET=test", image)
    try:
        deadline = time.monotonic() + HEALTHY_WITHIN_S
        while subprocess.run([*PODMAN, "healthcheck", "run", name], capture_output=True, timeout=60,
                             check=False).returncode != 0:
            assert time.monotonic() < deadline, sh(*PODMAN, "logs", name)[-3000:]
            time.sleep(1.0)
        state = sh(*PODMAN, "inspect", "--format", "{{.State.Health.Status}} {{.Config.User}}", name)
        assert state.split() == ["healthy", "clusterbot"]
    finally:
        subprocess.run([*PODMAN, "rm", "-f", name], capture_output=True, timeout=120, check=False)
