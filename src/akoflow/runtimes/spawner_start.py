"""Starting local spawners (:mod:`akoflow.runtimes.local_spawner`), and starting them early.

A spawner is a new interpreter: 20-40 ms before it can start a first attempt. ``akoflow run``
calls :func:`prestart` first thing, before its own imports, so that this start overlaps them
on another core instead of delaying the first activity; a :class:`SpawnerLink` then takes a
started one (:func:`take`) rather than starting its own. A spawner never asked for anything
leaves as soon as its link closes (:func:`discard`, or this process's exit), having started
nothing. The standard library only: imported before anything else of the engine's.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from pathlib import Path

SPAWNER = Path(__file__).with_name("local_spawner.py")
LINK_FD = 3
DEFAULT_COUNT = 2  # spawners per local runtime ({NAME}_SPAWNERS): a start waits for bash's exec
_DEFAULTS = frozenset(signal.valid_signals()) - {signal.SIGKILL, signal.SIGSTOP}

# Spawners started ahead of need, with an empty environment (as every spawner has): pid,
# this side of the link.
_ready: list[tuple[int, socket.socket]] = []


def start(env: dict[str, str]) -> tuple[int, socket.socket]:
    """A new spawner with environment ``env``, in a session of its own: its pid and this
    side of its link (blocking; the caller sets what it needs)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        pid = os.posix_spawn(
            # This very interpreter, through the magic link: its path may not be searchable
            # for this user (an engine started by setpriv or sudo -u).
            "/proc/self/exe" if os.path.exists("/proc/self/exe") else sys.executable,
            [sys.executable, "-I", "-S", str(SPAWNER), str(LINK_FD)],
            env,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                # Never the engine's own stdout/stderr: whoever waits for their end (a
                # terminal, a pipe) must not wait for the spawner. It reports through the link.
                (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
                (os.POSIX_SPAWN_DUP2, theirs.fileno(), LINK_FD),
            ],
            setsid=True,
            setsigdef=_DEFAULTS,
            setsigmask=(),
        )
    except OSError:
        ours.close()
        raise
    finally:
        theirs.close()
    return pid, ours


def prestart(count: int) -> None:
    """Start ``count`` spawners now (with the empty environment every spawner gets), for
    :func:`take`. Best effort: one that cannot start is started, or fails, when needed."""
    try:
        while len(_ready) < count:
            _ready.append(start({}))
    except OSError:
        pass


def take(env: dict[str, str]) -> tuple[int, socket.socket] | None:
    """A spawner started ahead with environment ``env`` and still alive, or None."""
    while _ready and not env:
        pid, sock = _ready.pop(0)
        try:
            alive = os.waitpid(pid, os.WNOHANG)[0] == 0
        except ChildProcessError:  # started by a resident engine (akoflow.resident): its link
            alive = _link_open(sock)
        if alive:
            return pid, sock
        sock.close()
    return None


def _link_open(sock: socket.socket) -> bool:
    """Whether the spawner at the other end of ``sock`` still holds it (it asks nothing
    before its first request: any byte, or the end, means it left)."""
    try:
        sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return True  # nothing said, still there
    except OSError:
        return False
    return False  # its end (or bytes no fresh spawner sends)


def ready() -> list[tuple[int, socket.socket]]:
    """The spawners started ahead and not taken yet."""
    return list(_ready)


def discard() -> list[int]:
    """Close the links of the spawners no one took (each leaves at once): their pids, to be
    reaped."""
    left = [pid for pid, _ in _ready]
    for _, sock in _ready:
        sock.close()
    _ready.clear()
    return left


__all__ = ["LINK_FD", "SPAWNER", "discard", "prestart", "ready", "start", "take"]
