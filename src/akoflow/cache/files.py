"""Files of the cache: content hashes in a data dir, and outputs restored from another.

Every path is relative to a data dir and opened beneath it one name at a time, never
following a symbolic link (``O_NOFOLLOW``): a link an activity left where a file or a
directory was can neither send a read outside nor a restored file anywhere else. Only regular
files count; anything else is "not there".

A restored file is first written whole under a temporary name in its directory (ending in
:data:`~akoflow.provenance.names.COPY_SUFFIX`, which provenance never takes for a file of the
run), as a reflink (``FICLONE``: the same blocks, copy on write) where the file system can,
else with ``copy_file_range`` (in the kernel; some file systems share blocks there too), else
by reading and writing. Its SHA-256 is checked, and only then is it renamed into place
(:meth:`Staged.commit`), so a crash never leaves a partial file under an output's name. Hard
links are never used: an activity of the new run that appended to an output would change the
earlier run's file, the source of later restores.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from akoflow.errors import AkoflowError
from akoflow.provenance.names import COPY_SUFFIX, to_bytes

FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int)
CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class NotThere(AkoflowError):
    """A path that is not a regular file beneath its data dir (missing, a link, a FIFO...)."""


@dataclass(frozen=True, slots=True)
class Version:
    """What a file holds now: its size, SHA-256 and modification time."""

    size: int
    sha256: str
    mtime: float


def _parts(path: str) -> list[bytes]:
    parts = [p for p in to_bytes(path).split(b"/") if p]
    if not parts or any(p in (b".", b"..") for p in parts):
        raise NotThere(path)
    return parts


@contextlib.contextmanager
def _directory(root: Path, parts: list[bytes], *, create: bool = False) -> Iterator[int]:
    """A descriptor of ``root/parts...`` reached without following links (made with
    ``create``)."""
    fd = os.open(root, _DIR_FLAGS)
    try:
        for part in parts:
            try:
                inner = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o777, dir_fd=fd)
                inner = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = inner
        yield fd
    finally:
        os.close(fd)


def _open_file(root: Path, path: str) -> int:
    parts = _parts(path)
    try:
        with _directory(root, parts[:-1]) as dir_fd:
            fd = os.open(
                parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd
            )
    except OSError as exc:
        raise NotThere(path) from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotThere(path)
    return fd


def _sha256(fd: int) -> str:
    h = hashlib.sha256()
    offset = 0
    while chunk := os.pread(fd, CHUNK, offset):
        h.update(chunk)
        offset += len(chunk)
    return h.hexdigest()


@dataclass
class Hasher:
    """SHA-256 of files, each version read once: a file whose stat (device, inode, size,
    modification and change times) did not change keeps its digest."""

    known: dict[tuple[int, int, int, int, int], str] = field(default_factory=dict)

    def version(self, root: Path, path: str) -> Version:
        """What ``root/path`` holds; :class:`NotThere` if it is no regular file there."""
        fd = _open_file(root, path)
        try:
            info = os.fstat(fd)
            ident = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
            sha = self.known.get(ident)
            if sha is None:
                sha = self.known[ident] = _sha256(fd)
            return Version(info.st_size, sha, info.st_mtime)
        except OSError as exc:
            raise NotThere(path) from exc
        finally:
            os.close(fd)

    def sha256(self, root: Path, path: str) -> str | None:
        try:
            return self.version(root, path).sha256
        except NotThere:
            return None


LISTING = "listing:"  # the "content" of a directory an activity listed: its names' digest


def listing(
    root: Path,
    path: str,
    *,
    leave_out: Iterable[str] = (),
    planned: Iterable[str] = (),
) -> str:
    """:data:`LISTING` and the SHA-256 of the sorted names in the directory ``root/path``
    (``"."``: ``root``), reached without following a link; names in ``leave_out`` (paths
    relative to ``root``) are not counted, those under ``planned`` paths are (a dry run's
    restores). A restore's temporary names are never counted."""
    parts = [] if path == "." else _parts(path)
    prefix = "" if path == "." else path + "/"
    names: set[bytes] = set()
    present = True
    try:
        with _directory(root, parts) as fd:
            names.update(os.fsencode(n) for n in os.listdir(fd))
    except OSError:
        present = False
    for p in planned:
        if p.startswith(prefix):
            names.add(to_bytes(p[len(prefix) :].split("/", 1)[0]))
            present = True
    if not present and path != ".":  # a run's data dir is there when it runs
        return LISTING + "absent"
    return names_digest(path, names, leave_out)


