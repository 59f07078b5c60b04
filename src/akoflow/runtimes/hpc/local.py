"""The HPC runtime's transport when the engine itself runs on a login node
(``{NAME}_TRANSPORT=local``): SLURM's commands run here, as the engine's user, and the
runtime's files are read and written through the os module. No SSH, no credentials.

- Commands are argv lists for :func:`asyncio.create_subprocess_exec` (no shell), with the
  engine's environment minus the secrets it holds (sbatch hands its environment to the job),
  at most ``max_sessions`` at once, each bounded by a timeout (then killed: ambiguous, as an
  SSH command cut off mid-way).
- File operations run in a worker thread: MOUNT_PATH is often a network file system that can
  block for seconds.
- Staging is a local rsync (or nothing, when a volume's two sides are the same directory).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from akoflow.config import activity_environ
from akoflow.runtimes.hpc.transport import (
    Completed,
    RsyncRoute,
    TransportAmbiguous,
    TransportUnavailable,
)

T = TypeVar("T")


class LocalTransport:
    def __init__(self, *, command_timeout: float = 60.0, max_sessions: int = 8) -> None:
        self.command_timeout = command_timeout
        self._sessions = asyncio.Semaphore(max_sessions)
        self._opened = 0
        self._where = f"this host ({socket.gethostname()})"

    @property
    def where(self) -> str:
        return self._where

    @property
    def connections_opened(self) -> int:
        """One session for the transport's life (nothing to connect, nothing to lose)."""
        return self._opened

    @property
    def user(self) -> str | None:
        return None  # the settings name the engine's own user

    async def open(self) -> None:
        self._opened = self._opened or 1

    async def close(self) -> None:
        return None

    # ------------------------------------------------------------------ commands

    async def run(self, argv: Sequence[str], *, timeout: float | None = None) -> Completed:
        """Run ``argv`` here. Raises :class:`TransportUnavailable` when it could not be started
        (e.g. not on PATH) and :class:`TransportAmbiguous` when it was killed at its timeout."""
        await self.open()
        limit = timeout or self.command_timeout
        async with self._sessions:
            try:
                proc = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    env=activity_environ(),  # sbatch passes its environment to the job
                )
            except OSError as exc:
                raise TransportUnavailable(_not_started(argv[0], exc, self._where)) from None
            try:
                out, err = await asyncio.wait_for(proc.communicate(), limit)
            except TimeoutError:
                raise TransportAmbiguous(
                    f"{argv[0]} did not finish in {limit:g}s on {self._where} (killed)"
                ) from None
            finally:
                if proc.returncode is None:  # timed out or cancelled: never leave it behind
                    proc.kill()
                    await proc.wait()
        status = proc.returncode
        if status is None or status < 0:  # killed by a signal
            status = 255
        return Completed(status, out.decode(errors="replace"), err.decode(errors="replace"))

    async def missing_programs(self, programs: Sequence[str]) -> list[str]:
        path = activity_environ().get("PATH", os.defpath)
        return [p for p in programs if shutil.which(p, path=path) is None]

    async def rsync_route(self) -> RsyncRoute:
        return RsyncRoute()

    # ------------------------------------------------------------------ files

    async def write_files(self, directory: str, files: Mapping[str, bytes]) -> None:
        def write() -> None:
            os.makedirs(directory, exist_ok=True)
            for name, data in files.items():
                with open(os.path.join(directory, name), "wb") as f:
                    f.write(data)

        await self._file_op(write, directory)

    async def makedirs(self, path: str) -> None:
        await self._file_op(lambda: os.makedirs(path, exist_ok=True), path)

    async def mkdir_exclusive(self, path: str) -> bool:
        def mkdir() -> bool:
            try:
                os.mkdir(path)
            except FileExistsError:
                return False
            return True

        return await self._file_op(mkdir, path)

    async def read_from(self, path: str, offset: int, limit: int) -> bytes | None:
        def read() -> bytes | None:
            try:
                with open(path, "rb") as f:
                    f.seek(offset)
                    return f.read(limit)
            except FileNotFoundError:
                return None

        return await self._file_op(read, path)

    async def read_whole(self, path: str) -> bytes | None:
        def read() -> bytes | None:
            try:
                with open(path, "rb") as f:
                    return f.read()
            except OSError:
                return None

        return await asyncio.to_thread(read)

    async def _file_op(self, op: Callable[[], T], path: str) -> T:
        try:
            return await asyncio.to_thread(op)
        except OSError as exc:
            raise TransportUnavailable(f"{path} on {self._where}: {exc.strerror or exc}") from None


def _not_started(program: str, exc: OSError, where: str) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"{program} not found on the PATH of {where}"
    return f"cannot run {program} on {where}: {exc.strerror or exc}"
