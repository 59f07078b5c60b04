"""The engine's side of :mod:`.rsync_relay`: a Unix socket in the link's private 0700
directory where rsync's remote shell asks for ``rsync --server ...`` to run on the SSH
connection the runtime already has. One login per cluster, for commands, files and staging.

Only ``rsync --server`` commands are run (the socket belongs to this engine's user, but a
socket that runs anything would be a shell for whoever reaches it). The command is joined with
:func:`shlex.join` for the remote shell, as every other command of the link.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shlex
import struct
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from akoflow.runtimes.hpc.rsync_relay import EXIT, STDERR, STDOUT
from akoflow.runtimes.hpc.transport import RsyncRoute

log = logging.getLogger(__name__)

RELAY_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rsync_relay.py")
CHUNK = 1 << 16

# Starts the remote command on the link's connection; raises RuntimeFailure when it cannot.
ProcessStarter = Callable[[str], Awaitable[Any]]


def frame(kind: int, data: bytes) -> bytes:
    return bytes([kind]) + struct.pack(">I", len(data)) + data


# Options that would make the remote rsync a daemon, read a config, or run other programs:
# never what the engine's own staging asks for.
_REFUSED = ("--daemon", "--config", "--dparam", "--rsh", "--rsync-path", "--remote-option", "-M")
REQUEST_TIMEOUT = 30.0  # s for a client to say what it wants


def allowed(argv: object) -> bool:
    """Only rsync's server side, as rsync's client asks for it."""
    return (
        isinstance(argv, list)
        and len(argv) >= 2
        and all(isinstance(a, str) for a in argv)
        and argv[0] == "rsync"
        and argv[1] == "--server"
        and not any(a.startswith(_REFUSED) for a in argv[2:])
    )


class RsyncRelay:
    def __init__(self, directory: str, start_process: ProcessStarter) -> None:
        self.path = os.path.join(directory, "rsync.sock")
        self._start_process = start_process
        self._server: asyncio.AbstractServer | None = None
        self._lock = asyncio.Lock()
        self.commands = 0
        """Remote rsync commands run through the connection (for tests and benchmarks)."""

    async def route(self) -> RsyncRoute:
        async with self._lock:
            if self._server is None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
                self._server = await asyncio.start_unix_server(self._serve, self.path)
                os.chmod(self.path, 0o600)
        rsh = shlex.join([sys.executable, "-I", "-S", RELAY_SCRIPT, self.path])
        return RsyncRoute(rsh, "cluster")

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._relay(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # rsync went away: its own exit status tells the runtime
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                line = await reader.readline()
            argv = json.loads(line)
        except (ValueError, TimeoutError):
            argv = None
        if not allowed(argv):
            writer.write(frame(STDERR, b"akoflow: only rsync --server runs here\n"))
            writer.write(frame(EXIT, b"1"))
            await writer.drain()
            return
        try:
            proc = await self._start_process(shlex.join(argv))
        except Exception as exc:  # the connection is down or refused the channel
            writer.write(frame(STDERR, f"akoflow: {exc}\n".encode(errors="replace")))
            writer.write(frame(EXIT, b"255"))
            await writer.drain()
            return
        self.commands += 1
        async with proc:
            feed = asyncio.create_task(self._feed(reader, proc))
            try:
                await asyncio.gather(
                    self._drain(proc.stdout, STDOUT, writer),
                    self._drain(proc.stderr, STDERR, writer),
                )
                await proc.wait_closed()
            finally:
                feed.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await feed
            status = proc.exit_status
            if status is None or status < 0:
                status = 255  # the connection broke or a signal ended it
            writer.write(frame(EXIT, str(status).encode()))
            await writer.drain()

    @staticmethod
    async def _feed(reader: asyncio.StreamReader, proc: Any) -> None:
        while data := await reader.read(CHUNK):
            proc.stdin.write(data)
            await proc.stdin.drain()
        proc.stdin.write_eof()

    @staticmethod
    async def _drain(stream: Any, kind: int, writer: asyncio.StreamWriter) -> None:
        while data := await stream.read(CHUNK):
            writer.write(frame(kind, data))
            await writer.drain()