def names_digest(path: str, names: Iterable[bytes] | None, leave_out: Iterable[str] = ()) -> str:
    """:data:`LISTING` and the digest of the ``names`` found in directory ``path`` (None:
    no directory there) without those of ``leave_out`` (paths relative to the data dir) and
    a restore's temporary names."""
    if names is None:
        return LISTING + "absent"
    prefix = "" if path == "." else path + "/"
    kept = set(names)
    for p in leave_out:
        if p.startswith(prefix) and "/" not in p[len(prefix) :]:
            kept.discard(to_bytes(p[len(prefix) :]))
    h = hashlib.sha256()
    for name in sorted(n for n in kept if not n.endswith(COPY_SUFFIX.encode())):
        h.update(name + b"\0")
    return LISTING + h.hexdigest()


def _clone(src: int, dst: int, size: int) -> None:
    try:
        fcntl.ioctl(dst, FICLONE, src)
        return
    except OSError:
        pass  # another file system, or one without reflinks
    offset = 0
    try:
        while offset < size:
            sent = os.copy_file_range(src, dst, size - offset, offset, offset)
            if sent == 0:
                break
            offset += sent
        return
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
    offset = 0
    while chunk := os.pread(src, CHUNK, offset):
        os.pwrite(dst, chunk, offset)
        offset += len(chunk)


def _temporary(name: bytes, owner: str) -> bytes:
    """The temporary name of ``owner``'s restore of ``name``: fixed per name and owner, so
    what a crash left is replaced by the next restore, and two activities restoring one
    name in one batch never take (or remove) each other's copy; within NAME_MAX."""
    digest = hashlib.sha256(owner.encode(errors="surrogateescape") + b"\0" + name).hexdigest()
    return b"." + digest[:24].encode() + COPY_SUFFIX.encode()


@dataclass
class Staged:
    """Restored files written whole under temporary names, not yet in place."""

    root: Path
    owner: str = ""  # the activity restoring them (its temporary names are its own)
    files: list[tuple[str, bytes, str]] = field(default_factory=list)  # path, temporary, sha

    def commit(self, hasher: Hasher) -> None:
        """Rename every staged file into place (quick: no data is copied here)."""
        for path, temporary, sha in self.files:
            parts = _parts(path)
            with _directory(self.root, parts[:-1], create=True) as dir_fd:
                os.rename(temporary, parts[-1], src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
                info = os.stat(parts[-1], dir_fd=dir_fd, follow_symlinks=False)
            ident = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
            hasher.known[ident] = sha
        self.files.clear()

    def discard(self) -> None:
        for path, temporary, _ in self.files:
            with contextlib.suppress(OSError, NotThere):
                with _directory(self.root, _parts(path)[:-1]) as dir_fd:
                    os.unlink(temporary, dir_fd=dir_fd)
        self.files.clear()


def stage_copy(staged: Staged, source_root: Path, path: str, sha256: str) -> Version:
    """Copy ``source_root/path`` to a temporary name beside ``path`` in ``staged.root`` and
    check that it holds ``sha256``; :class:`NotThere` if the source is not there or holds
    anything else (nothing is left behind then)."""
    src = _open_file(source_root, path)
    parts = _parts(path)
    temporary = _temporary(parts[-1], staged.owner)
    try:
        info = os.fstat(src)
        try:
            with _directory(staged.root, parts[:-1], create=True) as dir_fd:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temporary, dir_fd=dir_fd)
                flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
                dst = os.open(temporary, flags, 0o600, dir_fd=dir_fd)
                try:
                    _clone(src, dst, info.st_size)
                    got = _sha256(dst)
                    if got != sha256:
                        os.unlink(temporary, dir_fd=dir_fd)
                        raise NotThere(path)
                    os.fchmod(dst, stat.S_IMODE(info.st_mode) & ~_umask())
                    after = os.fstat(dst)
                finally:
                    os.close(dst)
        except OSError as exc:
            raise NotThere(path) from exc
    finally:
        os.close(src)
    staged.files.append((path, temporary, sha256))
    return Version(info.st_size, sha256, after.st_mtime)


def _read_umask() -> int:
    """The process's umask, read without changing it (``os.umask`` would, for a moment, for
    every thread)."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


_UMASK = _read_umask()


def _umask() -> int:
    return _UMASK


__all__ = [
    "LISTING",
    "Hasher",
    "NotThere",
    "Staged",
    "Version",
    "listing",
    "names_digest",
    "stage_copy",
]
