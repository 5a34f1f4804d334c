"""`clusterbot --version`: the version of the installed package, as pip and the wheel know it."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

DIST = "clusterbot"


def installed_version() -> str:
    """From the installed distribution's metadata; a bare source tree says so instead."""
    from importlib import metadata  # only when asked: it costs ~20 ms to import

    try:
        return metadata.version(DIST)
    except metadata.PackageNotFoundError:
        from bot import __version__

        return f"{__version__} (not installed)"


class VersionAction(argparse.Action):
    """argparse's own "version" action formats its text when the parser is built; this one only
    looks the version up when --version is given."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print clusterbot's version and exit", **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[Any] | None, option_string: str | None = None) -> None:
        print(f"{DIST} {installed_version()}")  # stdout, as argparse's own version action
        parser.exit()
