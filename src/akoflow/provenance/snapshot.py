"""Snapshots of a workflow's data dir, and what changed between two of them.

A snapshot maps each regular file's path (relative to the data dir, '/'-separated) to its size,
modification time and, where cheap, its SHA-256. Checksums are computed only for files up to
:data:`CHECKSUM_LIMIT` bytes, and only once per (size, mtime): a file that did not change keeps
the checksum of the previous snapshot, so a run does not re-read its data for every activity.

Paths are in memory form (:mod:`akoflow.provenance.names`: any bytes, not only UTF-8). Nothing
here raises for what a data dir may hold: a FIFO, socket or device is never opened (it would
block the engine), a file that vanishes or turns into something else between two system calls
is left out, symlinks are not followed (no loops), and a directory that cannot be read keeps
the files the previous snapshot knew there (unknown is not deleted), with a warning.

Observed runs (:mod:`akoflow.provenance.observed`) also ask for the symlinks that name a
regular file outside the data dir (``outside_links``): that file is a file of the data dir
whose writes no event in the data dir reports, so its version is the target's, looked at
through the link. A symlink into the data dir is not a version of its own (its target is).

A version also carries where it lies on this host (device, inode, times in ns, link count):
a file whose stat still matches keeps its checksum, and the names of one file (hard links)
are known to change together. The stat that matches includes the change time (ctime), which
no user can set: a rewrite of the same size with its modification time put back (``touch
-d``, ``tar x``, ``cp -p``) is read again. A file too big to checksum is identified by its
size and its **change time**, recorded as its time (``mtime`` of the version): two contents
whose modification times were pinned to one value are two versions.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from akoflow.provenance.names import display, is_copy_in_progress

log = logging.getLogger(__name__)

CHECKSUM_LIMIT = 4 << 20  # bytes; bigger files are identified by size and change time
# A file written this recently may be written again within the same tick of the kernel's
# file clock, with the same size, and look unchanged: its checksum is read again (ns).
RECENT = 100_000_000


@dataclass(frozen=True, slots=True)
class FileState:
    """A version of a file: size, time and (when checksummed) SHA-256."""

    size: int
    mtime: float  # the modification time; the change time (ctime) for a file not checksummed
    sha256: str | None = None
    # How the version is recognised on this host, not part of it (0: not known, e.g. a
    # version read back from the store or a remote listing).
    dev: int = field(default=0, compare=False)
    ino: int = field(default=0, compare=False)
    mtime_ns: int = field(default=0, compare=False)
    links: int = field(default=0, compare=False)  # names of the file (hard links)
    symlink: bool = field(default=False, compare=False)  # seen through a symlink to outside
    ctime_ns: int = field(default=0, compare=False)

    def same_content(self, other: FileState) -> bool:
        """Whether ``other`` holds what this version holds (by checksum; by size and time
        when a file too big to checksum)."""
        if self.sha256 is not None and other.sha256 is not None:
            return self.size == other.size and self.sha256 == other.sha256
        if self.ino and other.ino and (self.dev, self.ino) != (other.dev, other.ino):
            return False  # not checksummed: another file is another version
        return (self.size, self.mtime, self.sha256) == (other.size, other.mtime, other.sha256)

    @property
    def changes_unseen(self) -> bool:
        """Whether another name (a hard link, or the target of the symlink it is seen
        through) may change it without an event under its own name."""
        return self.links > 1 or self.symlink


Snapshot = dict[str, FileState]


class _Version(Protocol):
    @property
    def size(self) -> int: ...
    @property
    def mtime(self) -> float: ...
    @property
    def sha256(self) -> str | None: ...


def content_id(version: _Version) -> str:
    """What tells a version of a path from another one (its PROV entity's version part): its
    checksum, else its size and time (for a file not checksummed: its change time)."""
    return version.sha256 or f"{version.size}-{version.mtime:.6f}"


# Opened without blocking (a FIFO put in place of the file after its stat would otherwise wait
# for a writer forever) and without following a symlink put there; checked to be a regular
# file on the open descriptor itself.
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY


def _sha256(path: str) -> str | None:
    """The file's SHA-256, or ``None`` when it is not a regular file any more, vanished, or
    cannot be read (it is then identified by size and time only)."""
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError:
        return None  # vanished, unreadable, or a symlink now
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return None  # an I/O error while reading
    finally:
        os.close(fd)


def _gone(exc: OSError) -> bool:
    """Whether ``exc`` says the path is no longer there (rather than that it cannot be read)."""
    return exc.errno in (errno.ENOENT, errno.ENOTDIR)


# Directories already warned about (a data dir is looked at on every engine wake-up); bounded.
_warned: set[str] = set()


def _unreadable(directory: str, exc: OSError) -> None:
    if directory in _warned or len(_warned) >= 1024:
        return
    _warned.add(directory)
    log.warning(
        "provenance: cannot read directory %s (%s): its files are kept as last seen",
        display(directory),
        exc.strerror or exc,
    )


def _unchanged(old: FileState, st: os.stat_result) -> bool:
    if old.size != st.st_size:
        return False
    if old.mtime_ns:  # the same file (not one renamed over it), not written since
        same = (old.mtime_ns, old.ino, old.dev) == (st.st_mtime_ns, st.st_ino, st.st_dev)
        # ctime: a write whose modification time was set back (touch -d) changes it
        same = same and (not old.ctime_ns or old.ctime_ns == st.st_ctime_ns)
        return same and max(st.st_mtime_ns, st.st_ctime_ns) < time.time_ns() - RECENT
    if old.sha256 is None and st.st_size > CHECKSUM_LIMIT:
        return old.mtime == st.st_ctime  # its time is its change time
    return old.mtime == st.st_mtime


def _state(
    path: str, st: os.stat_result, old: FileState | None, *, symlink: bool = False
) -> FileState:
    """The version ``st`` describes (``path`` is read for its checksum), ``old`` when its stat
    still matches."""
    if old is not None and _unchanged(old, st):
        if old.links == st.st_nlink and old.symlink == symlink:
            return old
        return replace(old, links=st.st_nlink, symlink=symlink)
    digest = _sha256(path) if st.st_size <= CHECKSUM_LIMIT else None
    return FileState(
        st.st_size,
        st.st_mtime if digest is not None else st.st_ctime,
        digest,
        st.st_dev,
        st.st_ino,
        st.st_mtime_ns,
        st.st_nlink,
        symlink,
        st.st_ctime_ns,
    )


def _outside_target(path: str, real_root: str) -> tuple[str, os.stat_result] | None:
    """Where the symlink ``path`` leads, and its stat, when that is a regular file outside
    the data dir ``real_root`` (a resolved path); None otherwise (inside, dangling, a loop,
    a directory or a special file)."""
    try:
        real = os.path.realpath(path, strict=True)
        st = os.lstat(real)
    except (OSError, RuntimeError):  # dangling, a loop, unreadable
        return None
    if real == real_root or real.startswith(real_root + os.sep):
        return None  # its target is a file of the data dir: that one is the version
    return (real, st) if stat.S_ISREG(st.st_mode) else None


def scan(
    root: Path,
    previous: Mapping[str, FileState] | None = None,
    exclude: Path | None = None,
    *,
    under: str = "",
    outside_links: bool = False,
) -> Snapshot:
    """Every regular file under ``root`` (symlinks are not followed), except under ``exclude``
    (AkôFlow's own state dir, when a user puts it inside the data dir); only the subtree
    ``under`` (a relative directory) when given. With ``outside_links``, a symlink to a
    regular file outside ``root`` is a file too, with its target's version."""
    skip = str(exclude) if exclude is not None else None
    real_root = os.path.realpath(root) if outside_links else ""
    snapshot: Snapshot = {}
    start = os.path.join(str(root.absolute()), under) if under else str(root.absolute())
    if start == skip:
        return snapshot
    stack = [(start, under + "/" if under else "")]
    while stack:
        directory, prefix = stack.pop()
        try:
            with os.scandir(directory) as it:
                entries = list(it)
        except OSError as exc:
            if not _gone(exc):
                _unreadable(directory, exc)
                if previous:
                    snapshot.update((n, f) for n, f in previous.items() if n.startswith(prefix))
            continue
        for entry in entries:
            name = prefix + entry.name
            old = previous.get(name) if previous else None
            try:
                if entry.is_dir(follow_symlinks=False):
                    if entry.path != skip:
                        stack.append((entry.path, name + "/"))
                    continue
                if is_copy_in_progress(entry.name):
                    continue  # a copy being made (renamed into place when complete)
                if not entry.is_file(follow_symlinks=False):
                    if outside_links and entry.is_symlink():
                        target = _outside_target(entry.path, real_root)
                        if target is not None:
                            snapshot[name] = _state(target[0], target[1], old, symlink=True)
                    continue  # symlink, FIFO, socket, device: not a file version
                st = entry.stat(follow_symlinks=False)
            except OSError as exc:
                if not _gone(exc) and old is not None:
                    snapshot[name] = old  # listed but not stat-able (a dir without +x)
                continue
            snapshot[name] = _state(entry.path, st, old)
    return snapshot


def state_of(
    root: str, path: str, old: FileState | None = None, *, outside_links: bool = False
) -> FileState | None:
    """The version of the regular file ``path`` (relative to ``root``) now, None when it is
    not one (gone, a directory, a symlink: with ``outside_links``, a symlink to a regular file
    outside ``root``, a resolved path, is one). ``old`` is kept while its stat matches."""
    full = os.path.join(root, path)
    try:
        st = os.lstat(full)
    except OSError:
        return None
    if stat.S_ISREG(st.st_mode):
        return _state(full, st, old)
    if outside_links and stat.S_ISLNK(st.st_mode):
        target = _outside_target(full, root)
        if target is not None:
            return _state(target[0], target[1], old, symlink=True)
    return None


def identity(root: str, path: str, *, outside_links: bool = False) -> tuple[int, int] | None:
    """(device, inode) of the file ``path`` names now (stat only), as :func:`state_of` sees
    it; None when it names no file."""
    full = os.path.join(root, path)
    try:
        st = os.lstat(full)
    except OSError:
        return None
    if stat.S_ISREG(st.st_mode):
        return st.st_dev, st.st_ino
    if outside_links and stat.S_ISLNK(st.st_mode):
        target = _outside_target(full, root)
        if target is not None:
            return target[1].st_dev, target[1].st_ino
    return None


@dataclass(frozen=True, slots=True)
class Change:
    """What changed in a directory between two snapshots."""

    created: dict[str, FileState]
    modified: dict[str, FileState]
    deleted: dict[str, FileState]


def update(
    snapshot: Snapshot,
    root: Path,
    files: Iterable[str],
    trees: Iterable[str] = (),
    exclude: Path | None = None,
) -> Change:
    """Bring ``snapshot`` up to date in place, looking only at ``files`` and the subtrees
    ``trees`` (what a :class:`~akoflow.provenance.watch.DirWatch` reported), and say what
    changed. Costs a ``stat`` per named path, not per file of the data dir."""
    base = str(root.absolute())
    skip = str(exclude) if exclude is not None else None
    if skip is not None and not skip.startswith(base + os.sep):
        skip = None  # only a state dir inside the data dir is left out (not one around it)
    after: dict[str, FileState | None] = {}
    for tree in trees:
        prefix = tree + "/"
        for name in [n for n in snapshot if n.startswith(prefix)]:
            after.setdefault(name, None)
        after.update(scan(root, snapshot, exclude, under=tree))
    for name in files:
        if name in after or is_copy_in_progress(name):
            continue
        path = os.path.join(base, name)
        try:
            st = os.lstat(path)
        except OSError as exc:
            if _gone(exc):
                after[name] = None
            continue  # else (a directory on its way has lost +x): as last seen
        if skip is not None and (path == skip or path.startswith(skip + os.sep)):
            continue
        after[name] = _state(path, st, snapshot.get(name)) if stat.S_ISREG(st.st_mode) else None
    created: dict[str, FileState] = {}
    modified: dict[str, FileState] = {}
    deleted: dict[str, FileState] = {}
    for name, state in after.items():
        old = snapshot.get(name)
        if state is None:
            if old is not None:
                deleted[name] = snapshot.pop(name)
        elif old is None:
            created[name] = snapshot[name] = state
        elif (old.size, old.mtime, old.sha256) != (state.size, state.mtime, state.sha256):
            modified[name] = snapshot[name] = state
    return Change(created, modified, deleted)


def changes(before: Mapping[str, FileState], after: Mapping[str, FileState]) -> Change:
    created = {p: s for p, s in after.items() if p not in before}
    modified = {
        p: s
        for p, s in after.items()
        if p in before
        and (before[p].size, before[p].mtime, before[p].sha256) != (s.size, s.mtime, s.sha256)
    }
    deleted = {p: s for p, s in before.items() if p not in after}
    return Change(created, modified, deleted)
