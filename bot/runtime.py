"""Wiring: Settings -> SSH pool, collector, services. One place builds the shell objects."""

from __future__ import annotations

import sys
from contextlib import AsyncExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import TextIO

from bot.collect import Collector
from bot.console import BANNER, Console, Extra
from bot.services import AppServices
from bot.settings import Settings
from bot.ssh import SshPool


@dataclass
class Runtime:
    settings: Settings
    pool: SshPool
    collector: Collector
    services: AppServices

    @classmethod
    async def start(cls, settings: Settings, stack: AsyncExitStack) -> Runtime:
        pool = await stack.enter_async_context(SshPool())
        collector = Collector(pool, settings)
        return cls(settings, pool, collector, AppServices(settings, collector))


class running:
    """`async with running(settings) as rt:` builds a Runtime and closes it afterwards."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stack = AsyncExitStack()

    async def __aenter__(self) -> Runtime:
        return await Runtime.start(self.settings, self.stack)

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stack.aclose()


async def console(settings: Settings, stream: TextIO = sys.stdin,
                  extras: dict[str, Extra] | None = None, intro: tuple[str, ...] = ()) -> None:
    async with running(settings) as rt:
        con = Console(rt.services, extras=extras or {}, prompt=stream.isatty())
        con.say(BANNER)
        for line in intro if stream.isatty() else ():  # piped input brings its own commands
            con.say(f"> {line}")
            await con.handle(line)
        await con.run(stream)
