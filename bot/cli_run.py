"""`clusterbot console` and `clusterbot demo`: the interactive entry points."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    c = sub.add_parser("console", help="run the chat commands in this terminal (reads stdin)")
    c.add_argument("--config", help="TOML config file (default: $CLUSTERBOT_CONFIG)")
    c.set_defaults(handler=console_command)
    r = sub.add_parser("run", help="run the Slack bot (Socket Mode if SLACK_APP_TOKEN is set, "
                                   "else HTTP on --port)")
    r.add_argument("--config", help="TOML config file (default: $CLUSTERBOT_CONFIG)")
    r.add_argument("--port", type=int, help="HTTP mode port (default 3000)")
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

    asyncio.run(console(load_settings(args.config)))
    return 0


def run_command(args: argparse.Namespace) -> int:
    import asyncio

    from bot.server import run_forever
    from bot.settings import load_settings

    overrides = {"http_port": args.port} if args.port is not None else {}
    asyncio.run(run_forever(load_settings(args.config, **overrides)))
    return 0


def demo_command(args: argparse.Namespace) -> int:
    import asyncio

    asyncio.run(_demo(slack=args.slack))
    return 0


async def _demo(slack: bool) -> None:
    from bot.demo.cluster import USAGE, DemoCluster
    from bot.runtime import console
    from bot.settings import load_settings

    async with DemoCluster() as demo:
        settings = load_settings(None, clusters=(demo.config(),), state_dir=demo.keys.directory)  # type: ignore[union-attr]
        print(f"demo: a simulated 3-node cluster {demo.name!r} answers over SSH on 127.0.0.1 "
              f"ports {', '.join(str(s.port) for s in demo.servers.values())}")
        print(f"demo: break it with {USAGE}")
        print("demo: fix it with e.g. /cluster cleanup prod-haproxy virtual_ip_2; approvers are alice "
              "and bob: /as alice, then /approve ID")
        if slack:
            from bot.server import run_forever

            await run_forever(settings)
            return
        await console(settings, extras={"/demo": demo.demo_command}, intro=("/cluster status",))
