"""Files between the engine host's data dir and MOUNT_PATH on the cluster, through the
runtime's one SSH connection (SFTP on it: no new login per copy, which sites with MFA depend
on), or with plain copies when the engine runs on the login node.

A file's path under MOUNT_PATH is its path under the run's data dir (activities run in
MOUNT_PATH and name their files relative to it). Each copy is written under a temporary name,
checked (size and SHA-256, computed on the cluster by ``wc -c`` and ``sha256sum``), then
renamed into place. No user value enters a shell command: the remote path travels as an
argument of octal escapes that ``printf`` turns back into its bytes (any name, also one that
is not UTF-8 or ends with a newline).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO, cast

import asyncssh

from akoflow.dataplane.mover import Digest, TransferFailed, open_part, part_name
from akoflow.provenance.names import display, to_bytes
from akoflow.runtimes.base import RuntimeUnavailable
from akoflow.runtimes.hpc.ssh import SshLink, SshUnavailable
from akoflow.runtimes.hpc.transport import Transport

# Size and SHA-256 of the file named (in octal escapes) by $1; the trailing x keeps a name's
# final newlines through the command substitution.
_DIGEST = 'f=$(printf "$1"; printf x); f=${f%x}; wc -c < "$f" && sha256sum < "$f"'
_RENAME = (
    'a=$(printf "$1"; printf x); a=${a%x}; b=$(printf "$2"; printf x); b=${b%x}; '
    'if [ -d "$b" ] && [ ! -L "$b" ]; then '
    'echo "a directory has that name there" >&2; rm -f -- "$a"; exit 3; fi; '
    'mv -f -- "$a" "$b"'
)
# The directories of $2 (relative) under MOUNT_PATH ($1), made one by one: a symbolic link on
# the way (an activity's `ln -s /elsewhere dir`) is refused, never written through.
_MKDIR = """m=$(printf "$1"; printf x); m=${m%x}; r=$(printf "$2"; printf x); r=${r%x}
mkdir -p -- "$m" || exit 1
p=$m; IFS=/; set -f
for c in $r; do
  [ -n "$c" ] || continue
  p=$p/$c
  if [ -L "$p" ]; then echo "a symbolic link on the way: never written through" >&2; exit 3; fi
  [ -d "$p" ] || mkdir -- "$p" || exit 1
