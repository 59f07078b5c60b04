"""Reading a run's data dir for the API: safe paths, files opened beneath it, byte ranges, and
tar streams of a subtree.

The data dir's contents were written by activities (user code): nothing in it is trusted. A
requested path is relative, without ``.``, ``..`` or NUL (refused with the reason), and is
opened one name at a time from the data dir with ``O_NOFOLLOW``, so no symbolic link, at any
depth, leads the server outside (or anywhere: links are neither served nor archived), and a
link swapped in after a check changes nothing (there is no check-then-open by path). Names
are bytes (:mod:`akoflow.provenance.names`): in a URL they are percent-encoded, and decoded
exactly once.
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import stat
import tarfile
from collections.abc import AsyncGenerator, Generator
from dataclasses import dataclass
from urllib.parse import quote, unquote_to_bytes

from akoflow.errors import AkoflowError
from akoflow.provenance.names import NAME_MAX, display, from_bytes

CHUNK = 256 << 10  # bytes read and sent at a time: what one download holds in memory
BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE


class PathRefused(AkoflowError, ValueError):
    """A requested path that can name nothing in the data dir (400)."""


class NotServed(AkoflowError, LookupError):
    """Nothing to serve there (404): missing, a link, not a regular file or directory."""


class RangeNotSatisfiable(AkoflowError, ValueError):
    """A Range header this server does not serve for this file (416)."""


# ------------------------------------------------------------------------------- paths


def raw_tail(raw_path: bytes, marker: bytes = b"files") -> bytes:
    """What follows ``.../workflows/<id>/files/`` in a request's raw (still percent-encoded)
    path; the router matched the decoded path, which lost the bytes that are not UTF-8."""
    segments = raw_path.split(b"/")
    for i in range(len(segments) - 2):
        if segments[i] == b"workflows" and segments[i + 2] == marker:
            return b"/".join(segments[i + 3 :])
    raise NotServed("not a path of a run's files")


def relative_parts(encoded: bytes) -> list[str]:
    """The names of a requested path (percent-encoded bytes, decoded once here), relative to
    the data dir; ``[]`` is the data dir itself. Refuses what could name something else."""
    raw = unquote_to_bytes(encoded)
    if b"\0" in raw:
        raise PathRefused("a path cannot contain a NUL byte")
    if raw.startswith(b"/"):
        raise PathRefused(
            "absolute paths are not served: give the path relative to the run's data dir"
        )
    parts = [p for p in raw.split(b"/") if p]  # "a//b" and "a/" name what "a/b" and "a" do
    if any(p in (b".", b"..") for p in parts):
        raise PathRefused(
            "'.' and '..' are not allowed in a path: paths are relative to the run's data dir"
        )
    if any(len(p) > NAME_MAX for p in parts):
        raise PathRefused(f"a name in the path is longer than {NAME_MAX} bytes")
    return [from_bytes(p) for p in parts]


def shown(parts: list[str]) -> str:
    return display("/".join(parts)) or "."


# ------------------------------------------------------------------------------ opening


# No link followed, no wait on a FIFO, no terminal made the server's controlling one.
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY


def open_beneath(root: str, parts: list[str], *, directory: bool = False) -> int:
    """A descriptor of ``root/parts...``, every name opened from its parent's descriptor
    without following a link. ``directory``: the last one must be a directory, else a regular
    file. Each name is looked at first (lstat): a FIFO, socket or device is never opened, and
    what is opened must be the inode looked at (one swapped in meanwhile is refused). Raises
    :class:`NotServed` with the reason."""
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise NotServed(f"the run's data dir cannot be read: {exc.strerror}") from None
    try:
        for i, part in enumerate(parts):
            want_dir = i < len(parts) - 1 or directory
            try:
                seen = os.stat(part, dir_fd=fd, follow_symlinks=False)
            except OSError as exc:
                raise NotServed(_why(fd, parts[: i + 1], exc)) from None
            _check_kind(seen.st_mode, parts[: i + 1], want_dir=want_dir)
            try:
                child = os.open(part, _OPEN_FLAGS | (os.O_DIRECTORY if want_dir else 0), dir_fd=fd)
            except OSError as exc:
                raise NotServed(_why(fd, parts[: i + 1], exc)) from None
            os.close(fd)
            fd = child
            opened = os.fstat(fd)
            if (opened.st_dev, opened.st_ino) != (seen.st_dev, seen.st_ino):
                raise NotServed(f"{shown(parts[: i + 1])} changed while it was opened")
            _check_kind(opened.st_mode, parts[: i + 1], want_dir=want_dir)
        return fd
    except BaseException:
        os.close(fd)
        raise


def _check_kind(mode: int, parts: list[str], *, want_dir: bool) -> None:
    if stat.S_ISLNK(mode):
        raise NotServed(f"{shown(parts)} is a symbolic link: links in a data dir are not followed")
    if want_dir and not stat.S_ISDIR(mode):
        raise NotServed(f"{shown(parts)} is not a directory")
    if not want_dir and not stat.S_ISREG(mode):
        kind = "a directory: add ?archive=tar" if stat.S_ISDIR(mode) else "special"
        raise NotServed(f"{shown(parts)} is not a regular file ({kind})")


def _why(parent: int, parts: list[str], exc: OSError) -> str:
    name = shown(parts)
    try:
        mode = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False).st_mode
    except OSError:
        return f"no file {name} in the run's data dir"
    if stat.S_ISLNK(mode):
        return f"{name} is a symbolic link: links in a data dir are not followed"
    if exc.errno == errno.ENOTDIR:
        return f"{name} is not a directory"
    return f"{name} cannot be opened: {exc.strerror}"


# ------------------------------------------------------------------------------ listing


@dataclass(frozen=True, slots=True)
class DiskFile:
    path: str  # relative to the data dir, in memory form (names.from_bytes)
    size: int
    mtime: float
    mtime_ns: int


def walk_files(root: str) -> list[DiskFile]:
    """Every regular file under ``root``, sorted by path; links are not followed (a link to a
    directory is not descended into) and not listed."""
    found: list[DiskFile] = []
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return found
    try:
        for dirpath, dirnames, filenames, dirfd in os.fwalk(".", dir_fd=fd, follow_symlinks=False):
            dirnames.sort()
            prefix = "" if dirpath == "." else dirpath[2:] + "/"
            for name in filenames:
                try:
                    info = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
                except OSError:
                    continue  # gone meanwhile
                if stat.S_ISREG(info.st_mode):
                    found.append(
                        DiskFile(prefix + name, info.st_size, info.st_mtime, info.st_mtime_ns)
                    )
    finally:
        os.close(fd)
    found.sort(key=lambda f: os.fsencode(f.path))
    return found


def url_path(path: str) -> str:
    return quote(os.fsencode(path), safe="/")


# ------------------------------------------------------------------------------- ranges

_RANGE = re.compile(r"(\d*)-(\d*)")
# A bound of more digits than this is past any file's end (and int() refuses a string of more
# than 4300 digits): it stands for "beyond the end", never converted.
_MAX_DIGITS = 19
_BEYOND = 1 << 64


def _bound(digits: str) -> int:
    return _BEYOND if len(digits) > _MAX_DIGITS else int(digits)


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """The first and last byte of a ``Range: bytes=...`` header's one range in a file of
    ``size`` bytes (RFC 9110 14.1.2: ``a-b``, ``a-``, ``-n`` for the last n bytes); None for a
    range of another unit, which a server must ignore (14.2: the whole file is sent)."""
    unit, equals, ranges = header.strip().partition("=")
    if not equals or unit.strip().lower() != "bytes":
        return None
    spec = header.strip()
    if "," in ranges:
        raise RangeNotSatisfiable("one range per request is served")
    match = _RANGE.fullmatch(ranges.replace(" ", ""))
    if match is None or match.groups() == ("", ""):
        raise RangeNotSatisfiable(f"malformed Range header {spec[:80]!r}: expected bytes=a-b")
    first, last = match.groups()
    if not first:  # the last n bytes
        n = _bound(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable(f"range {spec[:80]} of a {size}-byte file holds no byte")
        return max(0, size - n), size - 1
    start = _bound(first)
    end = size - 1 if not last else min(_bound(last), size - 1)
    if last and _bound(last) < start:
        raise RangeNotSatisfiable(f"range {spec[:80]} ends before it starts")
    if start >= size:
        raise RangeNotSatisfiable(f"range {spec[:80]} starts past the end of a {size}-byte file")
    return start, end


async def read_span(fd: int, start: int, length: int) -> AsyncGenerator[bytes, None]:
    """``length`` bytes of ``fd`` from ``start``, a chunk at a time (read in a thread); a file
    cut short meanwhile ends early."""
    pos, left = start, length
    while left > 0:
        chunk = await asyncio.to_thread(os.pread, fd, min(CHUNK, left), pos)
        if not chunk:
            return
        pos += len(chunk)
        left -= len(chunk)
        yield chunk


# --------------------------------------------------------------------------------- tar


def _header(name: str, info: os.stat_result, kind: bytes) -> bytes:
    entry = tarfile.TarInfo(name)
    entry.type = kind
    entry.size = info.st_size if kind == tarfile.REGTYPE else 0
    entry.mode = stat.S_IMODE(info.st_mode)
    entry.mtime = int(info.st_mtime)
    # GNU format with surrogateescape: any name's bytes as they are (long names included).
    return entry.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")


def _entries(top: int, base: str) -> Generator[tuple[str, int | None, os.stat_result]]:
    """(name in the archive, descriptor of a regular file or None for a directory, its stat)
    under the directory ``top``, sorted, links left out. The caller closes file descriptors."""
    for dirpath, dirnames, filenames, dirfd in os.fwalk(".", dir_fd=top, follow_symlinks=False):
        dirnames.sort()
        inner = "" if dirpath == "." else dirpath[2:]
        here = "/".join(p for p in (base, inner) if p)
        if here:
            yield here + "/", None, os.fstat(dirfd)
        for name in sorted(filenames, key=os.fsencode):
            try:  # looked at first: a FIFO, socket, device or link is never opened
                seen = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
                if not stat.S_ISREG(seen.st_mode):
                    continue
                fd = os.open(name, _OPEN_FLAGS, dir_fd=dirfd)
            except OSError:
                continue  # gone meanwhile, or swapped for a link (ELOOP)
            info = os.fstat(fd)
            if (info.st_dev, info.st_ino) != (seen.st_dev, seen.st_ino) or not stat.S_ISREG(
                info.st_mode
            ):
                os.close(fd)
                continue  # swapped meanwhile
            yield "/".join(p for p in (here, name) if p), fd, info


async def tar_stream(top: int, base: str) -> AsyncGenerator[bytes, None]:
    """A tar (GNU format) of the directory ``top`` (the caller's descriptor), its entries
    named ``base/...``: built as it is sent, a chunk at a time (memory stays bounded whatever
    the size). Each file is its size when it was opened: cut short meanwhile, it is padded
    with zeros; grown, the rest is left out."""
    entries = _entries(top, base)
    sent = 0
    try:
        while True:
            item = await asyncio.to_thread(next, entries, None)
            if item is None:
                break
            name, fd, info = item
            if fd is None:
                header = _header(name, info, tarfile.DIRTYPE)
                sent += len(header)
                yield header
                continue
            try:
                header = _header(name, info, tarfile.REGTYPE)
                sent += len(header)
                yield header
                got = 0
                async for chunk in read_span(fd, 0, info.st_size):
                    got += len(chunk)
                    yield chunk
                padding = (info.st_size - got) + (-info.st_size % BLOCK)
            finally:
                os.close(fd)
            sent += info.st_size + padding
            if padding:
                yield bytes(padding)
        end = 2 * BLOCK
        end += -(sent + end) % RECORD
        yield bytes(end)
    finally:
        entries.close()  # fwalk's directory descriptors
