"""Tar streams of a copy into or out of a pod, made and read chunk by chunk.

:func:`plan_tar` and :func:`tar_chunks` write the archive of local files (GNU format: names are
the file system's bytes, whatever their encoding; long names as ``././@LongLink``), its length
known before it is written, hashing each file as it is read. :class:`TarReceiver` reads an
archive as it arrives and extracts it under a directory: only regular files and directories,
names relative and inside what was asked for (the pod is not trusted: no absolute names, no
``..``, no links), each file written to a temporary name beside its place and moved there by
:meth:`TarReceiver.commit` once the caller has verified it, so a copy that fails leaves no half
file under a real name. Neither holds a whole file in memory; both record the size and SHA-256
of every regular file."""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import stat
import tarfile
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from pathlib import Path

from akoflow.errors import AkoflowError
from akoflow.provenance.names import COPY_SUFFIX

BLOCK = 512
CHUNK = 256 * 1024
MAX_NAME = 64 * 1024  # a GNU long name or a PAX header larger than this is refused


class CopyError(AkoflowError):
    """A copy that cannot be made as asked (unsafe name, unsupported file type, content that
    changed or differs after the copy). Not a transport problem: retrying will not help."""


@dataclass(frozen=True)
class Digest:
    size: int
    sha256: str


def clean_name(raw: bytes) -> bytes:
    """A relative name without ``.`` parts; refuses absolute names and ``..``."""
    if raw.startswith(b"/"):
        raise CopyError(f"absolute name in the archive: {raw!r}")
    parts = [p for p in raw.split(b"/") if p not in (b"", b".")]
    if b".." in parts:
        raise CopyError(f"name with '..' in the archive: {raw!r}")
    if b"\0" in raw:
        raise CopyError(f"name with a NUL byte: {raw!r}")
    return b"/".join(parts)


def _header(name: bytes, kind: bytes, size: int, mode: int, mtime: float) -> bytes:
    info = tarfile.TarInfo(name.decode("utf-8", "surrogateescape"))
    info.type = kind
    info.size = size
    info.mode = mode & 0o7777
    info.mtime = int(mtime)
    info.uid = info.gid = 0  # the pod's user owns what it extracts (tar -o)
    return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")


@dataclass(frozen=True)
class _Entry:
    name: bytes  # in the archive
    path: bytes  # on this host
    header: bytes
    size: int  # of a regular file; -1 for a directory


@dataclass(frozen=True)
class TarPlan:
    """What an archive will hold, planned before it is written: its exact length is known
    up front (a pod whose stdin cannot be closed, v4, reads exactly that many bytes)."""

    entries: tuple[_Entry, ...]

    @property
    def length(self) -> int:
        return (
            sum(
                len(e.header) + max(e.size, 0) + (-e.size % BLOCK if e.size > 0 else 0)
                for e in self.entries
            )
            + 2 * BLOCK
        )


def plan_tar(base: Path, names: Sequence[bytes]) -> TarPlan:
    """The archive of ``base/name`` for each name (a directory with all it holds; ``.``:
    everything in ``base``), names in the archive relative to ``base``. Only regular files and
    directories: anything else fails the copy. Walks the file system (blocking)."""
    root = os.fsencode(base)
    pending = [clean_name(n) for n in names]
    entries: list[_Entry] = []
    while pending:
        name = pending.pop(0)
        path = os.path.join(root, name) if name else root
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode):
            if name:  # "" (or "."): what base holds, not base itself
                header = _header(name, tarfile.DIRTYPE, 0, st.st_mode, st.st_mtime)
                entries.append(_Entry(name, path, header, -1))
            children = sorted(os.listdir(path))
            pending[0:0] = [name + b"/" + child if name else child for child in children]
        elif stat.S_ISREG(st.st_mode):
            header = _header(name, tarfile.REGTYPE, st.st_size, st.st_mode, st.st_mtime)
            entries.append(_Entry(name, path, header, st.st_size))
        else:
            kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file"
            raise CopyError(f"{os.fsdecode(path)} is {kind}: only files and directories move")
    return TarPlan(tuple(entries))