done"""
# Size, inode and change time of each file named (in octal escapes) by the arguments, one line
# each ("-" when missing).
_STATS = (
    'for a; do f=$(printf "$a"; printf x); f=${f%x}; '
    'stat -c "%s %i %.9Z" -- "$f" 2>/dev/null || echo -; done'
)
_REMOVE = 'f=$(printf "$1"; printf x); rm -f -- "${f%x}"'


STAT_BATCH = 200  # paths per `stat` command (argv stays far below its limit)


def stamp_of(identity: str) -> int:
    """A file's stamp from its inode and change time (ns where ``stat`` prints them): a copy
    renamed into place by someone else has a new inode, a rewrite in place (same size, same
    inode: ``cat other > file``) a new change time, which no user can set back."""
    return int.from_bytes(hashlib.sha256(identity.encode()).digest()[:7], "big")


READ_CHUNK = 4 << 20  # bytes of a fetch written to the host's file at once


def _write_hashed(out: BinaryIO, digest: Any, chunk: bytes) -> None:
    out.write(chunk)
    digest.update(chunk)


def _copy_from(src: bytes, out: BinaryIO) -> Digest:
    """A local copy (the engine on the login node), hashed as it is written."""
    digest = hashlib.sha256()
    size = 0
    with open(src, "rb") as f:
        while chunk := f.read(READ_CHUNK):
            _write_hashed(out, digest, chunk)
            size += len(chunk)
    return Digest(size, digest.hexdigest())


def octal(raw: bytes) -> str:
    """``raw`` as printf escapes: ASCII only, no character the shell or printf would read."""
    return "".join(f"\\{b:03o}" for b in raw)


def parse_digest(stdout: str) -> Digest | None:
    lines = stdout.split()
    if len(lines) < 2 or not lines[0].isdigit() or len(lines[1]) != 64:
        return None
    return Digest(int(lines[0]), lines[1].lower())


class HpcMover:
    def __init__(
        self,
        location: str,
        mount_path: str,
        transport: Callable[[], Awaitable[Transport]],
        *,
        run_tag: str = "",
    ) -> None:
        self._location = location
        self._run_tag = run_tag  # runs sharing MOUNT_PATH never write the same temporary file
        self._mount = os.fsencode(mount_path.rstrip("/") or "/")
        self._transport = transport

    @property
    def location(self) -> str:
        return self._location

    def _remote(self, path: str) -> bytes:
        return self._mount + b"/" + to_bytes(path)

    async def _sh(self, script: str, *args: bytes) -> str:
        transport = await self._transport()
        result = await transport.run(["sh", "-c", script, "sh", *(octal(a) for a in args)])
        if result.exit_status != 0:
            said = result.stderr.strip()[-300:] or f"exit {result.exit_status}"
            raise TransferFailed(f"on {self._location}: {said}")
        return result.stdout

    async def _digest(self, remote: bytes) -> Digest:
        found = parse_digest(await self._sh(_DIGEST, remote))
        if found is None:
            raise TransferFailed(f"cannot hash {display(os.fsdecode(remote))} on {self._location}")
        return found

    async def put(self, source: Path, path: str, expected: Digest) -> None:
        remote = self._remote(path)
        part = part_name(remote, self._run_tag)
        await self._sh(_MKDIR, self._mount, to_bytes(path).rpartition(b"/")[0])
        transport = await self._transport()
        try:
            await self._upload(transport, os.fsencode(source), part, path)
            arrived = await self._digest(part)
            if arrived != expected:
                raise TransferFailed(
                    f"{display(path)} arrived at {self._location} as {arrived.size} bytes "
                    f"(sha256 {arrived.sha256[:12]}), sent {expected.size} "
                    f"(sha256 {expected.sha256[:12]})"
                )
            await self._sh(_RENAME, part, remote)
        except BaseException:
            # A copy cut short leaves no partial file filling the cluster's disk.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._sh(_REMOVE, part))
            raise

    async def get(self, path: str, destination: Path) -> Digest:
        remote = self._remote(path)
        local = os.fsencode(destination)
        part = part_name(local)
        transport = await self._transport()
        # The cluster hashes its file while it is copied (both read it once, from its cache):
        # a file that changed meanwhile differs from one side or the other.
        expected, arrived = await asyncio.gather(
            self._digest(remote), self._download(transport, remote, part, path)
        )
        if arrived != expected:
            with contextlib.suppress(OSError):
                os.unlink(part)
            raise TransferFailed(
                f"{display(path)} came from {self._location} as {arrived.size} bytes, "
                f"{expected.size} there (or it changed while being copied)"
            )
        try:
            os.replace(part, local)
        except OSError as exc:  # a directory has that name on the host now, ...
            with contextlib.suppress(OSError):
                os.unlink(part)
            raise TransferFailed(
                f"cannot put {display(path)} from {self._location} in place in the data dir: "
                f"{exc.strerror}"
            ) from None
        return arrived

    async def stats(self, paths: Sequence[str]) -> dict[str, tuple[int, int]] | None:
        """Checked before trusting a record: MOUNT_PATH is shared with other runs (and the
        user), so a file copied there earlier may have been replaced since. One command per
        :data:`STAT_BATCH` paths: ``stat`` prints each one's size, inode and change time."""
        found: dict[str, tuple[int, int]] = {}
        for start in range(0, len(paths), STAT_BATCH):
            batch = list(paths[start : start + STAT_BATCH])
            out = await self._sh(_STATS, *(self._remote(p) for p in batch))
            lines = out.split("\n")
            for path, line in zip(batch, lines, strict=False):
                size, _, identity = line.partition(" ")
                if size.isdigit() and identity:
                    found[path] = (int(size), stamp_of(identity))
        return found

    async def _download(self, transport: Transport, src: bytes, part: bytes, name: str) -> Digest:
        """``src`` on the cluster into a new file ``part`` on the host (:func:`open_part`: a
        link or a FIFO an activity left at that name is removed, never written through or
        waited on), hashed while it is written."""
        fd = await asyncio.to_thread(open_part, part)
        try:
            with os.fdopen(fd, "wb", closefd=True) as out:
                if isinstance(transport, SshLink):
                    return await self._sftp_read(transport, src, out, name)
                try:  # the engine is on the login node
                    return await asyncio.to_thread(_copy_from, src, out)
                except OSError as exc:
                    raise TransferFailed(f"copy on {self._location}: {exc.strerror}") from None
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(part)
            raise

    async def _sftp_read(self, link: SshLink, src: bytes, out: BinaryIO, name: str) -> Digest:
        sftp = await link.sftp()
        digest = hashlib.sha256()
        size = 0

        async def copy(moved: Callable[..., None]) -> None:
            # Bounded by progress, as an upload: each block that arrives moves the clock on (a
            # slow link's 4 MiB may take longer than the command timeout; a server that
            # stopped answering, a hung file system, sends none). Parallel requests of this
            # task's own: none is left behind unretrieved when the copy is cut.
            nonlocal size
            # block_size=0: each read is one request (else asyncssh runs it in a task of its
            # own, left unretrieved when the read is cancelled)
            remote = await sftp.open(src, "rb", encoding=None, block_size=0)
            moved()
            block = max(1, sftp.limits.max_read_len or (16 << 10))
            window = max(4, min(128, READ_CHUNK // block))  # READ_CHUNK in flight at most
            reads: collections.deque[tuple[int, asyncio.Future[Any]]] = collections.deque()
            offset, ended, pending = 0, False, bytearray()
            try:
                while not ended:
                    while len(reads) < window:
                        reads.append((offset, asyncio.ensure_future(remote.read(block, offset))))
                        offset += block
                    at, reading = reads.popleft()
                    data = cast(bytes, await reading)  # opened without an encoding
                    moved()
                    while data and len(data) < block:  # a short read: the rest, or the end
                        more = cast(bytes, await remote.read(block - len(data), at + len(data)))
                        moved()
                        if not more:
                            break
                        data += more
                    ended = len(data) < block
                    pending += data
                    if len(pending) >= READ_CHUNK or ended:
                        chunk, pending = bytes(pending), bytearray()
                        await asyncio.to_thread(_write_hashed, out, digest, chunk)
                        size += len(chunk)
            except asyncio.CancelledError:
                raise  # stalled: its close would wait on the same server (the login is closed)
            except BaseException:
                with contextlib.suppress(Exception):
                    await remote.close()
                raise
            finally:
                for _, left in reads:
                    left.cancel()
                    left.add_done_callback(lambda t: t.cancelled() or t.exception())
            await remote.close()

        try:
            await _progressing(link.command_timeout, copy)
        except TimeoutError:
            link.stalled(sftp)
            raise SshUnavailable(
                f"sftp {self._location}: no answer in {link.command_timeout:g} s while copying "
                f"{display(name)}"
            ) from None
        except (asyncssh.SFTPConnectionLost, asyncssh.DisconnectError, ConnectionError) as exc:
            link.broken()  # the login went away under the copy: wait and copy again
            raise SshUnavailable(f"sftp {self._location}: {exc}") from None
        except asyncssh.SFTPError as exc:
            raise TransferFailed(
                f"copying {display(name)} from {self._location}: {exc.reason}"
            ) from None
        except OSError as exc:
            if isinstance(exc, RuntimeUnavailable):
                raise
            raise TransferFailed(
                f"copying {display(name)} from {self._location}: {exc.strerror or exc}"
            ) from None
        except asyncssh.Error as exc:
            raise SshUnavailable(f"sftp {self._location}: {exc}") from None
        return Digest(size, digest.hexdigest())

    async def _upload(self, transport: Transport, src: bytes, dst: bytes, name: str) -> None:
        if not isinstance(transport, SshLink):  # the engine is on the login node
            fd = await asyncio.to_thread(open_part, dst)  # never through a link left there
            try:
                with os.fdopen(fd, "wb") as out:
                    await asyncio.to_thread(_copy_from, src, out)
            except OSError as exc:
                raise TransferFailed(f"copy on {self._location}: {exc.strerror}") from None
            return
        sftp = await transport.sftp()
        try:
            # A link a job left at the temporary name goes first (SFTP opens what is there).
            with contextlib.suppress(asyncssh.SFTPNoSuchFile):
                await asyncio.wait_for(sftp.remove(dst), transport.command_timeout)
            # sparse=False: a file that ends in a hole is copied to its full length.
            await _progressing(
                transport.command_timeout,
                lambda moved: sftp.put(src, dst, sparse=False, progress_handler=moved),
            )
        except TimeoutError:
            transport.stalled(sftp)
            raise SshUnavailable(
                f"sftp {self._location}: no answer in {transport.command_timeout:g} s while "
                f"copying {display(name)}"
            ) from None
        except (asyncssh.SFTPConnectionLost, asyncssh.DisconnectError, ConnectionError) as exc:
            # The login went away under the copy (sshd restarted, the network): wait and
            # copy again, as for any command; not the file's fault.
            transport.broken()
            raise SshUnavailable(f"sftp {self._location}: {exc}") from None
        except asyncssh.SFTPError as exc:
            hint = ""
            if isinstance(exc, asyncssh.SFTPFailure):
                hint = " (SFTP says no more when the file system there is full or read-only)"
            raise TransferFailed(
                f"copying {display(name)} to {self._location}: {exc.reason}{hint}"
            ) from None
        except OSError as exc:
            if isinstance(exc, RuntimeUnavailable):
                raise
            raise TransferFailed(
                f"copying {display(name)} to {self._location}: {exc.strerror or exc}"
            ) from None
        except asyncssh.Error as exc:
            raise SshUnavailable(f"sftp {self._location}: {exc}") from None


async def _progressing(
    timeout: float, copy: Callable[[Callable[..., None]], Awaitable[None]]
) -> None:
    """Run ``copy`` (given a progress handler, as asyncssh's ``put`` takes one): a copy of
    any length goes on while blocks arrive; none for ``timeout`` seconds raises TimeoutError
    (the server stopped answering: a hung file system)."""
    loop = asyncio.get_running_loop()
    last = loop.time()

    def moved(*_: object) -> None:
        nonlocal last
        last = loop.time()

    task = asyncio.ensure_future(copy(moved))
    try:
        while True:
            left = last + timeout - loop.time()
            done, _ = await asyncio.wait({task}, timeout=max(left, 0.0))
            if done:
                return task.result()
            if loop.time() - last >= timeout:
                raise TimeoutError
    finally:
        if not task.done():
            task.cancel()  # not awaited: it may wait on the server that stopped answering
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
