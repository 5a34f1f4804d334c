"""Command line: the composition root. Parses arguments, builds the shell objects, runs a job.

Exit codes: 0 success, 1 a cluster is unhealthy or partly unreachable, 2 usage/config/input error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bot import log
from bot.errors import ClusterbotError
from bot.version import VersionAction

if TYPE_CHECKING:  # imported where used: `--help` and each command load only what they need
    from bot.pacemaker.health import Expectations
    from bot.pacemaker.merge import ClusterReport

EXIT_OK, EXIT_UNHEALTHY, EXIT_USAGE = 0, 1, 2
EXAMPLES = ("healthy", "standby-node2", "node3-crashed")
FORMATS = ("text", "blocks", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# The long-running commands log their lifecycle (started, incidents, approvals) at INFO, so a
# journal shows them by default; one-shot commands keep stderr for warnings and errors.
SERVICE_COMMANDS = frozenset({"run"})
NO_CONFIG_COMMANDS = frozenset({"render"})
EXIT_SIGPIPE = 128 + 13  # what a shell reports for a writer whose reader went away


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.config is not None and args.command in NO_CONFIG_COMMANDS:
        parser.error(f"{args.command} reads no config file; drop --config")
    serving = args.command in SERVICE_COMMANDS or getattr(args, "slack", False)  # demo --slack
    log.setup(args.log_level or ("INFO" if serving else "WARNING"), args.log_format)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        code = handler(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's final flush
        return code
    except ClusterbotError as exc:
        for line in str(exc).splitlines():
            print(f"clusterbot: {line}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return _reader_left()


def _reader_left() -> int:
    """`clusterbot … | head` closed our stdout: stop quietly, as other Unix tools do. Python
    would otherwise print a second BrokenPipeError when it flushes stdout at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EXIT_SIGPIPE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clusterbot", description=__doc__)
    parser.add_argument("--version", action=VersionAction)
    _add_global_options(parser, None)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_render(sub)
    for register in _extra_commands():
        register(sub)
    for name, command in sub.choices.items():
        # Accepted after the subcommand too (`clusterbot run --log-level info`); SUPPRESS keeps
        # an option given before the subcommand when it is not repeated after it.
        _add_global_options(command, argparse.SUPPRESS, config=name not in NO_CONFIG_COMMANDS)
    return parser


def _add_global_options(p: argparse.ArgumentParser, default: str | None, *, config: bool = True) -> None:
    p.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS, default=default,
                   metavar="{debug,info,warning,error,critical}",
                   help="default: info for `run` and `demo --slack`, else warning")
    p.add_argument("--log-format", choices=("text", "json"), default=default or "text")
    if config:
        p.add_argument("--config", default=default, metavar="FILE",
                       help="TOML config file (default: $CLUSTERBOT_CONFIG, else "
                            "/etc/clusterbot/clusterbot.toml)")


def whole_number(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a bad count or port is a usage error naming the option, before any
    config is read, not a silent 'everything' or an error blamed on the config file."""
    def parse(text: str) -> int:
        value = int(text) if text.isdigit() else -1
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected a whole number from {low} to {high}, got {text!r}")
        return value
    return parse


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
    from importlib import resources

    if args.example:
        return (resources.files("bot") / "examples" / f"{args.example}.xml").read_bytes()
    if args.file == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(args.file).read_bytes()
    except OSError as exc:
        raise ClusterbotError(f"cannot read {args.file}: {exc.strerror}") from exc


def _render(args: argparse.Namespace) -> int:
    from bot.pacemaker.health import Expectations
    from bot.pacemaker.merge import single
    from bot.pacemaker.parse import parse

    view = parse(_read_input(args))
    expect = Expectations(vips=tuple(args.vip), everywhere=tuple(args.everywhere))
    report = single(view, expect, cluster=args.cluster)
    print(format_reports([report], args.format, expect))
    return EXIT_OK if report.healthy else EXIT_UNHEALTHY


def format_reports(reports: Sequence[ClusterReport], fmt: str,
                   expect: Expectations | Callable[[str], Expectations]) -> str:
    """Render reports in one of FORMATS; `expect` may be per cluster."""
    import json

    def exp(name: str) -> Expectations:
        return expect(name) if callable(expect) else expect
    if fmt == "json":
        from bot.render.json import report_json

        data = [report_json(r) for r in reports]
        return json.dumps(data[0] if len(data) == 1 else data, indent=2)
    from bot.render.status import status_doc
    from bot.render.text import to_text

    docs = [status_doc(r, exp(r.cluster)) for r in reports]
    if fmt == "blocks":
        from bot.render.blocks import fallback_text, to_blocks

        payload = [{"text": fallback_text(d), "blocks": to_blocks(d)} for d in docs]
        return json.dumps(payload[0] if len(payload) == 1 else payload, indent=2)
    return "\n\n".join(to_text(d) for d in docs)


def _extra_commands() -> list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]]:
    """Subcommands of the shell, imported here so `render` stays light."""
    from bot import cli_run, ops

    return [ops.register, cli_run.register]


if __name__ == "__main__":
    sys.exit(main())
