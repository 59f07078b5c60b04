"""The command's terminal, where questions are asked (keyboard-interactive SSH logins).

``/dev/tty`` names a process's controlling terminal. A resident engine's copy of itself
(:mod:`akoflow.resident`) runs a command without one (its session is the server's): the
command passes its ``/dev/tty``, opened, as a descriptor, and :func:`use_descriptor` makes
that the terminal here (an open ``/dev/tty`` stays bound to the terminal it was opened on;
opening the path again would ask for this process's own). The standard library only.
"""

from __future__ import annotations

import os

_fd: int | None = None


def open_terminal() -> int:
    """A new descriptor of the command's terminal (the caller closes it); OSError (ENXIO)
    when there is none."""
    if _fd is not None:
        return os.dup(_fd)
    return os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)


def use_descriptor(fd: int) -> None:
    """The terminal is the one open on ``fd`` (kept open by the caller)."""
    global _fd
    _fd = fd
