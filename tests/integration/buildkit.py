"""Building and installing clusterbot as an operator would: shared by the install and container tests."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).parents[2]


def sh(*argv: str | Path, cwd: Path | None = None, stdin: str | None = None, timeout: float = 120.0) -> str:
    """Run a step as the README writes it; its stdout, or a failure showing what it printed. Our own
    environment (venv, CLUSTERBOT_*, SLACK_*) does not leak into it."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CLUSTERBOT_", "SLACK_", "PYTHON", "VIRTUAL_ENV"))}
    done = subprocess.run([str(a) for a in argv], input=stdin, capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=timeout, check=False)
    printed = f"{done.stdout[-2000:]}{done.stderr[-3000:]}"
    assert done.returncode == 0, f"{argv} exited {done.returncode}:\n{printed}"
    return done.stdout


def source_copy(dest: Path) -> Path:
    """What a release tarball holds for building: the packages and the project files (a build in
    the checkout itself would leave build/ and egg-info behind)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("bot", "commands"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE", "constraints.txt"):
        shutil.copy2(ROOT / name, dest / name)
    return dest
