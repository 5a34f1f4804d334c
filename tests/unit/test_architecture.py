"""Keep the shape: the pure core imports no I/O, and the typed code stays type-clean."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PURE = [*sorted((ROOT / "bot" / "pacemaker").glob("*.py")), *sorted((ROOT / "bot" / "corosync").glob("*.py")),
        *sorted((ROOT / "bot" / "render").glob("*.py")), *sorted((ROOT / "bot" / "watch").glob("*.py")),
        ROOT / "bot" / "remedies.py",
        ROOT / "bot" / "approvals.py", ROOT / "bot" / "demo" / "sim.py", ROOT / "bot" / "demo" / "simcib.py",
        ROOT / "commands" / "spec.py"]
FORBIDDEN = ("asyncio", "asyncssh", "slack_bolt", "slack_sdk", "sqlite3", "aiohttp", "socket", "subprocess",
             "bot.ssh", "bot.store", "bot.slack", "bot.watcher", "bot.collect", "bot.runtime")


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", PURE, ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_core_does_no_io(path: Path) -> None:
    bad = sorted(n for n in imports(path) if any(n == f or n.startswith(f + ".") for f in FORBIDDEN))
    assert bad == [], f"{path.name} imports {bad}: keep I/O at the edges"


@pytest.mark.skipif(shutil.which("mypy") is None and not (Path(sys.executable).parent / "mypy").exists(),
                    reason="mypy is not installed (it is in the test extra)")
def test_mypy_strict_is_clean() -> None:
    out = subprocess.run([sys.executable, "-m", "mypy", "--strict", "bot", "commands"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stdout[-3000:]
