"""Console backend: the same commands and renderers in a terminal (errbot's text backend).

Reads lines from a stream, so it works interactively and piped:
`echo "/cluster status" | clusterbot console`. `/as USER` switches identity.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TextIO

from bot.errors import ClusterbotError
from bot.render.text import plain, to_text
from commands import dispatch, lookup, parse_text
from commands.help import detail
from commands.spec import Invocation, Services, Source, UsageError

Extra = Callable[[tuple[str, ...]], Awaitable[str]]  # extra `/word ...` commands, e.g. /demo

BANNER = ("clusterbot console. Type /cluster help, /as USER to switch identity, "
          "Ctrl-D to quit.")


@dataclass
class Console:
    services: Services
    out: TextIO = field(default_factory=lambda: sys.stdout)
    user: str = "console"
    extras: dict[str, Extra] = field(default_factory=dict)
    prompt: bool = False

    def say(self, text: str) -> None:
        self.out.write(text.rstrip("\n") + "\n")
        self.out.flush()

    async def handle(self, line: str) -> None:
        line = line.strip()
        if not line or line.startswith("#"):
            return
        word, _, rest = line.partition(" ")
        if word == "/as":
            self.user = rest.strip() or self.user
            self.say(f"you are now {self.user}")
        elif word in self.extras:
            self.say(await self.extras[word](tuple(rest.split())))
        elif word in ("/cluster", "cluster") or not word.startswith("/"):
            await self.command(line)
        else:
            self.say(f"unknown console command {word}; try /cluster help")

    async def command(self, line: str) -> None:
        try:
            name, args = parse_text(line)
            inv = Invocation(name, args, user=self.user, source=Source.CONSOLE)
            spec = lookup(name)
            if spec is not None and spec.progress is not None:
                spec.bind(args)
                self.say(plain(spec.progress(inv, self.services)))
            reply = await dispatch(inv, self.services)
        except UsageError as err:
            usage = [f"usage: {err.spec.usage}", *detail(err.spec)] if err.spec else []
            self.say("\n".join([f"error: {err.message}", *usage]))
        except ClusterbotError as err:
            self.say(f"error: {err}")
        else:
            self.say(to_text(reply.doc))

    async def run(self, stream: TextIO) -> None:
        """Read commands until end of input; blocking reads happen off the event loop."""
        loop = asyncio.get_running_loop()
        while True:
            if self.prompt:
                self.out.write(f"{self.user}> ")
                self.out.flush()
            line = await loop.run_in_executor(None, stream.readline)
            if not line:
                return
            await self.handle(line)
