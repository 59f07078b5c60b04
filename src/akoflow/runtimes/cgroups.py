"""Per-attempt cgroup v2 groups for the local runtime.

A process group is not a container: a script can leave it (``setsid``, ``setsid -f``, a daemon
that double-forks) and outlive its activity. A cgroup cannot be left by its members, so each
local attempt gets one, ``<engine's cgroup>/akoflow-<hash of the attempt's files prefix>``,
killed (``cgroup.kill``) and removed when the attempt ends. The name is derived from the
attempt alone, so an engine restarted after a crash finds the cgroup of an attempt it adopts.

Only where the engine may create one: a cgroup v2 hierarchy whose engine cgroup is writable
(root, or a delegated subtree) on a kernel with ``cgroup.kill`` (5.14+). Elsewhere the runtime
falls back to killing the attempt's session (process group).
"""

from __future__ import annotations

import errno
import hashlib
import os
import time

NAME_PREFIX = "akoflow-"


def _unescape(field: str) -> str:
    """Mount points in mountinfo have space, tab, newline and backslash octal-escaped."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def engine_cgroup_dir(mountinfo: str, proc_cgroup: str) -> str | None:
    """The directory of this process's cgroup v2, from ``/proc/self/mountinfo`` and
    ``/proc/self/cgroup``; None without a cgroup v2 hierarchy that shows it."""
    own = next((line[3:] for line in proc_cgroup.splitlines() if line.startswith("0::")), None)
    if own is None or not own.startswith("/") or own.endswith(" (deleted)"):
        return None
    for line in mountinfo.splitlines():
        head, sep, tail = line.partition(" - ")
        fields = head.split()
        if not sep or len(fields) < 5 or tail.split()[:1] != ["cgroup2"]:
            continue
        root, mount_point = _unescape(fields[3]), _unescape(fields[4])
        if root == "/":
            relative = own
        elif own == root or own.startswith(root + "/"):
            relative = own[len(root) :]
        else:
            continue
        return mount_point.rstrip("/") + relative if relative != "/" else mount_point
    return None


def process_cgroup_dir(pid: int) -> str | None:
    """The directory of process ``pid``'s cgroup v2; None when unknown (gone, no v2)."""
    try:
        with open("/proc/self/mountinfo") as f:
            mountinfo = f.read()
        with open(f"/proc/{pid}/cgroup") as f:
            proc_cgroup = f.read()
    except OSError:
        return None
    return engine_cgroup_dir(mountinfo, proc_cgroup)


def usable_base() -> str | None:
    """The engine's own cgroup directory when attempts can get cgroups under it: a probe
    child can be created there, has ``cgroup.kill``, and processes may move into it."""
    try:
        with open("/proc/self/mountinfo") as f:
            mountinfo = f.read()
        with open("/proc/self/cgroup") as f:
            proc_cgroup = f.read()
    except OSError:
        return None
    base = engine_cgroup_dir(mountinfo, proc_cgroup)
    if base is None or not os.access(os.path.join(base, "cgroup.procs"), os.W_OK):
        return None
    probe = os.path.join(base, f"{NAME_PREFIX}probe-{os.getpid()}")
    try:
        os.mkdir(probe)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        return base if os.path.exists(os.path.join(probe, "cgroup.kill")) else None
    finally:
        try:
            os.rmdir(probe)
        except OSError:
            pass


def attempt_cgroup(base: str, prefix: str) -> str:
    """The cgroup of the attempt whose files start with ``prefix`` (any bytes, any length)."""
    digest = hashlib.sha256(os.fsencode(prefix)).hexdigest()[:24]
    return os.path.join(base, NAME_PREFIX + digest)


def create(path: str) -> bool:
    """Create the attempt's cgroup (an existing one, left by a crashed engine, is reused)."""
    try:
        os.mkdir(path)
    except FileExistsError:
        return True
    except OSError:
        return False
    return True


def members(path: str) -> list[int]:
    """PIDs in the cgroup and in the cgroups below it (a script may create its own)."""
    pids: list[int] = []
    for directory, _, _ in os.walk(path):
        try:
            with open(os.path.join(directory, "cgroup.procs")) as f:
                pids.extend(int(line) for line in f.read().split())
        except OSError:
            continue
    return pids


def kill(path: str) -> None:
    """SIGKILL every process in the cgroup and below it, at once (no fork race)."""
    try:
        with open(os.path.join(path, "cgroup.kill"), "w") as f:
            f.write("1")
    except OSError:
        pass


def remove(path: str) -> bool:
    """Remove the cgroup (and any cgroup a script created below it); True when it is gone,
    False while processes are still in it."""
    try:
        os.rmdir(path)
        return True
    except FileNotFoundError:
        return True
    except OSError as exc:
        if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY):
            return False
    for directory, _, _ in os.walk(path, topdown=False):
        try:
            os.rmdir(directory)
        except FileNotFoundError:
            continue
        except OSError:
            return False
    return True


def sweep(base: str, min_age: float) -> int:
    """Remove the empty attempt cgroups under ``base`` created over ``min_age`` seconds ago:
    those of attempts that ended while no engine watched, whose engine never came back (a
    populated one cannot be removed; a younger one may be about to be joined). The count."""
    removed = 0
    try:
        entries = list(os.scandir(base))
    except OSError:
        return 0
    deadline = time.time() - min_age
    for entry in entries:
        if not entry.name.startswith(NAME_PREFIX):
            continue
        try:
            if entry.stat().st_mtime > deadline:  # a cgroup's mtime is its creation time
                continue
            os.rmdir(entry.path)
        except OSError:
            continue
        removed += 1
    return removed


__all__ = ["attempt_cgroup", "create", "kill", "members", "remove", "sweep", "usable_base"]
