"""What the command and the resident server say to each other, and where they meet.

The standard library only, and little of it: the ``akoflow`` command imports this before
anything else, on every command.

A message is a frame: :data:`MAGIC`, 4 bytes of length (big-endian), then a dict in
:mod:`marshal`'s format (built in: json, socket and signal, with the enum and re modules they
import, were 11 ms of every command's 40 here). Both ends are processes of the same user
(each checks the other's uid with SO_PEERCRED before it reads a byte) running the same
interpreter (which the server checks), so the interpreter's own format is safe to read here
and carries strings with undecodable bytes (surrogate escapes) through unchanged. The
command's first frame carries its standard streams and working directory as descriptors
(SCM_RIGHTS).
"""

from __future__ import annotations

import _socket
import marshal
import os
import struct
import sys

from akoflow.errors import AkoflowError  # imports nothing
from akoflow.resident import DIR_NAME as DIR_NAME  # where they meet: see the package
from akoflow.resident import DISABLE_VAR as DISABLE_VAR
from akoflow.resident import SOCKET_NAME as SOCKET_NAME
from akoflow.resident import resident_dir as resident_dir

TYPE_CHECKING = False  # typing itself costs the command ~2 ms to import
if TYPE_CHECKING:
    from typing import Any

LOG_NAME = "engine.log"
MAX_FRAME = 64 << 20  # an environment and a command line; a bigger one is refused
MAX_FDS = 8
# Every frame starts with this (then its length, 4 bytes big-endian): a server of another
# version (an upgrade while one runs) meets a header it does not know, and stops.
MAGIC = b"AKR\x01"
_HEADER = struct.Struct(">4sI")

# What makes two processes run a command differently although both run this code. Their
# values must be equal in the command and the server, else the command runs on its own.
# The dynamic loader's and the C library's (LD_PRELOAD, LD_LIBRARY_PATH, MALLOC_*,
# GLIBC_TUNABLES) and OpenSSL's (OPENSSL_CONF: the server loaded ssl) act at start too.
STARTUP_ENV_PREFIXES = ("PYTHON", "LC_", "LD_", "MALLOC_", "OPENSSL_")
STARTUP_ENV_NAMES = ("LANG", "LANGUAGE", "GLIBC_TUNABLES")
# SigBlk: a blocked signal stays blocked across fork and exec (a server started with SIGINT
# blocked gave every copy a run that Ctrl-C could not stop).
_STATUS_FIELDS: tuple[bytes, ...] = (b"CapInh", b"CapPrm", b"CapEff", b"CapBnd", b"CapAmb")
_STATUS_FIELDS += (b"NoNewPrivs", b"Seccomp", b"SigBlk")
_NAMESPACES = ("cgroup", "ipc", "mnt", "net", "pid", "user", "uts")


class WireError(AkoflowError):
    """A frame that is not one: the other side is not (this version of) akoflow."""


class OtherVersion(WireError):
    """A frame of another version of this protocol (of akoflow)."""


def short_address(path: str) -> tuple[str, int | None]:
    """``path``, or when it is too long for an AF_UNIX address (108 bytes), the same file
    through a descriptor of its directory, which the caller closes once connected or bound."""
    if len(os.fsencode(path)) < 100:
        return path, None
    fd = os.open(os.path.dirname(path), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    return f"/proc/self/fd/{fd}/{os.path.basename(path)}", fd


def connect(path: str, *, timeout: float | None = None) -> _socket.socket:
    """A connection to the server listening on ``path``; OSError when none does."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(timeout)
        address, dir_fd = short_address(path)
        try:
            sock.connect(address)
        finally:
            if dir_fd is not None:
                os.close(dir_fd)
    except BaseException:
        sock.close()
        raise
    return sock


def peer_uid(sock: _socket.socket) -> int:
    """The user of the process at the other end of ``sock`` (the kernel's word: SO_PEERCRED)."""
    creds = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def send(sock: _socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    body = marshal.dumps(message)
    data = _HEADER.pack(MAGIC, len(body)) + body
    if fds:
        rights = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))]
        data = data[sock.sendmsg([data], rights) :]
    if data:
        sock.sendall(data)


class FrameReader:
    """Frames as bytes arrive, for a blocking socket (:func:`receive`) or a non-blocking one
    read when ready (the server: one slow command must not hold the others)."""

    def __init__(self, *, with_fds: bool = False) -> None:
        self.with_fds = with_fds
        self.buffer = bytearray()
        self.fds: list[int] = []  # received, not yet handed out with a frame
        self.ended = False

    def feed(self, sock: _socket.socket) -> None:
        """Read what is there (BlockingIOError on a non-blocking socket with nothing)."""
        if self.with_fds:
            space = _socket.CMSG_SPACE(MAX_FDS * 4)
            data, ancillary, flags, _ = sock.recvmsg(1 << 16, space, _socket.MSG_CMSG_CLOEXEC)
            for level, kind, payload in ancillary:
                if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                    usable = len(payload) - len(payload) % 4
                    self.fds.extend(struct.unpack(f"{usable // 4}i", payload[:usable]))
            if flags & _socket.MSG_CTRUNC:
                raise WireError("more descriptors than a request has")
        else:
            data = sock.recv(1 << 16)
        if not data:
            self.ended = True
        self.buffer += data

    def frame(self) -> tuple[dict[str, Any], list[int]] | None:
        """The next whole frame and the descriptors received so far, or None for now;
        WireError for a frame too big or malformed, or cut short by the end."""
        if len(self.buffer) >= _HEADER.size:
            magic, size = _HEADER.unpack_from(self.buffer)
            if magic != MAGIC:
                raise OtherVersion(f"a frame that begins {bytes(magic)!r}, not {MAGIC!r}")
            if size > MAX_FRAME:
                raise WireError(f"a frame of {size} bytes")
            if len(self.buffer) >= _HEADER.size + size:
                body = bytes(self.buffer[_HEADER.size : _HEADER.size + size])
                del self.buffer[: _HEADER.size + size]
                fds, self.fds = self.fds, []
                try:
                    message = marshal.loads(body)
                except (ValueError, EOFError, TypeError) as exc:
                    _close_all(fds)
                    raise WireError(f"not a frame of akoflow's: {exc}") from None
                if not isinstance(message, dict):
                    _close_all(fds)
                    raise WireError("not a dict")
                return message, fds
        if self.ended and self.buffer:
            raise WireError("connection closed inside a frame")
        return None

    def close(self) -> None:
        _close_all(self.fds)
        self.fds = []


def receive(
    sock: _socket.socket, *, with_fds: bool = False
) -> tuple[dict[str, Any] | None, list[int]]:
    """The next frame and the descriptors that came with it, from a blocking socket;
    (None, []) at the end of the connection before a frame started."""
    reader = FrameReader(with_fds=with_fds)
    try:
        while (got := reader.frame()) is None:
            if reader.ended:
                return None, []
            reader.feed(sock)
    except BaseException:
        reader.close()
        raise
    return got


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
        # Inherited by the engine and its activities: the OOM killer's choice among them.
        "oom_score_adj": _read("/proc/self/oom_score_adj").strip().decode("ascii", "replace"),
        # setarch (-R: no address randomisation, for a reproducible run): inherited likewise.
        "personality": _read("/proc/self/personality").strip().decode("ascii", "replace"),
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
