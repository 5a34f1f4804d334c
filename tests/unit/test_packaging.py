"""What pip sees: the version, dependency bounds, and the constraints file CI installs with."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import bot
from bot.cli import main

ROOT = Path(__file__).parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
CONSTRAINTS = ROOT / "constraints.txt"


def test_version_comes_from_the_installed_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"clusterbot {metadata.version('clusterbot')}\n"
    assert metadata.version("clusterbot") == bot.__version__  # pyproject reads it from there


def requirements() -> list[Requirement]:
    deps = PYPROJECT["dependencies"] + [d for extra in PYPROJECT["optional-dependencies"].values()
                                       for d in extra]
    return [Requirement(d) for d in deps]


def test_every_dependency_has_an_upper_bound() -> None:
    unbounded = [str(r) for r in requirements()
                 if not any(s.operator in ("<", "<=", "==", "~=") for s in r.specifier)]
    assert unbounded == []


def pins() -> dict[str, str]:
    out = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            found = re.fullmatch(r"([A-Za-z0-9._-]+)==([^\s;]+)", line)
            assert found, f"constraints.txt: not an exact pin: {line!r}"
            out[canonicalize_name(found[1])] = found[2]
    return out


def closure() -> set[str]:
    """Every distribution `pip install 'clusterbot[test]'` brings in, from installed metadata."""
    seen: set[str] = set()
    todo = [(r, ("test",)) for r in metadata.requires("clusterbot") or []]
    while todo:
        spec, extras = todo.pop()
        req = Requirement(spec)
        if req.marker and not any(req.marker.evaluate({**default_environment(), "extra": e})
                                  for e in (*extras, "")):
            continue
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        seen.add(name)
        todo += [(r, tuple(req.extras)) for r in metadata.requires(name) or []]
    return seen


def test_constraints_pin_exactly_the_dependency_closure() -> None:
    pinned, needed = pins(), closure()
    assert sorted(needed - set(pinned)) == [], "unpinned: regenerate constraints.txt (see its header)"
    assert sorted(set(pinned) - needed) == [], "pinned but no longer needed"


def test_pins_satisfy_our_own_bounds() -> None:
    pinned = pins()
    outside = [f"{r.name}=={pinned[canonicalize_name(r.name)]} vs {r.specifier}" for r in requirements()
               if not r.specifier.contains(pinned[canonicalize_name(r.name)], prereleases=True)]
    assert outside == []
