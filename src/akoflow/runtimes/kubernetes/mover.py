"""Files between the engine host's data dir and a run's PVC, through the API server alone:
one ``pods/exec`` of a constant script in the run's transfer pod (:mod:`.transfer`) per copy.

A file's path on the PVC is its path under the run's data dir (activities work at the PVC's
root, their ``mountPath``). Each copy is one file, streamed (never whole in memory) as the
command's stdin or stdout, so it costs one API request:

- ``put``: the pod reads exactly the file's size (``head -c``: also over
  ``v4.channel.k8s.io``, whose stdin cannot be closed) into a temporary name beside its place,
  checks its size and SHA-256 against what the engine expects, and only then renames it into
  place; a copy that differs is removed there and fails with both digests.
- ``get``: the pod prints the file's size and SHA-256, then the file; the engine writes it
  under a temporary name, hashes what arrived, and renames it into place only if both agree.

The temporary names are :func:`~akoflow.dataplane.mover.part_name`'s, the same each time: a
copy cut short (an engine killed) is replaced when it is made again, never taken for the
file. In the pod the temporary file is removed before it is written, so the new copy is a
new file: the command of a copy whose engine died may still be reading its last bytes (the
container's process outlives its exec stream), and it writes to the old file, never into
the new one; if it then removes the name, the new copy's check fails (nothing is trusted).
Names are bytes end to end: they reach the scripts as arguments escaped to ASCII
(:func:`~.pod_copy.escape`, decoded in the pod by ``printf %b``), never as shell text. The
transfer image needs ``sh``, ``head``, ``cat``, ``wc``, ``sha256sum``, ``mkdir``, ``mv`` and
``printf`` (busybox has them).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import BinaryIO

from akoflow.dataplane.mover import Digest, TransferFailed, open_part, part_name
from akoflow.provenance.names import display, to_bytes
from akoflow.runtimes.base import RuntimeUnavailable
from akoflow.runtimes.kubernetes.manifests import TRANSFER_MOUNT
from akoflow.runtimes.kubernetes.pod_copy import escape
from akoflow.runtimes.kubernetes.tarstream import CopyError, clean_name
from akoflow.runtimes.kubernetes.transfer import PodKey, TransferPods, TransferRun

CHUNK = 256 * 1024
REFUSED = 3  # the scripts' exit code for a copy they refuse (its reason on stderr)

_DECODE = 'd() { printf "%bx" "$1"; }\n' + f"cd {TRANSFER_MOUNT} || exit\n"
# $1 the file, $2 its temporary name, $3 its directory (escaped), $4 size, $5 SHA-256.
PUT = _DECODE + (
    'f=$(d "$1"); f="./${f%x}"; p=$(d "$2"); p="./${p%x}"; dir=$(d "$3"); dir="./${dir%x}"\n'
    'mkdir -p -- "$dir" || exit\n'
    'if [ -d "$f" ]; then echo "a directory has that name there" >&2; exit 3; fi\n'
    'rm -f -- "$p"; head -c "$4" > "$p" || exit\n'
    's=$(wc -c < "$p") && h=$(sha256sum < "$p") || exit\n'
    "h=${h%% *}\n"
    'if [ "$((s))" != "$4" ] || [ "$h" != "$5" ]; then\n'
    '  rm -f -- "$p"; echo "arrived as $((s)) bytes (sha256 $h)" >&2; exit 3\n'
    "fi\n"
    'mv -f -- "$p" "$f"\n'
)
# $1 the file (escaped). Prints "SIZE SHA256", then the file.
GET = _DECODE + (
    'f=$(d "$1"); f="./${f%x}"\n'
    'if [ -L "$f" ]; then echo "it is a symbolic link there" >&2; exit 3; fi\n'
    'if [ ! -f "$f" ]; then echo "no such file there" >&2; exit 3; fi\n'
    's=$(wc -c < "$f") && h=$(sha256sum < "$f") || exit\n'
    'echo "$((s)) ${h%% *}"\n'
    'exec cat < "$f"\n'
)

KILLED = (137, 143)  # the copy's shell was killed (the transfer pod deleted, evicted)


def parse_digest(line: bytes) -> Digest | None:
    """``SIZE SHA256`` as the GET script prints it."""
    parts = line.decode("ascii", "replace").split()
    if len(parts) != 2 or not parts[0].isdigit() or len(parts[1]) != 64:
        return None
    return Digest(int(parts[0]), parts[1].lower())


def _relative(path: str) -> bytes:
    """``path`` as bytes under the PVC's root; a name that would leave it is refused."""
    try:
        name = clean_name(to_bytes(path))
    except CopyError as exc:
        raise TransferFailed(str(exc)) from None
    if not name:
        raise TransferFailed(f"{display(path)!r} names no file")
    return name


async def _file_chunks(f: BinaryIO, size: int, shown: str) -> AsyncIterator[bytes]:
    """The first ``size`` bytes of ``f``; a file that became shorter fails the copy (the pod
    would wait for the rest forever over v4)."""
    await asyncio.to_thread(f.seek, 0)
    left = size
    while left > 0:
        data = await asyncio.to_thread(f.read, min(CHUNK, left))
        if not data:
            raise TransferFailed(f"{shown} became shorter while it was copied")
        left -= len(data)
        yield data


