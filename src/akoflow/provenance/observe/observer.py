"""Exact per-attempt reads and writes in data dirs on the engine's host (Linux, root).

How (see docs/provenance-observation.md for the experiments behind it):

- **What happened to which file**: one fanotify group per file system holding a data dir,
  with a *filesystem* mark (every mount of it: a docker bind mount of the data dir too) and
  ``FAN_REPORT_FID | FAN_REPORT_DFID_NAME``: each event names the directory (a file handle)
  and the entry's name, also for creations, deletions and renames. A directory handle is
  resolved to a path with ``open_by_handle_at`` once and cached; a directory's creation or
  rename event carries its own handle, so files in a directory deleted before its events are
  read still get their path. Events outside the watched data dirs are dropped.
- **Which process**: the event's pid (a thread group id), read possibly after that process
  exited and was reaped. The kernel's process events connector (:mod:`.procevents`) reports
  every fork and exit in order, and a fork is queued before the child runs, so by draining it
  before deciding an event, every process's ancestry is known: :mod:`.lineage` follows it to
  the first process of an attempt (``register(key, pid=...)``), also for a background child
  whose parent exited long ago. A process that predates the observer (an attempt adopted
  after a restart) is placed by its cgroup (``register(key, cgroup=...)``) while it lives.
- **Never a wrong claim**: an event whose process cannot be placed (lost process events, a
  pid reused before the old process's events were read, a writer that is no attempt's) is
  :class:`~akoflow.provenance.observe.lineage.Ambiguous` or unclaimed, never guessed; a
  queue overflow is counted (:attr:`Observer.overflows`) so the recorder can tell which
  attempts' records may be incomplete.

Without CAP_SYS_ADMIN, :meth:`Observer.watch` raises :class:`ObservationUnavailable` (a
filesystem mark needs it; an unprivileged group would get no pids of other processes); the
recorder then falls back to what it does without.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import logging
import os
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from akoflow.errors import AkoflowError
from akoflow.provenance.observe import fanotify_abi as abi
from akoflow.provenance.observe.lineage import Ambiguous, Key, Lineage
from akoflow.provenance.observe.procevents import Fork, ProcEvents
from akoflow.provenance.watch import NETWORK_FILE_SYSTEMS, file_system_type
from akoflow.runtimes import cgroups

log = logging.getLogger(__name__)

# "closed": closed after being open for writing (written or not, perhaps through a mapping)
Kind = Literal["read", "write", "closed", "create", "delete", "rename"]

# What each event bit means to provenance. Reads are FAN_ACCESS (data was read), a file
# opened for reading only and closed (FAN_CLOSE_NOWRITE: `wc -c < f` learns f's size by fstat
# without reading it, and its output still depends on f) and execs; writes are FAN_MODIFY
# (write, truncate) and FAN_CLOSE_WRITE: a file opened for writing and closed (its last
# reference: for a shared memory mapping, when it is unmapped). A store into a mapping
# reports no FAN_MODIFY; the close does, so a process that had the file open for writing is
# one of its writers, whether or not it wrote.
_KINDS: tuple[tuple[int, Kind], ...] = (  # in the order they can happen within one event
    (abi.FAN_CREATE, "create"),
    (abi.FAN_ACCESS, "read"),
    (abi.FAN_CLOSE_NOWRITE, "read"),
    (0x1000, "read"),  # FAN_OPEN_EXEC: a program or script run from the data dir
    (abi.FAN_MODIFY, "write"),
    (abi.FAN_CLOSE_WRITE, "closed"),
    (abi.FAN_RENAME, "rename"),
    (abi.FAN_DELETE, "delete"),
)
FAN_OPEN_EXEC = 0x1000
# FAN_OPEN is no access: it says which processes may still hold a file open (see holders()).
MARK_MASK = (
    abi.FAN_OPEN
    | abi.FAN_ACCESS
    | abi.FAN_CLOSE_NOWRITE
    | FAN_OPEN_EXEC
    | abi.FAN_MODIFY
    | abi.FAN_CLOSE_WRITE
    | abi.FAN_CREATE
    | abi.FAN_DELETE
    | abi.FAN_RENAME
    | abi.FAN_ONDIR
)
INIT_FLAGS = (
    abi.FAN_CLOEXEC
    | abi.FAN_NONBLOCK
    | abi.FAN_REPORT_FID
    | abi.FAN_REPORT_DFID_NAME
    | abi.FAN_REPORT_TARGET_FID
)
EVENT_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_LARGEFILE


def open_group(*, bounded: bool = False) -> int:
    """A fanotify group whose queue has no bound where the kernel allows it: the engine's
    own first look at a data dir opens every file in it (tens of thousands of events, more
    than the default 16,384 the kernel queues before it drops events and sends an overflow),
    read and dropped as the engine's only after that look. Without the privilege (needed
    for a filesystem mark anyway), the bounded queue."""
    if not bounded:
        try:
            return fanotify_init(INIT_FLAGS | abi.FAN_UNLIMITED_QUEUE, EVENT_FLAGS)
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EINVAL):
                raise
    return fanotify_init(INIT_FLAGS, EVENT_FLAGS)


# Directories every process reads (programs, libraries, locales, configuration) and no
# workflow moves into its data dir. The filesystem mark reports them too (~45 of the ~50
# events of a `bash -c true`); once one of them is known to lie outside every data dir, an
# ignore mark has the kernel drop its events (and its entries' reads and writes) instead of
# sending each one here. Renames are never ignored: a move out of such a directory into a
# data dir is still seen.
SYSTEM_TREES = (b"/usr", b"/etc", b"/lib", b"/lib32", b"/lib64", b"/libx32", b"/bin", b"/sbin")
QUIET_MASK = (MARK_MASK & ~abi.FAN_RENAME) | abi.FAN_EVENT_ON_CHILD | abi.FAN_ONDIR
QUIET_FLAGS = (
    abi.FAN_MARK_ADD
    | abi.FAN_MARK_IGNORE
    | abi.FAN_MARK_IGNORED_SURV_MODIFY
    | abi.FAN_MARK_DONT_FOLLOW
    | abi.FAN_MARK_ONLYDIR
)
MAX_QUIET = 4096  # ignore marks per group (each pins a directory's inode)
READ_BYTES = 1 << 16
UNCLAIMED_AFTER = 5.0  # s an access may wait for its attempt to be registered
NEGATIVE_CACHE = 1 << 16  # directories known to lie outside every data dir (bounded)


class ObservationUnavailable(AkoflowError, OSError):
    """Exact observation cannot run here (no CAP_SYS_ADMIN or CAP_NET_ADMIN, a kernel or file
    system without what it needs); the message says why. The caller falls back to another
    mechanism."""


@dataclass(frozen=True, slots=True)
class Access:
    """One observed access: ``path`` (bytes, relative to ``data_dir``) was read, written,
    created, deleted or renamed (from ``old_path``) by a process of attempt ``key``."""

    key: Key | Ambiguous | None  # None: by no registered attempt
    kind: Kind
    data_dir: bytes
    path: bytes
    old_path: bytes | None = None
    is_dir: bool = False
    pid: int = 0
    file_id: bytes | None = None  # the object's file handle (same file across renames)
    # How many times every queue had been read to its end before this access was read. The
    # kernel merges an unread event with a later one of the same process on the same file,
    # so of two accesses the one of a higher epoch surely came after the other; of one epoch,
    # the order is not known. A read known only by its close (`wc -c < f` reads f's size by
    # fstat, no read event) has the epoch of its open, -1 when its open was never seen.
    epoch: int = 0


# ==================================================================== system calls


def _libc() -> ctypes.CDLL:
    # The symbols this process has (libc among them, glibc or musl): find_library("c")
    # would run `ldconfig -p` in a subprocess at every engine start.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.fanotify_init.argtypes = [ctypes.c_uint, ctypes.c_uint]
    libc.fanotify_init.restype = ctypes.c_int
    libc.fanotify_mark.argtypes = [
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_uint64,
        ctypes.c_int,
        ctypes.c_char_p,
    ]
    libc.fanotify_mark.restype = ctypes.c_int
    libc.open_by_handle_at.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
    libc.open_by_handle_at.restype = ctypes.c_int
    return libc


_LIBC: ctypes.CDLL | None = None


def libc() -> ctypes.CDLL:
    global _LIBC
    if _LIBC is None:
        _LIBC = _libc()
    return _LIBC


def _errno_error(what: str) -> OSError:
    code = ctypes.get_errno()
    return OSError(code, f"{what}: {os.strerror(code)}")


def fanotify_init(flags: int, event_flags: int) -> int:
    fd = int(libc().fanotify_init(flags, event_flags))
    if fd < 0:
        raise _errno_error("fanotify_init")
    return fd


def fanotify_mark(group: int, flags: int, mask: int, path: bytes) -> None:
    if libc().fanotify_mark(group, flags, mask, -100, path) < 0:  # AT_FDCWD
        raise _errno_error("fanotify_mark")


def path_of_handle(mount_fd: int, handle_type: int, handle: bytes) -> bytes | None:
    """Where the directory with this handle is now; None when it is gone."""
    buf = ctypes.create_string_buffer(struct.pack("=Ii", len(handle), handle_type) + handle)
    fd = int(libc().open_by_handle_at(mount_fd, buf, os.O_PATH | os.O_CLOEXEC))
    if fd < 0:
        return None  # ESTALE: deleted; anything else: not ours to know
    try:
        return os.readlink(f"/proc/self/fd/{fd}".encode())
    except OSError:
        return None
    finally:
        os.close(fd)


def cgroup_of(pid: int) -> bytes | None:
    """The process's cgroup v2 path (as in /proc/<pid>/cgroup), None if unreadable."""
    try:
        with open(f"/proc/{pid}/cgroup", "rb") as f:
            for line in f.read().splitlines():
                if line.startswith(b"0::"):
                    return line[3:]
    except OSError:
        return None
    return None


