"""`clusterbot console` and `clusterbot demo`: the interactive entry points."""

from __future__ import annotations

import argparse
import asyncio

from bot.settings import load_settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    c = sub.add_parser("console", help="run the chat commands in this terminal (reads stdin)")
    c.add_argument("--config", help="TOML config file (default: $CLUSTERBOT_CONFIG)")
    c.set_defaults(handler=console_command)
    d = sub.add_parser("demo", help="an embedded simulated 3-node cluster behind real SSH, "
                                    "with the console (no Slack, no cluster needed)")
    d.set_defaults(handler=demo_command)


def console_command(args: argparse.Namespace) -> int:
    from bot.runtime import console

    asyncio.run(console(load_settings(args.config)))
    return 0


def demo_command(args: argparse.Namespace) -> int:
    asyncio.run(_demo())
    return 0


async def _demo() -> None:
    from bot.demo.cluster import USAGE, DemoCluster
    from bot.runtime import console

    async with DemoCluster() as demo:
        settings = load_settings(None, clusters=(demo.config(),), state_dir=demo.keys.directory)  # type: ignore[union-attr]
        print(f"demo: a simulated 3-node cluster {demo.name!r} answers over SSH on 127.0.0.1 "
              f"ports {', '.join(str(s.port) for s in demo.servers.values())}")
        print(f"demo: break it with {USAGE}")
        await console(settings, extras={"/demo": demo.demo_command}, intro=("/cluster status",))
