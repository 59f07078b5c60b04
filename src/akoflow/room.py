"""Whether a directory has room for what the engine must write there next.

A full disk (or a spent quota) is a shortage the user can end by freeing room: work held for
it goes on once a probe, writing in the same place what the next step writes, succeeds. Used
by the local runtime (the files of an attempt's start) and the engine (its store).
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Sequence

# No space, inode or quota left. The local spawner keeps its own copy: it runs alone, on the
# standard library only.
HOST_SHORT = frozenset({errno.ENOSPC, errno.EDQUOT})


def host_short(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk is short of room (see :data:`HOST_SHORT`)."""
    return isinstance(exc, OSError) and exc.errno in HOST_SHORT


def has_room(directory: str, suffixes: Sequence[str], size: int) -> bool:
    """Whether ``directory`` takes a new file for each of ``suffixes``, the first of ``size``
    bytes (all removed at once). Only a shortage says no: a directory gone, or one that
    cannot be written for another reason, is for the real write to report."""
    probe = os.path.join(directory, f".akoflow-room-{os.getpid()}")
    made: list[str] = []
    try:
        for suffix in suffixes:
            path = probe + suffix
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            made.append(path)
            try:
                if len(made) == 1:
                    _write_all(fd, size)
            finally:
                os.close(fd)
    except OSError as exc:
        return not host_short(exc)
    finally:
        for path in made:
            with contextlib.suppress(OSError):
                os.unlink(path)
    return True


def _write_all(fd: int, size: int) -> None:
    """``size`` zero bytes to ``fd``: a disk nearly full takes part of a write without an
    error (a short write), and only the next one fails."""
    left = memoryview(bytes(size))
    while left:
        left = left[os.write(fd, left) :]


__all__ = ["HOST_SHORT", "has_room", "host_short"]
