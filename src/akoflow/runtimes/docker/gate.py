"""The gate: an observed container's command waits for the engine's go.

Why: the engine places each file access of an attempt by its process's ancestry from the
attempt's first process (see :mod:`akoflow.provenance.observe`), and docker tells a
container's first pid only once it runs (``inspect``). A command that wrote and ended
before that left writes nobody could place (recorded ambiguous). So, when the attempt is
observed, the runtime makes a FIFO ``<prefix>.ctl/gate`` before start; the container's
wrapper (:data:`akoflow.runtimes.docker.container.WRAPPER`) reads a line from it before it
runs the command, and the runtime writes :data:`GO` once it has announced the first pid.

Bounded: a ``sleep GO_TIMEOUT`` in the container holds the FIFO's write end; when it ends
with no go written, the wrapper reads end-of-file and exits with :data:`NOT_RELEASED`
without running the command. A resumed engine lets go of a container still waiting (after
announcing it). Without a gate (observation off, or a container made by an older version)
the wrapper runs the command at once.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import struct
import termios

GO = b"go\n"
NOT_RELEASED = 125  # the wrapper's exit code when no go came: the command did not run
_INT = struct.Struct("i")


def control_dir(prefix: str) -> str:
    """The attempt's control dir (bind-mounted read-only): the gate, when there is one."""
    return prefix + ".ctl"


def gate_path(prefix: str) -> str:
    return control_dir(prefix) + "/gate"


def make(prefix: str) -> None:
    """The gate of an attempt whose container is created and not started (kept if it is
    there: a created container taken over after a crash). Its mode is the output dir's
    (the umask's): the container's user reads it and its ``sleep`` holds it open."""
    with contextlib.suppress(FileExistsError):
        os.mkfifo(gate_path(prefix), 0o666)


def release(prefix: str) -> int | None:
    """Write the go. The wrapper may not have opened the gate yet, and a FIFO keeps what is
    written only while someone holds it open: then the go is written through a descriptor
    returned to the caller, who holds it until :func:`consumed`. None otherwise (also when
    the attempt has no gate)."""
    path = gate_path(prefix)
    flags = os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd = os.open(path, os.O_WRONLY | flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
            raise
        fd = os.open(path, os.O_RDWR | flags)  # never blocks; the go waits in it
        try:
            _write_go(fd)
        except BaseException:
            os.close(fd)
            raise
        return fd
    try:
        _write_go(fd)
    finally:
        os.close(fd)
    return None


def _write_go(fd: int) -> None:
    if not stat.S_ISFIFO(os.fstat(fd).st_mode):
        raise OSError(errno.EINVAL, "the attempt's gate is not a FIFO")
    os.write(fd, GO)  # 3 bytes: atomic on a pipe, never short


def consumed(fd: int) -> bool:
    """Whether the go written through ``fd`` (see :func:`release`) was read."""
    buf = bytearray(_INT.size)
    fcntl.ioctl(fd, termios.FIONREAD, buf)
    waiting: int = _INT.unpack(buf)[0]
    return waiting == 0


def remove(prefix: str) -> None:
    """The container ended: its gate is of no more use."""
    with contextlib.suppress(OSError):
        os.unlink(gate_path(prefix))
