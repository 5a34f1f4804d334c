"""The docs and the command line agree: every concrete `clusterbot …` line in them parses with
the real parser, and the alert agent's README names every variable the agent reads."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from bot.cli import _parser

ROOT = Path(__file__).resolve().parents[2]
DOCS = (ROOT / "README.md", ROOT / "deploy" / "alert-agent" / "README.md", ROOT / "docs" / "configuration.md")
AGENT = ROOT / "deploy" / "alert-agent"
PLACEHOLDERS = ("[", "…", "|", "<")  # usage notation (`[--config F]`, `CLUSTER…`), not a command line


def command_lines() -> list[tuple[str, str]]:
    parser = _parser()
    subcommands = next(a for a in parser._actions if a.dest == "command").choices
    assert subcommands is not None
    found = []
    for doc in DOCS:
        for span in re.findall(r"`(clusterbot [^`]*)`", doc.read_text()):
            words = shlex.split(span)[1:]
            if any(p in span for p in PLACEHOLDERS) or not (words[0] in subcommands or words[0][:2] == "--"):
                continue  # a log line quoted in prose ("clusterbot running …") or usage notation
            found.append((doc.name, span))
    return found


def test_the_docs_hold_command_lines_with_global_options_after_the_subcommand() -> None:
    spans = [span for _, span in command_lines()]
    assert "clusterbot run --log-level info" in spans  # what the alert agent's README tells you
    assert "clusterbot run --log-level debug" in spans and "clusterbot --log-level debug run" in spans


@pytest.mark.parametrize("doc,span", command_lines())
def test_every_command_line_in_the_docs_parses(doc: str, span: str) -> None:
    try:
        _parser().parse_args(shlex.split(span)[1:])
    except SystemExit as exc:
        if exc.code != 0:  # `clusterbot --help` parses, prints and exits 0
            pytest.fail(f"{doc}: `{span}` does not parse (exit {exc.code})")


def test_the_agent_readme_names_every_variable_the_agent_reads() -> None:
    read = set(re.findall(r"\bCLUSTERBOT_[A-Z_]+", (AGENT / "clusterbot-alert.sh").read_text()))
    table = set(re.findall(r"^\s*\| `(CLUSTERBOT_[A-Z_]+)` \|", (AGENT / "README.md").read_text(), re.M))
    assert read - table == set(), "the agent reads these, its README's table does not name them"
    assert "CLUSTERBOT_ALERT_CONFIG" in table