def cgroup_dir_of(pid: int) -> str | None:
    """The directory of the process's cgroup v2 (``/sys/fs/cgroup/.../x``), None when the
    process is gone or no cgroup2 hierarchy is mounted."""
    relative = cgroup_of(pid)
    if relative is None:
        return None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            head, _, tail = line.partition(" - ")
            fields = head.split()
            if tail.split()[:1] == ["cgroup2"] and len(fields) >= 5 and fields[3] == "/":
                directory = fields[4].rstrip("/") + os.fsdecode(relative)
                return directory if os.path.isdir(directory) else None
    return None


def cgroup_relative(directory: str) -> bytes:
    """``/sys/fs/cgroup/unified/a/b`` -> ``/a/b``: the form /proc/<pid>/cgroup uses."""
    real = os.path.realpath(directory)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            head, _, tail = line.partition(" - ")
            fields = head.split()
            if tail.split()[:1] == ["cgroup2"] and len(fields) >= 5:
                mount = fields[4]
                if real == mount or real.startswith(mount.rstrip("/") + "/"):
                    return os.fsencode(real[len(mount.rstrip("/")) :] or "/")
    raise ObservationUnavailable(errno.ENOENT, f"{directory} is not in a cgroup v2 hierarchy")


# ==================================================================== the observer


