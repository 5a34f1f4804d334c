"""Command line: the composition root. Parses arguments, builds the shell objects, runs a job.

Exit codes: 0 success, 1 a cluster is unhealthy or partly unreachable, 2 usage/config/input error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path

from bot import log
from bot.errors import ClusterbotError
from bot.pacemaker.health import Expectations
from bot.pacemaker.merge import ClusterReport, single
from bot.pacemaker.parse import parse
from bot.render.blocks import fallback_text, to_blocks
from bot.render.json import report_json
from bot.render.status import status_doc
from bot.render.text import to_text
from bot.version import VersionAction

EXAMPLES = ("healthy", "standby-node2", "node3-crashed")
FORMATS = ("text", "blocks", "json")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    log.setup(args.log_level, args.log_format)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ClusterbotError as exc:
        print(f"clusterbot: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clusterbot", description=__doc__)
    parser.add_argument("--version", action=VersionAction)
    parser.add_argument("--log-level", default="WARNING", help="DEBUG, INFO, WARNING, ...")
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_render(sub)
    for register in _extra_commands():
        register(sub)
    return parser


def _add_render(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("render", help="render saved crm_mon XML (a file, - for stdin)")
    p.add_argument("file", nargs="?", default="-", help="crm_mon --output-as=xml output, or -")
    p.add_argument("--example", choices=EXAMPLES, help="render a bundled real capture instead")
    p.add_argument("--format", choices=FORMATS, default="text")
    p.add_argument("--vip", action="append", default=[], help="resource id of a VIP (repeat)")
    p.add_argument("--everywhere", action="append", default=[],
                   help="clone that must run on every online node (repeat)")
    p.add_argument("--cluster", default="cluster", help="cluster name to show")
    p.set_defaults(handler=_render)


def _read_input(args: argparse.Namespace) -> bytes:
    if args.example:
        return (resources.files("bot") / "examples" / f"{args.example}.xml").read_bytes()
    if args.file == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(args.file).read_bytes()
    except OSError as exc:
        raise ClusterbotError(f"cannot read {args.file}: {exc.strerror}") from exc


def _render(args: argparse.Namespace) -> int:
    view = parse(_read_input(args))
    expect = Expectations(vips=tuple(args.vip), everywhere=tuple(args.everywhere))
    report = single(view, expect, cluster=args.cluster)
    print(format_reports([report], args.format, expect))
    return 0


def format_reports(reports: Sequence[ClusterReport], fmt: str,
                   expect: Expectations | Callable[[str], Expectations]) -> str:
    """Render reports in one of FORMATS; `expect` may be per cluster."""
    def exp(name: str) -> Expectations:
        return expect(name) if callable(expect) else expect
    if fmt == "json":
        data = [report_json(r) for r in reports]
        return json.dumps(data[0] if len(data) == 1 else data, indent=2)
    docs = [status_doc(r, exp(r.cluster)) for r in reports]
    if fmt == "blocks":
        payload = [{"text": fallback_text(d), "blocks": to_blocks(d)} for d in docs]
        return json.dumps(payload[0] if len(payload) == 1 else payload, indent=2)
    return "\n\n".join(to_text(d) for d in docs)


def _extra_commands() -> list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]]:
    """Subcommands of the shell, imported here so `render` stays light."""
    from bot import cli_run, ops

    return [ops.register, cli_run.register]


if __name__ == "__main__":
    sys.exit(main())
