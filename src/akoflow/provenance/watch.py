"""Which parts of a data dir may have changed since the last look (Linux inotify).

The engine looks at a workflow's data dir at every wake-up while activities run. A full scan
costs a ``stat`` per file, so with many files a run would spend its time scanning; with a
watch, a look costs a read of the pending events and a ``stat`` of the paths they name.

Events only say *where* to look: sizes and times still come from ``stat``, so a missed or
coalesced event costs nothing as long as its path is named. When the kernel's event queue
overflowed, or a watch could not be added (the per-user watch limit), :meth:`DirWatch.dirty`
says so and the caller scans everything again. A directory that cannot be read (mode 000) is
not watched, with a warning; when its mode changes (an ``ATTRIB`` event on its parent) it is
watched and scanned again.

Names are in memory form (:mod:`akoflow.provenance.names`): inotify_simple decodes them with
:func:`os.fsdecode`, as :func:`os.scandir` does.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from inotify_simple import INotify
from inotify_simple import flags as f

from akoflow.errors import AkoflowError
from akoflow.provenance.names import display

log = logging.getLogger(__name__)

_MASK = (
    f.CREATE
    | f.CLOSE_WRITE  # written, once per close rather than once per write (MODIFY)
    | f.ATTRIB  # touch, utime, chmod
    | f.DELETE
    | f.MOVED_FROM
    | f.MOVED_TO
    | f.DELETE_SELF
    | f.MOVE_SELF
    | f.EXCL_UNLINK
    | f.ONLYDIR
    | f.DONT_FOLLOW
)
_NEW_DIR = f.CREATE | f.MOVED_TO
_GONE_DIR = f.DELETE | f.MOVED_FROM


@dataclass
class Dirty:
    """Paths (relative, '/'-separated) to ``stat`` again, and directories whose whole
    subtree must be scanned again (new, moved in, or gone)."""

    files: set[str] = field(default_factory=set)
    trees: set[str] = field(default_factory=set)


class WatchLimit(AkoflowError, OSError):
    """A watch could not be added (inotify limits), or the file system does not report
    every change; fall back to full scans."""


# inotify reports what processes of this machine do; on these, other machines write too
# (an HPC cluster's shared scratch, a NAS), and their changes would go unseen.
NETWORK_FILE_SYSTEMS = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "fuse.cephfs", "lustre",
        "gpfs", "beegfs", "fuse.beegfs", "glusterfs", "fuse.glusterfs", "fuse.sshfs",
        "afs", "ocfs2", "gfs2", "panfs", "fuse.s3fs", "fuse.juicefs", "wekafs", "virtiofs",
    }
)  # fmt: skip


def file_system_type(path: Path) -> str | None:
    """The type of the file system ``path`` is on (its longest mount point), if known."""
    target = os.path.realpath(path)
    best, kind = "", None
    for part in psutil.disk_partitions(all=True):
        mount = part.mountpoint
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, kind = mount, part.fstype
    return kind


class DirWatch:
    """An inotify watch on every directory under ``root`` (except ``exclude``)."""

    def __init__(
        self,
        root: Path,
        exclude: Path | None = None,
        unwatchable: frozenset[str] = NETWORK_FILE_SYSTEMS,
    ) -> None:
        kind = file_system_type(root)
        if kind in unwatchable:
            raise WatchLimit(0, f"{root} is on {kind}: other machines' writes would go unseen")
        self.root = str(root.absolute())
        self.exclude = str(exclude) if exclude is not None else None
        self._inotify: INotify | None = INotify(nonblocking=True)
        self._dirs: dict[int, str] = {}  # watch descriptor -> relative dir ('' = root)
        self._unreadable: set[str] = set()  # relative dirs not watched: no read permission
        try:
            self._watch_tree("")
            if not self._dirs:
                raise WatchLimit(2, f"cannot watch {self.root}: not a directory")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None
            self._dirs.clear()

    def _absolute(self, relative: str) -> str:
        return os.path.join(self.root, relative) if relative else self.root

    def _watch_tree(self, relative: str) -> None:
        """Watch ``relative`` and every directory below it (symlinks are not followed)."""
        assert self._inotify is not None
        stack = [relative]
        while stack:
            rel = stack.pop()
            path = self._absolute(rel)
            if path == self.exclude:
                continue
            try:
                wd = self._inotify.add_watch(path, _MASK)
            except FileNotFoundError:
                continue  # gone again already
            except NotADirectoryError:
                continue
            except PermissionError:  # its mode may change later: see dirty()
                if rel not in self._unreadable:
                    self._unreadable.add(rel)
                    log.warning("provenance: cannot watch %s (no read permission)", display(path))
                continue
            except OSError as exc:  # ENOSPC: the per-user watch limit
                raise WatchLimit(exc.errno, f"cannot watch {path}: {exc.strerror}") from exc
            self._dirs[wd] = rel
            try:
                with os.scandir(path) as entries:
                    for entry in entries:
                        try:
                            is_dir = entry.is_dir(follow_symlinks=False)
                        except OSError:
                            continue  # gone again
                        if is_dir:
                            stack.append(f"{rel}/{entry.name}" if rel else entry.name)
            except OSError:
                continue  # gone again, or readable but not searchable: its events still come

    def dirty(self) -> Dirty | None:
        """What changed since the last call, or ``None`` when events were lost (scan all)."""
        if self._inotify is None:
            return None
        found = Dirty()
        while True:
            events = self._inotify.read(timeout=0)
            if not events:
                return found
            for event in events:
                if event.mask & f.Q_OVERFLOW:
                    self._drain()
                    return None
                base = self._dirs.get(event.wd)
                if event.mask & f.IGNORED:
                    self._dirs.pop(event.wd, None)
                    continue
                if base is None:
                    continue
                if not event.name:  # the watched directory itself went away or moved
                    if event.mask & (f.DELETE_SELF | f.MOVE_SELF):
                        found.trees.add(base)
                    continue
                path = f"{base}/{event.name}" if base else event.name
                if event.mask & f.ISDIR:
                    if event.mask & f.ATTRIB:  # its mode may have changed: look again
                        found.trees.add(path)
                        if path in self._unreadable:
                            self._unreadable.discard(path)
                            try:
                                self._watch_tree(path)
                            except WatchLimit:
                                self.close()
                                return None
                    if event.mask & _NEW_DIR:
                        try:
                            self._watch_tree(path)
                        except WatchLimit:
                            self.close()
                            return None
                    if event.mask & f.MOVED_FROM:
                        self._unwatch_tree(path)  # its watches would follow it elsewhere
                    if event.mask & (_NEW_DIR | _GONE_DIR):
                        found.trees.add(path)
                    continue
                found.files.add(path)

    def _unwatch_tree(self, relative: str) -> None:
        assert self._inotify is not None
        prefix = relative + "/"
        for wd, rel in list(self._dirs.items()):
            if rel == relative or rel.startswith(prefix):
                del self._dirs[wd]
                try:
                    self._inotify.rm_watch(wd)
                except OSError:
                    pass  # already gone

    def _drain(self) -> None:
        assert self._inotify is not None
        while self._inotify.read(timeout=0):
            pass
