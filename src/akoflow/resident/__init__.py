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

DIR_NAME = "resident"
SOCKET_NAME = "engine.sock"
DISABLE_VAR = "AKOFLOW_RESIDENT"  # "0": this command runs in its own process


def resident_dir(environ: os._Environ[str] | dict[str, str] = os.environ) -> str:
    """Where the server of this state dir listens: ``$AKOFLOW_HOME/resident`` (as given, not
    resolved: the command must not pay for it), else ``~/.akoflow/resident``."""
    home = environ.get("AKOFLOW_HOME") or os.path.join(os.path.expanduser("~"), ".akoflow")
    return os.path.join(os.path.expanduser(home), DIR_NAME)


def may_serve() -> bool:
    """Whether a server may take this command: one listens (its socket is there) and the
    command's environment does not say no. One stat: what every command pays without one."""
    return os.environ.get(DISABLE_VAR) != "0" and os.path.exists(
        os.path.join(resident_dir(), SOCKET_NAME)
    )