class _Receiver:
    """The GET script's output: its digest line, then the file, written to ``fd``."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.head = bytearray()
        self.expected: Digest | None = None
        self.size = 0
        self.hash = hashlib.sha256()
        self.pending = bytearray()  # written in batches: one thread hop per CHUNK, not message

    async def feed(self, data: bytes) -> None:
        if self.expected is None:
            self.head += data
            end = self.head.find(b"\n")
            if end < 0:
                if len(self.head) > 256:
                    raise TransferFailed("the transfer pod sent no digest line")
                return
            self.expected = parse_digest(bytes(self.head[:end]))
            if self.expected is None:
                raise TransferFailed("the transfer pod sent a malformed digest line")
            data = bytes(self.head[end + 1 :])
            self.head.clear()
        if data:
            self.size += len(data)
            self.hash.update(data)
            self.pending += data
            if len(self.pending) >= CHUNK:
                await self.flush()

    async def flush(self) -> None:
        if self.pending:
            batch, self.pending = bytes(self.pending), bytearray()
            await asyncio.to_thread(_write_all, self.fd, batch)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _said(stderr: bytes, code: int) -> str:
    text = stderr.decode("utf-8", "replace").strip()[-300:]
    return text or f"exit code {code}"


class KubernetesMover:
    """The :class:`~akoflow.dataplane.mover.DataMover` of one run's PVC."""

    def __init__(self, location: str, run: TransferRun, pods: TransferPods) -> None:
        self._location = location
        self._run = run
        self._pods = pods

    @property
    def transfer_pod(self) -> PodKey:
        """The run's transfer pod (namespace, name)."""
        return self._run.key

    @property
    def location(self) -> str:
        return self._location

    async def stats(self, paths: Sequence[str]) -> dict[str, tuple[int, int]] | None:
        """None: the run's volume is its own (no other run writes there), records hold."""
        return None

    async def put(self, source: Path, path: str, expected: Digest) -> None:
        name = _relative(path)
        parent = name.rpartition(b"/")[0]
        try:
            f = open(source, "rb")
        except OSError as exc:
            raise TransferFailed(f"cannot read {display(str(source))}: {exc.strerror}") from None
        with f:
            args = [escape(name), escape(part_name(name)), escape(parent)]
            args += [str(expected.size), expected.sha256]
            result = await self._pods.run(
                self._run,
                ["sh", "-c", PUT, "sh", *args],
                stdin=lambda: _file_chunks(f, expected.size, display(path)),
            )
        _stopped(result.exit_code, f"copying {display(path)} to {self._location}")
        if result.exit_code != 0:
            raise TransferFailed(
                f"{display(path)} to {self._location}: {_said(result.stderr, result.exit_code)}; "
                f"sent {expected.size} bytes (sha256 {expected.sha256[:12]})"
            )

    async def get(self, path: str, destination: Path) -> Digest:
        name = _relative(path)
        local = os.fsencode(destination)
        part = part_name(local)
        fd = await asyncio.to_thread(open_part, part)
        kept = False
        try:
            receiver = _Receiver(fd)
            result = await self._pods.run(
                self._run, ["sh", "-c", GET, "sh", escape(name)], stdout=receiver.feed
            )
            await receiver.flush()
            os.close(fd)
            fd = -1
            _stopped(result.exit_code, f"copying {display(path)} from {self._location}")
            if result.exit_code != 0:
                raise TransferFailed(
                    f"{display(path)} from {self._location}: "
                    f"{_said(result.stderr, result.exit_code)}"
                )
            arrived = Digest(receiver.size, receiver.hash.hexdigest())
            if receiver.expected is None or arrived != receiver.expected:
                there = receiver.expected.size if receiver.expected else "unknown"
                raise TransferFailed(
                    f"{display(path)} came from {self._location} as {arrived.size} bytes, "
                    f"{there} there (or it changed while being copied)"
                )
            try:
                os.replace(part, local)
            except OSError as exc:  # a directory has that name on the host now, ...
                raise TransferFailed(
                    f"cannot put {display(path)} from {self._location} in place in the data "
                    f"dir: {exc.strerror}"
                ) from None
            kept = True
            return arrived
        finally:
            if fd >= 0:
                os.close(fd)
            if not kept:
                with contextlib.suppress(OSError):
                    os.unlink(part)


def _stopped(exit_code: int | None, what: str) -> None:
    """A copy whose shell was killed (the transfer pod deleted or evicted) is an outage of
    the location, not the file's fault: NOT_READY, and the copy is made again."""
    if exit_code in KILLED:
        raise RuntimeUnavailable(
            f"{what}: the transfer pod was stopped during the copy (exit {exit_code}); it is "
            "made again"
        )


__all__ = ["GET", "KILLED", "PUT", "KubernetesMover", "parse_digest"]
