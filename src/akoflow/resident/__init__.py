"""A resident engine: a process that has imported the engine once and forks a ready copy
of itself for each command, so that a command does not import it again.

Importing the engine (asyncio, pydantic, the store, the runtimes) is ~0.2 s of every
`akoflow run`, most of a short workflow's time. ``akoflow resident start`` starts one server
per state dir (``$AKOFLOW_HOME``, else ``~/.akoflow``); while it runs, the ``akoflow`` command
(:mod:`akoflow.resident.client`, the standard library only) hands its command line to it
and waits. The server forks (:mod:`akoflow.resident.server`); the copy takes the command's
standard streams, working directory, umask and environment, and runs the command as the
command itself would have: what the run prints, records and exits with is the same.

The copy is the command's process in everything that changes what runs: the server refuses,
and the command runs in its own process as before, when the two differ in user, groups,
cgroup, namespaces, resource limits, CPU affinity, niceness, capabilities, interpreter or
interpreter options, locale, or when the engine's code changed since the server started
(then the server stops too). Signals the command gets (Ctrl-C, SIGTERM, SIGHUP) are passed
on; a command killed outright (SIGKILL) takes its copy with it, and a server killed takes
its copies with it, as a killed ``akoflow run`` always did: ``akoflow resume`` continues.

Borrowed from build tools that keep a server between commands (Bazel's server, Gradle's
daemon), whose clients also hand over their environment and working directory.
"""

import os
import sys

DIR_NAME = "resident"
SOCKET_NAME = "engine.sock"
DISABLE_VAR = "AKOFLOW_RESIDENT"  # "0": this command runs in its own process; "auto": see below
IDLE_VAR = "AKOFLOW_RESIDENT_IDLE"  # how long a server started by "auto" waits (default 30m)


def resident_dir(environ: os._Environ[str] | dict[str, str] = os.environ) -> str:
    """Where the server of this state dir listens: ``$AKOFLOW_HOME/resident`` (as given, not
    resolved: the command must not pay for it), else ``~/.akoflow/resident``."""
    home = environ.get("AKOFLOW_HOME") or os.path.join(os.path.expanduser("~"), ".akoflow")
    return os.path.join(os.path.expanduser(home), DIR_NAME)


def auto_start() -> None:
    """``AKOFLOW_RESIDENT=auto``: with no server listening, start one in the background
    (``akoflow resident start``, detached) for the commands that follow; this one runs on its
    own meanwhile. Best effort and silent: a server already starting wins, the other leaves."""
    from akoflow.resident import wire

    try:
        wire.connect(os.path.join(resident_dir(), SOCKET_NAME)).close()
        return  # one listens (it refused this command, or was busy): nothing to start
    except OSError:
        pass
    argv = [sys.executable, "-m", "akoflow", "resident", "start"]
    argv += ["--idle", os.environ.get(IDLE_VAR) or "30m"]
    try:
        os.posix_spawn(
            sys.executable,
            argv,
            os.environ,
            file_actions=[(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)],
            setsid=True,
        )
    except OSError:
        pass


def may_serve() -> bool:
    """Whether a server may take this command: one listens (its socket is there) and the
    command's environment does not say no. One stat: what every command pays without one."""
    return os.environ.get(DISABLE_VAR) != "0" and os.path.exists(
        os.path.join(resident_dir(), SOCKET_NAME)
    )
