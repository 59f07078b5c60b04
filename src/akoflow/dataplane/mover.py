"""How files reach a location and come back: :class:`DataMover`, one per remote runtime,
through the connection that runtime already holds (no new login per copy), and the engine
host's side of it (hashing, listing, atomic replacement)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from akoflow.provenance.declared import declares, is_glob, literal_root
from akoflow.provenance.names import COPY_SUFFIX, display, from_bytes, to_bytes
from akoflow.runtimes.base import SubmitError

PART_SUFFIX = COPY_SUFFIX  # a copy being made: never a file of the run
NAME_MAX = 255  # bytes in one file name (Linux file systems)


class TransferFailed(SubmitError):
    """A copy could not be made or did not arrive intact (its size or SHA-256 differ): the
    attempt that needed it fails with this reason. A location that cannot be reached at all
    raises :class:`~akoflow.runtimes.base.RuntimeUnavailable` instead (held, retried)."""


@dataclass(frozen=True, slots=True)
class Digest:
    """A file's size and SHA-256, as both ends of a copy compute them."""

    size: int
    sha256: str


class DataMover(Protocol):
    """Copies between the engine host's data dir and one location. Each method checks what
    arrived (size and SHA-256) before it returns, and places a file under its final name only
    then (written under a temporary name beside it, renamed into place)."""

    @property
    def location(self) -> str:
        """``<runtime>:<directory>``, as the runtime names where its attempts' files live."""
        ...

    async def put(self, source: Path, path: str, expected: Digest) -> None:
        """Copy the host file ``source`` (whose content is ``expected``) to ``path`` (relative
        to the location's directory)."""
        ...

    async def get(self, path: str, destination: Path) -> Digest:
        """Copy ``path`` of the location to the host file ``destination``; its digest."""
        ...

    async def stats(self, paths: Sequence[str]) -> dict[str, tuple[int, int]] | None:
        """``(size, stamp)`` of those of ``paths`` the location has (absent: not there), the
        stamp changing whenever the file is replaced or rewritten (a new inode or change
        time); None when the location cannot tell cheaply (its records are then trusted: a
        location no other run writes to)."""
        ...


def part_name(destination: bytes, tag: str = "") -> bytes:
    """The temporary name a copy to ``destination`` is written under: the same one every time
    (a copy redone after a crash overwrites what the first one left), ``tag`` telling apart
    runs that share a directory (an HPC MOUNT_PATH), and within a name's 255 bytes (a long
    name's temporary one is its hash)."""
    head, _, tail = destination.rpartition(b"/")
    suffix = (b"." + tag.encode() if tag else b"") + PART_SUFFIX.encode()
    name = b"." + tail + suffix
    if len(name) > NAME_MAX:
        name = b"." + hashlib.sha256(tail).hexdigest()[:32].encode() + suffix
    return (head + b"/" if head else b"") + name