async def tar_chunks(plan: TarPlan, digests: dict[bytes, Digest]) -> AsyncGenerator[bytes, None]:
    """The planned archive, chunk by chunk; ``digests`` gets each regular file's size and
    SHA-256 as it is read. A file that changed size (or kind) since the plan fails the copy."""
    for entry in plan.entries:
        yield entry.header
        if entry.size < 0:
            continue
        digest = hashlib.sha256()
        left = entry.size
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(entry.path, flags)
        except OSError as exc:
            raise CopyError(f"{os.fsdecode(entry.path)}: {exc.strerror}") from None
        with open(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise CopyError(f"{os.fsdecode(entry.path)} is no longer a regular file")
            while left > 0:
                data = await asyncio.to_thread(f.read, min(CHUNK, left))
                if not data:
                    break
                left -= len(data)
                digest.update(data)
                yield data
            grown: bytes = await asyncio.to_thread(f.read, 1)
            if left != 0 or grown:
                raise CopyError(f"{os.fsdecode(entry.path)} changed size while it was copied")
        yield b"\0" * (-entry.size % BLOCK)
        digests[entry.name] = Digest(entry.size, digest.hexdigest())
    yield b"\0" * (2 * BLOCK)


def _pax_path(data: bytes) -> bytes | None:
    """The ``path`` record of a PAX extended header (``LEN key=value\\n`` records)."""
    found = None
    while data:
        length_text, _, _ = data.partition(b" ")
        try:
            length = int(length_text)
        except ValueError:
            raise CopyError("malformed PAX header in the archive") from None
        record, data = data[:length], data[length:]
        key, _, value = record[len(length_text) + 1 :].partition(b"=")
        if key == b"path":
            found = value[:-1] if value.endswith(b"\n") else value
    return found


class TarReceiver:
    """Extracts an archive fed in chunks under ``dest``, accepting only names that are one of
    ``allowed`` or below one."""

    def __init__(self, dest: Path, allowed: Sequence[bytes]) -> None:
        self.dest = os.fsencode(dest)
        self.allowed = [clean_name(a) for a in allowed]
        self.digests: dict[bytes, Digest] = {}
        self.parts: list[tuple[bytes, bytes]] = []  # (temporary, final) paths
        self.finished = False
        self._buf = bytearray()
        self._long_name: bytes | None = None
        # the member being read: its kind, bytes left, file and hash
        self._kind: bytes | None = None
        self._left = 0
        self._pad = 0
        self._meta = bytearray()  # data of a GNU long name or a PAX header
        self._file: int | None = None
        self._hash = hashlib.sha256()
        self._name = b""
        self._size = 0

    # -------------------------------------------------------------- feeding

    async def feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self.finished:
                return  # what follows the end of the archive is padding
            if self._left:
                take = view[: self._left]
                view = view[len(take) :]
                self._left -= len(take)
                await self._content(bytes(take))
                if not self._left:
                    await self._end_member()
            elif self._pad:
                skip = min(self._pad, len(view))
                view = view[skip:]
                self._pad -= skip
            else:
                need = BLOCK - len(self._buf)
                self._buf += view[:need]
                view = view[need:]
                if len(self._buf) == BLOCK:
                    block, self._buf = bytes(self._buf), bytearray()
                    await self._header(block)

    def check_complete(self) -> None:
        if not self.finished:
            raise CopyError("the archive from the pod ended early (truncated)")

    async def _header(self, block: bytes) -> None:
        if block == b"\0" * BLOCK:
            self.finished = True
            return
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.HeaderError as exc:
            raise CopyError(f"malformed archive from the pod: {exc}") from None
        kind, size = info.type, info.size
        self._kind, self._left, self._pad = kind, size, -size % BLOCK
        if kind in (tarfile.GNUTYPE_LONGNAME, tarfile.XHDTYPE, tarfile.XGLTYPE):
            if size > MAX_NAME:
                raise CopyError("archive header too large")
            self._meta = bytearray()
        elif kind in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE, tarfile.DIRTYPE):
            raw = self._long_name or info.name.encode("utf-8", "surrogateescape")
            self._long_name = None
            name = clean_name(raw)
            if not any(a in (b"", name) or name.startswith(a + b"/") for a in self.allowed):
                raise CopyError(f"the pod sent {raw!r}, which was not asked for")
            self._name = name
            if kind == tarfile.DIRTYPE:
                self._make_dirs(name)
            else:
                self._open(name)
                self._size = size
        else:
            raise CopyError(
                f"{info.name!r} in the pod is a link or a special file: only files and "
                "directories move"
            )
        if not self._left:
            await self._end_member()

    async def _content(self, data: bytes) -> None:
        if self._file is not None:
            self._hash.update(data)
            await asyncio.to_thread(_write_all, self._file, data)
        elif self._kind in (tarfile.GNUTYPE_LONGNAME, tarfile.XHDTYPE, tarfile.XGLTYPE):
            self._meta += data

    async def _end_member(self) -> None:
        if self._kind == tarfile.GNUTYPE_LONGNAME:
            self._long_name = bytes(self._meta).split(b"\0", 1)[0]
        elif self._kind == tarfile.XHDTYPE:
            self._long_name = _pax_path(bytes(self._meta)) or self._long_name
        elif self._file is not None:
            fd, self._file = self._file, None
            await asyncio.to_thread(os.close, fd)
            self.digests[self._name] = Digest(self._size, self._hash.hexdigest())
        self._kind = None

    # -------------------------------------------------------------- the file system

    def _make_dirs(self, name: bytes) -> None:
        """``dest/name`` as directories, never through a symbolic link."""
        path = self.dest
        for part in name.split(b"/") if name else []:
            path = os.path.join(path, part)
            try:
                os.mkdir(path, 0o755)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(path).st_mode):
                    raise CopyError(f"{os.fsdecode(path)} exists and is not a directory") from None

    def _open(self, name: bytes) -> None:
        parent, _, leaf = name.rpartition(b"/")
        if parent:
            self._make_dirs(parent)
        final = os.path.join(self.dest, name)
        if os.path.isdir(final) and not os.path.islink(final):
            raise CopyError(f"{os.fsdecode(final)} is a directory")
        temp = os.path.join(
            os.path.dirname(final), b"." + secrets.token_hex(6).encode() + COPY_SUFFIX.encode()
        )
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        self._file = os.open(temp, flags, 0o644)
        self.parts.append((temp, final))
        self._hash = hashlib.sha256()

    def commit(self) -> None:
        """Every received file moved to its name (after the caller verified the copy)."""
        for temp, final in self.parts:
            os.replace(temp, final)
        self.parts.clear()

    def discard(self) -> None:
        """A failed copy: its temporary files removed, its real names untouched."""
        if self._file is not None:
            os.close(self._file)
            self._file = None
        for temp, _ in self.parts:
            try:
                os.unlink(temp)
            except FileNotFoundError:
                pass
        self.parts.clear()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
