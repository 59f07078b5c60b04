"""What the command and the resident server say to each other, and where they meet.

The standard library only, and little of it: the ``akoflow`` command imports this before
anything else, on every command.

A message is a frame: 4 bytes of length (big-endian), then a JSON object. The command's
first frame carries its standard streams and working directory as descriptors (SCM_RIGHTS).
Strings keep undecodable bytes as the interpreter does (surrogate escapes): JSON carries
lone surrogates through unchanged.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
from typing import Any

SOCKET_NAME = "engine.sock"
LOG_NAME = "engine.log"
DIR_NAME = "resident"
DISABLE_VAR = "AKOFLOW_RESIDENT"  # "0": this command runs in its own process
MAX_FRAME = 64 << 20  # an environment and a command line; a bigger one is refused
MAX_FDS = 8
_LENGTH = struct.Struct(">I")

# What makes two processes run a command differently although both run this code. Their
# values must be equal in the command and the server, else the command runs on its own.
STARTUP_ENV_PREFIXES = ("PYTHON", "LC_")
STARTUP_ENV_NAMES = ("LANG", "LANGUAGE")
_STATUS_FIELDS = (b"CapInh", b"CapPrm", b"CapEff", b"CapBnd", b"CapAmb", b"NoNewPrivs", b"Seccomp")
_NAMESPACES = ("cgroup", "ipc", "mnt", "net", "pid", "user", "uts")


class WireError(Exception):
    """A frame that is not one: the other side is not (this version of) akoflow."""


def resident_dir(environ: os._Environ[str] | dict[str, str] = os.environ) -> str:
    """Where the server of this state dir listens: ``$AKOFLOW_HOME/resident`` (as given, not
    resolved: the command must not pay for it), else ``~/.akoflow/resident``."""
    home = environ.get("AKOFLOW_HOME") or os.path.join(os.path.expanduser("~"), ".akoflow")
    return os.path.join(os.path.expanduser(home), DIR_NAME)


def short_address(path: str) -> tuple[str, int | None]:
    """``path``, or when it is too long for an AF_UNIX address (108 bytes), the same file
    through a descriptor of its directory, which the caller closes once connected or bound."""
    if len(os.fsencode(path)) < 100:
        return path, None
    fd = os.open(os.path.dirname(path), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    return f"/proc/self/fd/{fd}/{os.path.basename(path)}", fd


def send(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    body = json.dumps(message, separators=(",", ":")).encode("utf-8", "surrogatepass")
    data = _LENGTH.pack(len(body)) + body
    if fds:
        sent = socket.send_fds(sock, [data], fds)
        data = data[sent:]
    if data:
        sock.sendall(data)


def receive(
    sock: socket.socket, *, with_fds: bool = False
) -> tuple[dict[str, Any] | None, list[int]]:
    """The next frame and the descriptors that came with it; (None, []) at the end of the
    connection before a frame started. WireError for a frame cut short or malformed."""
    fds: list[int] = []
    head = b""
    while len(head) < _LENGTH.size:
        if with_fds and not fds:
            chunk, got, _flags, _addr = socket.recv_fds(sock, _LENGTH.size - len(head), MAX_FDS)
            fds.extend(got)
        else:
            chunk = sock.recv(_LENGTH.size - len(head))
        if not chunk:
            if head:
                _close_all(fds)
                raise WireError("connection closed inside a frame")
            _close_all(fds)
            return None, []
        head += chunk
    (size,) = _LENGTH.unpack(head)
    if size > MAX_FRAME:
        _close_all(fds)
        raise WireError(f"a frame of {size} bytes")
    body = bytearray()
    while len(body) < size:
        chunk = sock.recv(min(size - len(body), 1 << 20))
        if not chunk:
            _close_all(fds)
            raise WireError("connection closed inside a frame")
        body += chunk
    try:
        message = json.loads(body.decode("utf-8", "surrogatepass"))
    except ValueError as exc:
        _close_all(fds)
        raise WireError(f"not JSON: {exc}") from None
    if not isinstance(message, dict):
        _close_all(fds)
        raise WireError("not a JSON object")
    return message, fds


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def process_facts() -> dict[str, Any]:
    """What this process is, where that changes how a command runs (see the module's doc)."""
    import resource

    limits: dict[str, list[int] | None] = {}
    for name in dir(resource):
        if name.startswith("RLIMIT_"):
            try:
                limits[name] = list(resource.getrlimit(getattr(resource, name)))
            except (OSError, ValueError):
                limits[name] = None
    namespaces: dict[str, str | None] = {}
    for name in _NAMESPACES:
        try:
            namespaces[name] = os.readlink(f"/proc/self/ns/{name}")
        except OSError:
            namespaces[name] = None
    status = [
        line.decode("ascii", "replace")
        for line in _read("/proc/self/status").splitlines()
        if line.split(b":", 1)[0] in _STATUS_FIELDS
    ]
    try:
        affinity: list[int] | None = sorted(os.sched_getaffinity(0))
    except OSError:
        affinity = None
    return {
        "uid": os.getuid(),
        "euid": os.geteuid(),
        "gid": os.getgid(),
        "egid": os.getegid(),
        "groups": sorted(os.getgroups()),
        "cgroup": _read("/proc/self/cgroup").decode("utf-8", "surrogateescape"),
        "namespaces": namespaces,
        "limits": limits,
        "affinity": affinity,
        "nice": os.getpriority(os.PRIO_PROCESS, 0),
        "status": status,
        "executable": sys.executable,
        "flags": list(sys.flags),
        "xoptions": {str(k): str(v) for k, v in sys._xoptions.items()},
        "warnoptions": list(sys.warnoptions),
        "search_path": sys.path[1:],  # [0] is the script's directory or the cwd
        "encodings": [sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()],
        "startup_env": startup_env(os.environ),
    }


def startup_env(environ: os._Environ[str] | dict[str, str]) -> dict[str, str]:
    """The variables an interpreter reads as it starts (its locale, its options)."""
    return {
        k: v
        for k, v in environ.items()
        if k.startswith(STARTUP_ENV_PREFIXES) or k in STARTUP_ENV_NAMES
    }


def differences(mine: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """The names of the facts that differ (an empty list: the same kind of process)."""
    return sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