def open_part(part: bytes) -> int:
    """A new regular file at ``part`` (a copy's temporary name in a data dir), open for
    writing (blocking: run it in a thread). Whatever an activity left at that name goes first,
    and the file is created, never opened: a symbolic link planted there is not written
    through, a FIFO does not block the engine. Raises :class:`TransferFailed`."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    for _ in range(3):
        try:
            os.unlink(part)
        except FileNotFoundError:
            pass
        except OSError as exc:  # a directory has that name
            raise TransferFailed(
                f"cannot write {display(os.fsdecode(part))}: {exc.strerror}"
            ) from None
        try:
            fd = os.open(part, flags, 0o644)
        except FileExistsError:
            continue  # made again meanwhile: removed again
        except OSError as exc:
            raise TransferFailed(
                f"cannot write {display(os.fsdecode(part))}: {exc.strerror}"
            ) from None
        os.set_blocking(fd, True)
        return fd
    raise TransferFailed(
        f"cannot write {display(os.fsdecode(part))}: something keeps making that name"
    )


def hash_file(path: bytes) -> Digest:
    """Size and SHA-256 of a host file (blocking: run it in a thread)."""
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
        return Digest(os.fstat(f.fileno()).st_size, digest)


class HostFiles:
    """The engine host's data dirs: what they hold, each file's digest (cached while its
    size, times and inode stay the same)."""

    def __init__(self) -> None:
        self._cache: dict[bytes, tuple[tuple[int, int, int, int, int], Digest]] = {}

    async def digest(self, path: Path) -> Digest:
        raw = os.fsencode(path)
        st = os.stat(raw)
        stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        cached = self._cache.get(raw)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        found = await asyncio.to_thread(hash_file, raw)
        self._cache[raw] = (stamp, found)
        return found

    def forget(self, path: Path) -> None:
        self._cache.pop(os.fsencode(path), None)


def list_files(data_dir: Path) -> Iterator[str]:
    """Every regular file under ``data_dir`` (relative, in memory form), copies in progress
    left out; symbolic links are not followed."""
    root = os.fsencode(data_dir)
    stack = [b""]
    while stack:
        rel = stack.pop()
        try:
            entries = list(os.scandir(root + b"/" + rel if rel else root))
        except OSError:
            continue
        for entry in entries:
            name = rel + b"/" + entry.name if rel else entry.name
            if entry.is_dir(follow_symlinks=False):
                stack.append(name)
            elif entry.is_file(follow_symlinks=False) and not entry.name.endswith(
                PART_SUFFIX.encode()
            ):
                yield from_bytes(name)


def wanted_files(data_dir: Path, inputs: Collection[str]) -> list[str]:
    """What :func:`list_files` gives that ``inputs`` declare (every file when none), found
    without listing the whole data dir when they name their files (looked up one by one) or
    start their globs in a directory (listed from there): an HPC fan-out's every activity
    looked through the whole run's files before it could start."""
    if not inputs:
        return list(list_files(data_dir))
    root = os.fsencode(data_dir)
    found: dict[str, None] = {}
    starts: set[str] = set()
    for pattern in inputs:
        if not _plain(pattern):
            # Matches no path the listing gives ('', '.' and '..' parts, a leading or
            # trailing '/'), and listing from its root gave its own spellings of the files
            # found there ('./a.txt', 'd//x.csv'), or files beside the data dir ('../*').
            continue
        if is_glob(pattern):
            starts.add(literal_root(pattern))
        elif _regular_file_under(root, to_bytes(pattern)):
            found[pattern] = None
    # A listing from each directory a glob starts in, none inside another's.
    listed: list[str] = []
    for start in sorted(starts, key=len):
        if any(s == "" or start == s or start.startswith(s + "/") for s in listed):
            continue
        listed.append(start)
        prefix = to_bytes(start)
        if prefix and not _directory_under(root, prefix):
            continue
        base = Path(os.fsdecode(root + b"/" + prefix)) if prefix else data_dir
        for path in list_files(base):
            full = f"{start}/{path}" if start else path
            if declares(inputs, full):
                found[full] = None
    return list(found)


def _plain(path: str) -> bool:
    """A path as :func:`list_files` writes one (no empty, ``.`` or ``..`` part)."""
    return all(part not in ("", ".", "..") for part in path.split("/"))


def _no_link_on_the_way(root: bytes, rel: bytes) -> bool:
    """No directory between ``root`` and ``rel``'s last part is a symbolic link (the listing
    does not follow them)."""
    parts = rel.split(b"/")
    at = root
    for part in parts[:-1]:
        at += b"/" + part
        try:
            if not stat.S_ISDIR(os.lstat(at).st_mode):
                return False
        except OSError:
            return False
    return True


def _mode_under(root: bytes, rel: bytes) -> int:
    """The file type and mode of ``rel`` reached through directories only (0: none)."""
    if not _no_link_on_the_way(root, rel):
        return 0
    try:
        return os.lstat(root + b"/" + rel).st_mode
    except OSError:
        return 0


def _regular_file_under(root: bytes, rel: bytes) -> bool:
    return not rel.endswith(PART_SUFFIX.encode()) and stat.S_ISREG(_mode_under(root, rel))


def _directory_under(root: bytes, rel: bytes) -> bool:
    return stat.S_ISDIR(_mode_under(root, rel))


def host_path(data_dir: Path, path: str) -> Path:
    return Path(os.fsdecode(os.fsencode(data_dir) + b"/" + to_bytes(path)))
