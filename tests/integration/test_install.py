"""README "Running it in production", the install and upgrade steps, for real: a wheel built from
the source (not an editable install) into a fresh venv with the pinned dependencies, then
`clusterbot --version`, `check-config` on the example config and a piped `demo`, then the upgrade
step with a rebuilt wheel of the same version.

Dependencies come from pip's cache or the package index, as an operator's would.
"""

from __future__ import annotations

import shutil
import sys
import time
import zipfile
from pathlib import Path

import pytest

import bot
from tests.integration.buildkit import ROOT, sh, source_copy

EXAMPLE = ROOT / "deploy" / "clusterbot.example.toml"
PIP_TIMEOUT_S = 600.0  # a cold pip cache on a slow link; normally seconds


def build_wheel(src: Path, dist: Path) -> Path:
    shutil.rmtree(dist, ignore_errors=True)
    sh(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", dist, src, cwd=src,
       timeout=PIP_TIMEOUT_S)
    (wheel,) = dist.glob("clusterbot-*.whl")
    return wheel


def example_config(tmp: Path) -> Path:
    """deploy/clusterbot.example.toml with its /etc/clusterbot and state paths moved into tmp."""
    etc = tmp / "etc"
    etc.mkdir()
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "clusterbot@test", "-f", etc / "id_ed25519",
       cwd=tmp)
    (etc / "known_hosts").write_text("")
    text = EXAMPLE.read_text()
    assert "/etc/clusterbot/" in text and '"/var/lib/clusterbot"' in text
    config = etc / "clusterbot.toml"
    config.write_text(text.replace("/etc/clusterbot/", f"{etc}/")
                      .replace('"/var/lib/clusterbot"', f'"{tmp / "state"}"'))
    (tmp / "state").mkdir()
    return config


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen is missing (openssh-client)")
def test_wheel_install_runs_and_upgrades(tmp_path: Path) -> None:
    started = time.monotonic()
    src, dist, venv = source_copy(tmp_path / "src"), tmp_path / "dist", tmp_path / "venv"
    wheel = build_wheel(src, dist)
    names = zipfile.ZipFile(wheel).namelist()
    assert "bot/py.typed" in names and "bot/examples/healthy.xml" in names
    assert f"clusterbot-{bot.__version__}.dist-info/licenses/LICENSE" in names
    assert not any(n.startswith("tests/") for n in names)
    built = time.monotonic()

    sh(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    pip, clusterbot = venv / "bin" / "pip", venv / "bin" / "clusterbot"
    sh(pip, "install", "--quiet", "-c", src / "constraints.txt", wheel, cwd=tmp_path, timeout=PIP_TIMEOUT_S)
    installed = time.monotonic()

    assert sh(clusterbot, "--version", cwd=tmp_path) == f"clusterbot {bot.__version__}\n"
    where = sh(venv / "bin" / "python", "-c", "import bot; print(bot.__file__)", cwd=tmp_path)
    assert Path(where.strip()).is_relative_to(venv)  # the installed copy, not this checkout
    assert "config OK" in sh(clusterbot, "check-config", "--config", example_config(tmp_path), cwd=tmp_path)
    out = sh(clusterbot, "demo", cwd=tmp_path, stdin="/cluster status\n")
    assert "prod-haproxy is healthy" in out

    # The upgrade step: a rebuilt wheel of the same version must still replace the code.
    with (src / "bot" / "__init__.py").open("a") as fh:
        fh.write("UPGRADE_MARKER = 'rebuilt'\n")
    wheel = build_wheel(src, dist)
    sh(pip, "install", "--quiet", "--force-reinstall", "--no-deps", wheel, cwd=tmp_path)
    sh(pip, "install", "--quiet", "-c", src / "constraints.txt", wheel, cwd=tmp_path, timeout=PIP_TIMEOUT_S)
    marker = sh(venv / "bin" / "python", "-c", "import bot; print(bot.UPGRADE_MARKER)", cwd=tmp_path)
    assert marker == "rebuilt\n"
    assert sh(clusterbot, "--version", cwd=tmp_path) == f"clusterbot {bot.__version__}\n"
    deps = {p for p in sh(pip, "freeze", cwd=tmp_path).splitlines() if not p.startswith("clusterbot ")}
    assert deps and deps <= set((src / "constraints.txt").read_text().splitlines())  # as pinned
    print(f"\ninstall test: wheel build {built - started:.1f}s, venv + install {installed - built:.1f}s, "
          f"total {time.monotonic() - started:.1f}s")
