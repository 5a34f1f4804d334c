"""`move` by pcs version: the version `pcs --version` prints, and the form each version gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.remedies import Target, expand, parse_pcs_version
from commands.move import ACTION as MOVE

LAB = Path(__file__).resolve().parents[1] / "fixtures" / "cib" / "lab-2.1.5"


@pytest.mark.parametrize(("text", "version"), [
    ((LAB / "pcs-0.11.5.version.txt").read_text(), (0, 11, 5)),  # the lab's, with its "rc=0" line
    ("0.10.8\n", (0, 10, 8)), ("0.11.7+el9\n", (0, 11, 7)), ("0.12\n", (0, 12)),
    ("", None), ("bash: pcs: command not found\n", None),
])
def test_parse_pcs_version(text: str, version: tuple[int, ...] | None) -> None:
    assert parse_pcs_version(text) == version


@pytest.mark.parametrize(("pcs", "argv"), [
    ((0, 10, 8), ("pcs", "resource", "move", "virtual_ip_1", "node3")),
    ((0, 11, 0), ("pcs", "resource", "move-with-constraint", "virtual_ip_1", "node3")),
    ((0, 11, 5), ("pcs", "resource", "move-with-constraint", "virtual_ip_1", "node3")),
    ((1, 0), ("pcs", "resource", "move-with-constraint", "virtual_ip_1", "node3")),
])
def test_move_form_by_pcs_version(pcs: tuple[int, ...], argv: tuple[str, ...]) -> None:
    (step,) = MOVE.steps
    assert MOVE.needs_pcs_version
    assert expand(step, Target("virtual_ip_1", "node3"), {}, pcs) == argv


def test_a_configured_template_wins_over_the_version() -> None:
    (step,) = MOVE.steps
    mine = ("pcs", "resource", "move", "{resource}", "{node}", "lifetime=PT1H")
    assert expand(step, Target("virtual_ip_1", "node3"), {"move": mine}, (0, 11, 5))[-1] == "lifetime=PT1H"