@dataclass
class _FileSystem:
    """One fanotify group with a filesystem mark, and its directory-handle cache."""

    group: int
    mount_fd: int  # any directory of the file system, for open_by_handle_at
    data_dirs: list[bytes] = field(default_factory=list)
    inside: dict[bytes, bytes] = field(default_factory=dict)  # handle -> absolute dir path
    outside: set[bytes] = field(default_factory=set)  # handles of dirs in no data dir
    quieted: set[bytes] = field(default_factory=set)  # dirs whose events the kernel drops

    def close(self) -> None:
        # Closing a fanotify group waits for the kernel's grace period (0.1-16 ms here): in
        # a thread of its own, the event loop (the API, a run's last records) goes on.
        threading.Thread(target=os.close, args=(self.group,), daemon=True).start()
        os.close(self.mount_fd)


def _handle_key(fid: abi.FileId) -> bytes:
    return struct.pack("=i", fid.handle_type) + fid.handle


@dataclass
class _Pending:
    """An access whose process is not yet known to belong to an attempt."""

    since: float
    pid: int
    access: Access


class Observer:
    """Observes data dirs; tells, per registered attempt, what its processes read and wrote.

    Use: :meth:`start`, :meth:`watch` each data dir, :meth:`register` each attempt as soon as
    its first process exists, :meth:`take` its accesses when it ended (and whenever wanted
    before), :meth:`unregister` it after, :meth:`close` at the end. :meth:`attach` keeps the
    kernel queues drained from an asyncio loop (without it, call :meth:`pump` often enough:
    the kernel keeps 16384 events per group).
    """

    def __init__(
        self, *, unclaimed_after: float = UNCLAIMED_AFTER, bounded_queue: bool = False
    ) -> None:
        self.unclaimed_after = unclaimed_after
        self._bounded_queue = bounded_queue  # the kernel's 16,384-event queue (tests of it)
        self.overflows = 0  # kernel queue overflows: some accesses were lost
        self._own_pid = os.getpid()
        self._procs: ProcEvents | None = None
        self._lineage = Lineage()
        self._fs: dict[int, _FileSystem] = {}  # st_dev -> its group
        self._cgroups: dict[bytes, Key] = {}  # relative cgroup path -> attempt
        self._cgroup_names: dict[bytes, Key] = {}  # a cgroup's name part -> attempt
        self._by_key: dict[Key, list[Access]] = {}
        self._unclaimed: list[Access] = []
        self._pending: deque[_Pending] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._quiet_trees: list[bytes] = [*SYSTEM_TREES]
        for tree in (sys.prefix, sys.base_prefix, Path(__file__).parents[2]):
            self.quiet(tree)  # the engine's interpreter and its own code (the spawner)
        self._can_quiet = True  # False on kernels without FAN_MARK_IGNORE (before 6.0)
        self._epoch = 0  # times every queue was read to its end (see Access.epoch)
        # (data dir, path) -> pid -> the epoch of its earliest open not known closed
        self._open: dict[tuple[bytes, bytes], dict[int, int]] = {}
        self._opens_of: dict[int, set[tuple[bytes, bytes]]] = {}  # pid -> its keys in _open

    # ---------------------------------------------------------------- life

    def start(self) -> None:
        """Subscribe to process events. Raises :class:`ObservationUnavailable` where they
        cannot be had or name other pids (a pid namespace other than the initial one)."""
        try:
            self._procs = ProcEvents()
        except OSError as exc:
            # Kernels differ on who may listen (newer ones ask CAP_NET_ADMIN); the filesystem
            # marks that come next need CAP_SYS_ADMIN on every kernel: both are said.
            why = (
                "listening needs CAP_NET_ADMIN, and observing a file system CAP_SYS_ADMIN"
                if exc.errno in (errno.EPERM, errno.EACCES)
                else exc.strerror or str(exc)
            )
            raise ObservationUnavailable(
                exc.errno or errno.EPERM, f"process events unavailable: {why}"
            ) from exc
        try:
            self._probe_process_events()
        except BaseException:
            self.close()
            raise

    def _probe_process_events(self) -> None:
        """A child's fork must be reported with the pid this process sees."""
        assert self._procs is not None
        child = subprocess.Popen(["true"], stdin=subprocess.DEVNULL)
        child.wait()
        if not any(isinstance(e, Fork) and e.child == child.pid for e in self._procs.read()):
            raise ObservationUnavailable(
                errno.ENOSYS, "process events name other pids (not the initial pid namespace?)"
            )

    def watch(self, data_dir: Path | str | bytes) -> None:
        """Observe accesses under ``data_dir`` (an existing directory)."""
        path = os.fsencode(os.path.realpath(os.fsencode(data_dir)))
        kind = file_system_type(Path(os.fsdecode(path)))
        if kind in NETWORK_FILE_SYSTEMS:
            raise ObservationUnavailable(
                errno.EOPNOTSUPP, f"{os.fsdecode(path)!r} is on {kind}: other hosts' writes unseen"
            )
        try:
            dev = os.stat(path).st_dev
        except OSError as exc:
            raise ObservationUnavailable(
                exc.errno or errno.EIO, f"cannot observe {os.fsdecode(path)!r}: {exc.strerror}"
            ) from exc
        fs = self._fs.get(dev)
        if fs is None:
            fs = self._fs[dev] = self._open_group(path)
        if path not in fs.data_dirs:
            fs.data_dirs.append(path)
            fs.outside.clear()  # a directory out of the others may be in this one
            if fs.quieted and _under_any(path, self._quiet_trees):
                _flush_quiet(fs)  # a quieted directory may hold this data dir or lie in it

    def quiet(self, tree: Path | str | bytes) -> None:
        """Directories under ``tree`` (outside every data dir) are the engine's or the
        system's: their events may be dropped by the kernel (the state dir, the
        interpreter's prefix)."""
        path = os.fsencode(os.path.realpath(os.fsencode(tree)))
        if path not in self._quiet_trees:
            self._quiet_trees.append(path)

    def _open_group(self, path: bytes) -> _FileSystem:
        try:
            group = open_group(bounded=self._bounded_queue)
        except OSError as exc:
            raise ObservationUnavailable(exc.errno or errno.EPERM, str(exc)) from exc
        try:
            fanotify_mark(group, abi.FAN_MARK_ADD | abi.FAN_MARK_FILESYSTEM, MARK_MASK, path)
            mount_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            os.close(group)
            reason = {
                errno.EPERM: "a filesystem mark needs CAP_SYS_ADMIN",
                errno.ENODEV: "the file system has no fsid (FUSE?)",
                errno.EXDEV: "a subvolume (btrfs): file ids are not unique",
                errno.EOPNOTSUPP: "the file system cannot report file ids",
                errno.EINVAL: "the kernel lacks FAN_RENAME or name reporting (5.17+ needed)",
            }.get(exc.errno or 0, str(exc))
            raise ObservationUnavailable(
                exc.errno or errno.EPERM, f"cannot observe {os.fsdecode(path)!r}: {reason}"
            ) from exc
        fs = _FileSystem(group, mount_fd)
        if self._loop is not None:
            self._loop.add_reader(group, self.pump)
        return fs

    def close(self) -> None:
        self.detach()
        for fs in self._fs.values():
            fs.close()
        self._fs.clear()
        if self._procs is not None:
            self._procs.close()
            self._procs = None

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Drain the kernel queues whenever they have something (from ``loop``)."""
        self._loop = loop
        for fs in self._fs.values():
            loop.add_reader(fs.group, self.pump)
        if self._procs is not None:
            loop.add_reader(self._procs.fileno(), self.pump)

    def detach(self) -> None:
        if self._loop is None:
            return
        for fs in self._fs.values():
            self._loop.remove_reader(fs.group)
        if self._procs is not None:
            self._loop.remove_reader(self._procs.fileno())
        self._loop = None

    # ---------------------------------------------------------------- attempts

    def register(self, key: Key, *, pid: int | None = None, cgroup: str | None = None) -> None:
        """Attempt ``key`` is process ``pid`` and its descendants (register right after the
        process is created: what it and its children did before is found by ancestry), and/or
        every process in ``cgroup`` (a cgroup v2 directory, for processes that predate the
        observer: an adopted attempt, or a container)."""
        self._sync_processes()
        if pid is not None:
            self._lineage.assign(pid, key)
        if cgroup is not None and not os.path.isabs(cgroup):
            # A name (a container's id) the cgroup's path holds, wherever the container
            # manager puts it (/docker/<id>, /system.slice/docker-<id>.scope): registered
            # before the container starts, so that no process of it is older than this.
            self._cgroup_names[os.fsencode(cgroup)] = key
        elif cgroup is not None:
            relative = cgroup_relative(cgroup)
            self._cgroups[relative] = key
            for member in cgroups.members(cgroup):
                self._lineage.assign(member, key)
        self._retry_pending(force=False)

    def unregister(self, key: Key) -> None:
        """The attempt ended and its accesses were taken: forget it."""
        self._lineage.forget(key)
        for relative in [c for c, k in self._cgroups.items() if k == key]:
            del self._cgroups[relative]
        for name in [c for c, k in self._cgroup_names.items() if k == key]:
            del self._cgroup_names[name]
        self._by_key.pop(key, None)

    def take(self, key: Key) -> list[Access]:
        """The accesses of attempt ``key`` observed since the last call, in order."""
        self.pump()
        return self._by_key.pop(key, [])

    def take_all(self, *, pump: bool = True) -> dict[Key, list[Access]]:
        """The accesses of every registered attempt observed since the last take, in order
        (``pump=False``: of what was read already, for a caller that just pumped)."""
        if pump:
            self.pump()
        taken, self._by_key = self._by_key, {}
        return taken

    @property
    def quieted(self) -> frozenset[bytes]:
        """Directories whose events the kernel drops (see :data:`SYSTEM_TREES`)."""
        return frozenset(q for fs in self._fs.values() for q in fs.quieted)

    @property
    def losses(self) -> int:
        """How many times events were lost (queue overflows, lost process events): an
        attempt running across a loss may have accesses that were never seen."""
        lost = self._procs is not None and self._procs.lost
        return self.overflows + int(lost)

    def take_unclaimed(self, *, now: bool = False, pump: bool = True) -> list[Access]:
        """Accesses no registered attempt made (or :class:`Ambiguous` ones), once they waited
        ``unclaimed_after`` seconds for a registration (all of them with ``now``)."""
        if pump:
            self.pump()
        self._retry_pending(force=now)
        taken, self._unclaimed = self._unclaimed, []
        return taken

    # ---------------------------------------------------------------- reading

    def waiting(self) -> list[Access]:
        """Accesses read but still waiting for their attempt to be registered (they are
        delivered, or unclaimed, later)."""
        return [item.access for item in self._pending]

    def pump(self) -> bool:
        """Read what the kernel has (never blocks) and attribute it; True when every queue
        was emptied (each event queued before the call is read)."""
        epoch = self._sync_processes()
        drained = True
        for fs in list(self._fs.values()):
            drained = self._read_group(fs) and drained
        if drained:  # every event of processes that exited by ``epoch`` is read
            self._epoch += 1
            # Waiting events keep their process's ancestry: its attempt may be registered
            # later by an ancestor's pid (a container's first process, known after start).
            keep: set[int] = set()
            for item in self._pending:
                keep.update(self._lineage.ancestry(item.pid))
            self._lineage.retire(epoch, keep=keep)
        self._retry_pending(force=False)
        return drained

    def _sync_processes(self) -> int:
        if self._procs is None:
            return self._lineage.epoch
        events = self._procs.read()
        for event in events:
            if isinstance(event, Fork) and event.child in self._opens_of:
                self._reborn(event.child)
        return self._lineage.apply(events)

    def _reborn(self, pid: int) -> None:
        """``pid`` is a new process: the opens seen of an earlier one by that pid (one that
        handed its descriptions to a child and exited: no close of its own was seen) are not
        its own. Kept, a read of the new one known by its close was dated by them, long
        before, and what it wrote before reading was taken for derived from the file."""
        for where in self._opens_of.pop(pid, ()):
            pids = self._open.get(where)
            if pids is not None and pids.pop(pid, None) is not None and not pids:
                del self._open[where]

    def _read_group(self, fs: _FileSystem, max_reads: int = 64) -> bool:
        """Read the group's queue; True when it was emptied."""
        for _ in range(max_reads):
            try:
                data = os.read(fs.group, READ_BYTES)
            except BlockingIOError:
                return True
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise
            try:
                events = abi.decode(data)
            except abi.DecodeError as exc:  # never expected: count it as lost events
                log.warning("provenance: undecodable fanotify events (%s)", exc)
                self.overflows += 1
                continue
            for event in events:
                self._event(fs, event)
        return False

    def _event(self, fs: _FileSystem, event: abi.RawEvent) -> None:
        if event.fd >= 0:  # not in FID mode; never expected, but never leak it
            os.close(event.fd)
        if event.mask & abi.FAN_Q_OVERFLOW:
            self.overflows += 1
            return
        if event.pid == self._own_pid:
            return  # the engine itself (its checksums read every file)
        is_dir = bool(event.mask & abi.FAN_ONDIR)
        opened_at = -1  # a read known only by its close happened at its open or later
        if not is_dir and event.mask & (abi.FAN_OPEN | _CLOSES):
            opened_at = self._opened(fs, event)
        said: set[Kind] = set()  # one read per event, whichever bits say it
        for bit, kind in _KINDS:
            # A directory's read is a listing (readdir: a glob, `ls`): its names are input.
            if not event.mask & bit or (is_dir and kind in ("write", "closed")):
                continue
            if kind == "read":
                if kind in said:
                    continue
                said.add(kind)
            # A read known only by its close happened at its open or later: the open's epoch
            # when it was seen, else at some time up to now (an earlier epoch than any). A
            # read and a close in one event may be of two descriptions (a new one read now,
            # an older one read through a mapping and closed): the read is the earlier.
            early = opened_at if kind == "read" and event.mask & abi.FAN_CLOSE_NOWRITE else None
            access = self._access(fs, event, kind, is_dir, early=early)
            if access is not None:
                self._attribute(event.pid, access)

    def _opened(self, fs: _FileSystem, event: abi.RawEvent) -> int:
        """Which processes opened a data dir's file and have not closed it (as far as the
        events say: an open and a close merged into one event count as closed); for a
        close, the epoch of the earliest open it may close (-1: none was seen).

        The epoch matters for a read known only by its close: a read between an open and
        a close the engine read apart (its open and first read in one event, its close in
        the next) is no earlier than that open, not at any time before."""
        where = self._place(fs, event.fid(abi.INFO_DFID_NAME))
        if where is None:
            return -1
        pids = self._open.get(where)
        opened_at = pids.get(event.pid, -1) if pids is not None else -1
        if pids and event.mask & _CLOSES:
            # The description closed may be one it was handed (inherited from its shell's
            # `exec 3<f`), opened when its opener's was, even when an open of its own was
            # seen too (read apart from this close on a busy machine, or merged with it).
            handed = self._handed_open(pids, event.pid)
            if handed >= 0 and (opened_at < 0 or handed < opened_at):
                opened_at = handed
        if event.mask & abi.FAN_OPEN:  # an open read now was made since the last drain
            opened_at = self._epoch if opened_at < 0 else opened_at
        if not event.mask & _CLOSES:
            self._open.setdefault(where, {}).setdefault(event.pid, opened_at)
            self._opens_of.setdefault(event.pid, set()).add(where)
        elif pids is not None and pids.pop(event.pid, None) is not None:
            self._forgot_open(event.pid, where)
            if not pids:
                del self._open[where]
        return opened_at

    def _forgot_open(self, pid: int, where: tuple[bytes, bytes]) -> None:
        known = self._opens_of.get(pid)
        if known is not None:
            known.discard(where)
            if not known:
                del self._opens_of[pid]

    def _handed_open(self, opened: dict[int, int], pid: int) -> int:
        """The earliest epoch at which a process that may have handed ``pid`` a
        description of the file opened it (``opened``: pid -> epoch of its earliest open
        not known closed): its ancestors, and the other processes of its attempt; -1 when
        none did. A close merged with a new open is not dated by that open: the description
        it closes may be one of these, read long before."""
        handers = set(self._lineage.ancestry(pid)[1:])
        owner = self._lineage.owner(pid)
        if owner is not None and not isinstance(owner, Ambiguous):
            handers.update(p for p in opened if p != pid and self._lineage.owner(p) == owner)
        return min((at for p, at in opened.items() if p in handers), default=-1)

    def holders(
        self, data_dir: bytes, path: bytes, dev: int, ino: int
    ) -> list[Key | Ambiguous | None]:
        """The attempts (None: a process of none) of the processes that opened ``path`` and
        still hold the file (``dev``, ``ino``) open for writing, by a descriptor or a shared
        writable mapping: writers whose stores may not have been reported yet (a store into
        a mapping is reported only by the mapping's last close)."""
        pids = self._open.get((data_dir, path))
        if not pids:
            return []
        found: list[Key | Ambiguous | None] = []
        for pid in sorted(pids):
            held = _holds_for_writing(pid, dev, ino)
            if held is None:  # gone, or no longer holding it
                del pids[pid]
                self._forgot_open(pid, (data_dir, path))
            elif held:
                found.append(self._owner(pid))
        if not pids:
            self._open.pop((data_dir, path), None)
        return found

    def _access(
        self,
        fs: _FileSystem,
        event: abi.RawEvent,
        kind: Kind,
        is_dir: bool,
        *,
        early: int | None = None,
    ) -> Access | None:
        """``early``: the epoch of a read known only by its close (see :meth:`_opened`)."""
        obj = event.fid(abi.INFO_FID)
        file_id = _handle_key(obj) if obj is not None else None
        epoch = self._epoch if early is None else early
        if kind == "rename":
            old = self._place(fs, event.fid(abi.INFO_OLD_DFID_NAME))
            new = self._place(fs, event.fid(abi.INFO_NEW_DFID_NAME))
            if is_dir and obj is not None:
                self._dir_renamed(fs, obj, old, new)
            if old is None and new is None:
                return None
            if old is None:  # moved into a data dir: a creation there
                assert new is not None
                return Access(None, "create", *new, None, is_dir, event.pid, file_id, epoch)
            if new is None or new[0] != old[0]:  # moved out of its data dir
                return Access(None, "delete", *old, None, is_dir, event.pid, file_id, epoch)
            return Access(None, "rename", *new, old[1], is_dir, event.pid, file_id, epoch)
        listing = is_dir and kind == "read"
        where = self._place(fs, event.fid(abi.INFO_DFID_NAME), root=listing)
        if where is None:
            return None
        if is_dir and obj is not None:
            if kind == "create":  # its handle is here now: its files keep their paths
                fs.inside[_handle_key(obj)] = _join(where[0], where[1])
            elif kind == "delete":
                fs.inside.pop(_handle_key(obj), None)
        return Access(None, kind, *where, None, is_dir, event.pid, file_id, epoch)

    def _place(
        self, fs: _FileSystem, fid: abi.FileId | None, *, root: bool = False
    ) -> tuple[bytes, bytes] | None:
        """(data dir, path relative to it) of the entry a DFID_NAME record names (with
        ``root``, a data dir itself is ``b"."`` in it: a listing of it)."""
        if fid is None or fid.name is None:
            return None
        directory = self._directory(fs, fid)
        if directory is None:
            return None
        full = directory if fid.name in (b"", b".") else _join(directory, fid.name)
        for data_dir in fs.data_dirs:
            if full.startswith(data_dir + b"/"):
                return data_dir, full[len(data_dir) + 1 :]
            if root and full == data_dir:
                return data_dir, b"."
        return None

    def _directory(self, fs: _FileSystem, fid: abi.FileId) -> bytes | None:
        key = _handle_key(fid)
        path = fs.inside.get(key)
        if path is not None:
            return path
        if key in fs.outside:
            return None
        path = path_of_handle(fs.mount_fd, fid.handle_type, fid.handle)
        if path is not None and any(path == d or path.startswith(d + b"/") for d in fs.data_dirs):
            fs.inside[key] = path
            return path
        if path is not None:  # a deleted directory is not remembered: its handle is dead
            if len(fs.outside) >= NEGATIVE_CACHE:
                fs.outside.clear()
            fs.outside.add(key)
            self._quiet_dir(fs, path)
        return None

    def _quiet_dir(self, fs: _FileSystem, path: bytes) -> None:
        """Have the kernel drop the events of ``path`` (outside every data dir) if it is in a
        quiet tree and neither holds nor lies in a data dir."""
        if (
            not self._can_quiet
            or path in fs.quieted
            or len(fs.quieted) >= MAX_QUIET
            or not _under_any(path, self._quiet_trees)
            or any(d.startswith(path + b"/") or d == path for d in fs.data_dirs)
        ):
            return
        try:
            fanotify_mark(fs.group, QUIET_FLAGS, QUIET_MASK, path)
        except OSError as exc:
            if exc.errno == errno.EINVAL:  # no FAN_MARK_IGNORE: events keep coming, fine
                self._can_quiet = False
            return  # gone or replaced meanwhile: its events are still dropped here
        fs.quieted.add(path)

    @staticmethod
    def _dir_renamed(
        fs: _FileSystem,
        obj: abi.FileId,
        old: tuple[bytes, bytes] | None,
        new: tuple[bytes, bytes] | None,
    ) -> None:
        """A directory moved: paths cached below its old place are stale; it and what
        moved in with it from outside are looked up again."""
        if old is not None:
            prefix = _join(*old)
            below = prefix + b"/"
            for handle in [h for h, p in fs.inside.items() if p == prefix or p.startswith(below)]:
                del fs.inside[handle]
        if new is not None:
            fs.inside[_handle_key(obj)] = _join(*new)
            fs.outside.clear()
            if old is None and fs.quieted:
                # Moved in from outside: it (or a directory in it) may be quieted, and ignore
                # marks follow inodes, not paths. Events between the move and now were
                # dropped; what they changed differs from the last recorded version and is
                # found when the run's files are compared.
                _flush_quiet(fs)

    # ---------------------------------------------------------------- attribution

    def _owner(self, pid: int) -> Key | Ambiguous | None:
        owner = self._lineage.owner(pid)
        if owner is not None or not (self._cgroups or self._cgroup_names):
            return owner
        # Not by ancestry: by the cgroup of the process or of its nearest living ancestor
        # (a container's init outlives the script it runs), if that process still exists
        # and is the same one (no exit of it reported after its cgroup was read).
        for member in self._lineage.ancestry(pid):
            cgroup = cgroup_of(member)
            if cgroup is None:
                continue
            self._sync_processes()
            if self._lineage.uncertain(member):
                continue
            key = _cgroup_owner(self._cgroups, cgroup) or _named_owner(self._cgroup_names, cgroup)
            if key is not None:
                self._lineage.assign(member, key)
                return self._lineage.owner(pid)
        return None

    def _attribute(self, pid: int, access: Access) -> None:
        owner = self._owner(pid)
        if owner is None:
            self._pending.append(_Pending(time.monotonic(), pid, access))
        else:
            self._deliver(owner, access)

    def _deliver(self, owner: Key | Ambiguous, access: Access) -> None:
        placed = Access(
            owner,
            access.kind,
            access.data_dir,
            access.path,
            access.old_path,
            access.is_dir,
            access.pid,
            access.file_id,
            access.epoch,
        )
        if isinstance(owner, Ambiguous):
            self._unclaimed.append(placed)
        else:
            self._by_key.setdefault(owner, []).append(placed)

    def _retry_pending(self, *, force: bool) -> None:
        if not self._pending:
            return
        deadline = time.monotonic() - self.unclaimed_after
        waiting: deque[_Pending] = deque()
        while self._pending:
            item = self._pending.popleft()
            owner = self._owner(item.pid)
            if owner is not None:
                self._deliver(owner, item.access)
            elif force or item.since <= deadline:
                self._unclaimed.append(item.access)
            else:
                waiting.append(item)
        self._pending = waiting


