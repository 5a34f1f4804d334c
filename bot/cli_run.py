"""`clusterbot console` and `clusterbot demo`: the interactive entry points."""

from __future__ import annotations

import argparse
import errno
import logging
from typing import TYPE_CHECKING

from bot.cli import whole_number
from bot.errors import ConfigError

if TYPE_CHECKING:  # imported where used: each command loads only what it needs
    from bot.settings import Settings

log = logging.getLogger(__name__)
_BIND_ERRORS = frozenset({errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES})


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    c = sub.add_parser("console", help="run the chat commands in this terminal (reads stdin)")
    c.set_defaults(handler=console_command)
    r = sub.add_parser("run", help="run the Slack bot (Socket Mode if SLACK_APP_TOKEN is set, "
                                   "else HTTP on --port)")
    r.add_argument("--port", type=whole_number(0, 65535), help="HTTP mode port (default 3000)")
    r.set_defaults(handler=run_command)
    d = sub.add_parser("demo", help="an embedded simulated 3-node cluster behind real SSH, "
                                    "with the console (no Slack, no cluster needed)")
    d.add_argument("--slack", action="store_true",
                   help="serve the demo cluster through the real Slack app instead of the console")
    d.set_defaults(handler=demo_command)


def console_command(args: argparse.Namespace) -> int:
    import asyncio

    from bot.runtime import console
    from bot.settings import load_settings

    asyncio.run(console(load_settings(args.config, need_clusters=True)))
    return 0


def run_command(args: argparse.Namespace) -> int:
    import asyncio

    from bot.settings import load_settings

    overrides = {"http_port": args.port} if args.port is not None else {}
    settings = load_settings(args.config, need_clusters=True, **overrides)
    refuse_problems(settings)
    from bot.slack.client import require_credentials

    require_credentials(settings)
    asyncio.run(_serve(settings))
    return 0


async def _serve(settings: Settings) -> None:
    """The Slack bot until SIGTERM; a port it cannot listen on is one line, not a traceback."""
    from bot.server import run_forever

    try:
        await run_forever(settings)
    except OSError as exc:
        if exc.errno not in _BIND_ERRORS:
            raise
        reason = str(exc).split("] ", 1)[-1]
        raise ConfigError(f"cannot listen: {reason}; check http_host, http_port and metrics_port") from exc
    log.info("clusterbot stopped")


def refuse_problems(settings: Settings) -> None:
    """Start only with a config `check-config` passes: a missing key or alert channel found at
    startup is one clear line, not nodes failing or alerts going astray at 3 a.m."""
    from bot.ops import config_problems

    problems = config_problems(settings)
    if problems:
        raise ConfigError("\n".join([*problems, "not starting: fix the above (clusterbot check-config "
                                                 "lists the same)"]))


def demo_command(args: argparse.Namespace) -> int:
    import asyncio

    asyncio.run(_demo(slack=args.slack, config=args.config))
    return 0


async def _demo(slack: bool, config: str | None = None) -> None:
    from bot.demo.cluster import USAGE, DemoCluster, demo_approvers
    from bot.runtime import console
    from bot.settings import DEFAULT_ALERT_CHANNEL, load_settings

    async with DemoCluster() as demo:
        settings = load_settings(config, clusters=(demo.config(),), state_dir=demo.keys.directory)  # type: ignore[union-attr]
        approvers, who = demo_approvers(settings.approvers, slack=slack)
        settings = settings.model_copy(update={"approvers": approvers})
        print(f"demo: a simulated 3-node cluster {demo.name!r} answers over SSH on 127.0.0.1 "
              f"ports {', '.join(str(s.port) for s in demo.servers.values())}")
        print(f"demo: break it with {USAGE}")
        print("demo: fix it with e.g. /cluster cleanup prod-haproxy virtual_ip_2")
        print(who, flush=True)
        if slack:
            # A demo in a workspace says where alerts go instead of refusing: it has no config.
            where = settings.alert_channel or f"a channel named #{DEFAULT_ALERT_CHANNEL}"
            print(f"demo: alerts go to {where} (set CLUSTERBOT_ALERT_CHANNEL to change it)")
            await _serve(settings)
            return
        await console(settings, extras={"/demo": demo.demo_command}, intro=("/cluster status",))
