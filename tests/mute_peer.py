"""A TCP peer that accepts connections and never answers: a TLS client's handshake waits on it
for ever (an API server or webhook receiver behind a load balancer with no backend)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


@asynccontextmanager
async def mute_peer() -> AsyncIterator[tuple[int, asyncio.Queue[asyncio.StreamReader]]]:
    """Its loopback port, and the reader of each connection it accepts (in order). Its
    connections and listening socket are closed on leaving."""
    accepted: asyncio.Queue[asyncio.StreamReader] = asyncio.Queue()
    writers: list[asyncio.StreamWriter] = []

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await accepted.put(reader)

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], accepted
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()
