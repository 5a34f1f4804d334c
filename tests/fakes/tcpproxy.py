"""A loopback TCP proxy the test controls: the network between a replica and its database.

    async with TcpProxy("127.0.0.1", pg_port) as proxy:
        url = pg.url(db, port=proxy.port)     # the replica connects through it
        proxy.cut()                           # a partition: bytes stop flowing, nobody is told
        await proxy.sever_upstream()          # ... until the server's keepalives give up on it
        proxy.heal()                          # new connections flow again

`cut` black-holes every open connection both ways and refuses new ones by never answering
them, as a dead link does: the client sees no reset, only silence. A real server would drop its
side once its TCP keepalives failed; `sever_upstream` does that on cue (the proxy's own kernel
would otherwise answer the server's keepalive probes for the dead client).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

CHUNK = 65536


@dataclass
class _Link:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class TcpProxy:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.links: list[_Link] = []
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._held: list[asyncio.StreamWriter] = []  # connections accepted while cut: never answered

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._server is not None:
            self._server.close()
        for link in self.links:
            for task in link.tasks:
                task.cancel()
            await asyncio.gather(*link.tasks, return_exceptions=True)
            for w in (link.client, link.server):
                w.close()
        for w in self._held:
            w.close()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await self._server.wait_closed()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def cut(self) -> None:
        self.flowing.clear()

    def heal(self) -> None:
        self.flowing.set()

    async def sever_upstream(self) -> None:
        """Drop the server side of every connection (what the server does when keepalives fail)."""
        for link in self.links:
            link.server.transport.abort()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if not self.flowing.is_set():
            self._held.append(writer)  # a SYN into the void: connected, then silence
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        link = _Link(writer, up_writer)
        link.tasks = [asyncio.create_task(self._pump(reader, up_writer)),
                      asyncio.create_task(self._pump(up_reader, writer))]
        self.links.append(link)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(CHUNK):
                await self.flowing.wait()  # cut: held here, never delivered while the link is dead
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                # The other side ended: pass it on, unless cut (a dead link carries no FIN either).
                if self.flowing.is_set():
                    writer.close()