_CLOSES = abi.FAN_CLOSE_WRITE | abi.FAN_CLOSE_NOWRITE


def _holds_for_writing(pid: int, dev: int, ino: int) -> bool | None:
    """Whether process ``pid`` has the file open for writing (a descriptor whose flags allow
    writing, or a shared writable mapping); None when it holds the file no more (or is
    gone)."""
    holds = False
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                st = os.stat(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if (st.st_dev, st.st_ino) != (dev, ino):
                continue
            holds = True
            with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                for line in info:
                    if line.startswith("flags:") and int(line.split()[1], 8) & os.O_ACCMODE:
                        return True
        device = f"{os.major(dev):02x}:{os.minor(dev):02x}"
        with open(f"/proc/{pid}/maps") as maps:
            for line in maps:
                fields = line.split(maxsplit=5)
                if len(fields) >= 5 and fields[4] == str(ino) and fields[3] == device:
                    holds = True
                    if fields[1][1] == "w" and fields[1][3] == "s":
                        return True
    except OSError:
        return None
    return False if holds else None


def _flush_quiet(fs: _FileSystem) -> None:
    """Remove every ignore mark of the group (its inode marks): all events are heard again."""
    with contextlib.suppress(OSError):
        fanotify_mark(fs.group, abi.FAN_MARK_FLUSH, 0, b"/")
    fs.quieted.clear()


def _under_any(path: bytes, trees: list[bytes]) -> bool:
    return any(path == t or path.startswith(t + b"/") for t in trees)


def _join(directory: bytes, name: bytes) -> bytes:
    return directory + b"/" + name if name else directory


def _cgroup_owner(cgroups: dict[bytes, Key], cgroup: bytes) -> Key | None:
    """The attempt whose cgroup is ``cgroup`` or one of its ancestors."""
    node = cgroup
    while True:
        key = cgroups.get(node)
        if key is not None:
            return key
        if node in (b"/", b""):
            return None
        node = node.rsplit(b"/", 1)[0] or b"/"


def _named_owner(names: dict[bytes, Key], cgroup: bytes) -> Key | None:
    """The attempt whose registered name a component of ``cgroup`` holds."""
    if not names:
        return None
    for part in cgroup.split(b"/"):
        for name, key in names.items():
            if name in part:
                return key
    return None


__all__ = ["Access", "Kind", "ObservationUnavailable", "Observer", "cgroup_dir_of"]
