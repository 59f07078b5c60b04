"""The resident server: imports the engine once, then forks a copy of itself per command.

Started by ``akoflow resident start`` (:mod:`akoflow.resident.control`) as
``python -m akoflow.resident.server``, in a session of its own, without the engine's
secrets in its environment (its copies' start-up environment block is this one's, which any
process of the user can read: see :mod:`akoflow.secret_handoff`).

One thread, one loop over: the listening socket, each command's connection (its request as
it arrives, then its end), each copy's pidfd and each spawner's started ahead. A copy's end
(the pidfd) is reaped here and told to its command; a command's connection that closes
first (the command was killed) kills its copy, as the command's own death killed the engine
when it ran in the command's process. Each copy dies with the server (PR_SET_PDEATHSIG) for
the same reason.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import gc
import hashlib
import io
import logging
import os
import selectors
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any, NoReturn

from akoflow.resident import wire
from akoflow.runtimes import spawner_start

log = logging.getLogger("akoflow.resident")

# What a command imports to run (the rest loads in its copy, as it would in the command).
PRELOAD = (
    "akoflow.__main__",
    "akoflow.cli.main",
    "akoflow.cli.local_run",
    "akoflow.cli.attached",
    "akoflow.cli.progress",
    "akoflow.cli.commands",
    "akoflow.engine.engine",
    "akoflow.runtimes.local",
    "akoflow.service",
    "rich.console",
    "rich.live",
)
FIRST_FRAME_SECONDS = 10.0  # a command that connects and says nothing is dropped after this
EXIT_SETUP_FAILED = 70  # the copy could not become the command (EX_SOFTWARE)
_PR_SET_PDEATHSIG = 1


@dataclass
class Copy:
    """A command's copy of the server, and the command's connection."""

    pid: int
    pidfd: int
    conn: socket.socket | None
    go: int | None = None  # written when the command says it has its answer: the copy runs


@dataclass
class Pending:
    """A command connected, its request not all here yet."""

    conn: socket.socket
    deadline: float
    reader: wire.FrameReader = field(default_factory=lambda: wire.FrameReader(with_fds=True))
    request: dict[str, Any] | None = None  # once read: its descriptors are asked for


class Server:
    def __init__(self, directory: str, idle_seconds: float) -> None:
        self.directory = directory
        self.idle_seconds = idle_seconds
        self.started = time.time()
        self.served = 0
        self.refused = 0
        self.last_refusal: str | None = None  # why the last command refused ran on its own
        self.copies: dict[int, Copy] = {}  # by pidfd
        self.pending: dict[int, Pending] = {}  # by the connection's fd
        self.spawners: dict[int, int] = {}  # pids of the spawners started here, by pidfd
        self.stopping = False
        self.selector = selectors.DefaultSelector()
        self.listener: socket.socket | None = None
        self.wake_r, self.wake_w = socket.socketpair()
        self.facts: dict[str, Any] = {}
        self.code_stamp = ""
        self.package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self.last_busy = time.monotonic()
        self.socket_inode = -1

    # ------------------------------------------------------------------ setting up

    def prepare(self) -> None:
        """Import what commands run, then note what this process is."""
        self.code_stamp = code_stamp(self.package)  # before the imports: what they load
        gc.disable()  # as the entry point does: the imports make hardly any garbage
        for name in PRELOAD:
            __import__(name)
        _warm_up()
        gc.freeze()  # out of the collector's sight in every copy (and shared with it)
        gc.enable()
        self.facts = wire.process_facts()

    def listen(self) -> None:
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        info = os.lstat(self.directory)
        if info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise SystemExit(
                f"{self.directory}: must be a directory of this user only (mode 700), to hold "
                "the resident engine's socket"
            )
        path = os.path.join(self.directory, wire.SOCKET_NAME)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        # Two servers started at once (two commands with AKOFLOW_RESIDENT=auto): one at a time
        # looks and binds, else the second would unlink the first's socket and leave it idle.
        lock = os.open(os.path.join(self.directory, "start.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if _answers(path):
                raise SystemExit(f"a resident engine already listens on {path}")
            try:
                os.unlink(path)  # a socket file left by a server that was killed
            except FileNotFoundError:
                pass
            address, dir_fd = wire.short_address(path)
            try:
                old = os.umask(0o177)
                try:
                    sock.bind(address)
                finally:
                    os.umask(old)
            finally:
                if dir_fd is not None:
                    os.close(dir_fd)
            self.socket_inode = os.stat(path).st_ino  # the file to remove at the end: ours
        except BaseException:
            sock.close()
            raise
        finally:
            os.close(lock)  # and its lock with it
        sock.listen(64)
        sock.setblocking(False)
        self.listener = sock
        self.selector.register(sock, selectors.EVENT_READ, "accept")
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        self.selector.register(self.wake_r, selectors.EVENT_READ, "signal")
        signal.set_wakeup_fd(self.wake_w.fileno(), warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, _ignore)  # seen through the wakeup descriptor
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        # Started by a process that ignores SIGCHLD (which `resident start` and
        # AKOFLOW_RESIDENT=auto pass on), the kernel would reap copies itself: every command's
        # status lost, told as a SIGKILL (a run that succeeded ended its command with 137).
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)

    # ------------------------------------------------------------------ the loop

    def serve(self) -> None:
        self._refill()
        while not (self.stopping and not self.copies):
            now = time.monotonic()
            timeout = None
            if not self.copies:
                timeout = max(0.0, self.last_busy + self.idle_seconds - now)
            if self.pending:
                first = min(p.deadline for p in self.pending.values())
                timeout = max(0.0, min(first - now, timeout if timeout is not None else first))
            events = self.selector.select(timeout)
            self._drop_late()
            if not events and not self.copies and timeout is not None:
                if time.monotonic() >= self.last_busy + self.idle_seconds:
                    log.info("idle for %.0f s: stopping", self.idle_seconds)
                    self.stop_listening()
                    break
            for key, _mask in events:
                try:
                    self._on(key)
                except Exception:  # one command's trouble never ends the server
                    log.exception("while serving %s", key.data)
            if self.copies:
                self.last_busy = time.monotonic()
        spawner_start.discard()  # each leaves as its link closes
        log.info("stopped after %d commands", self.served)

    def _refill(self) -> None:
        """Local spawners started ahead for the next command's copy (it inherits them: their
        start, a new interpreter each, was ~15 ms of a short run's critical path and took a
        core from it). Only while no copy runs, for the same reason. A spawner depends on
        nothing of the process that started it that the command's does not share (its
        environment is empty, each attempt brings its directory and umask)."""
        if self.stopping or self.copies:
            return
        spawner_start.prestart(spawner_start.DEFAULT_COUNT)  # best effort: a copy starts its own
        known = set(self.spawners.values())
        for pid, _sock in spawner_start.ready():
            if pid not in known:
                try:
                    pidfd = os.pidfd_open(pid)
                except OSError:  # it ended already (reaped below, when the copy gives it up)
                    continue
                self.spawners[pidfd] = pid
                self.selector.register(pidfd, selectors.EVENT_READ, ("spawner", pidfd))

    def _reap_spawner(self, pidfd: int) -> None:
        try:
            os.waitpid(self.spawners[pidfd], 0)
        except ChildProcessError:
            pass
        self.selector.unregister(pidfd)
        os.close(pidfd)
        del self.spawners[pidfd]

    def _on(self, key: selectors.SelectorKey) -> None:
        if key.data == "accept":
            self._accept()
        elif key.data == "signal":
            received = self.wake_r.recv(64)
            if any(n in (signal.SIGTERM, signal.SIGINT) for n in received):
                log.info("asked to stop (a signal); %d commands running", len(self.copies))
                self.stop_listening()
        elif isinstance(key.data, tuple) and key.data[0] == "end":
            self._reap(self.copies[key.data[1]])
        elif isinstance(key.data, tuple) and key.data[0] == "command":
            self._from_command(self.copies[key.data[1]])
        elif isinstance(key.data, tuple) and key.data[0] == "request":
            self._read_request(self.pending[key.data[1]])
        elif isinstance(key.data, tuple) and key.data[0] == "spawner":
            self._reap_spawner(key.data[1])

    def _accept(self) -> None:
        assert self.listener is not None
        try:
            conn, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        if wire.peer_uid(conn) != os.getuid():  # the socket is 0600; this is the second lock
            log.warning("refused a connection of another user")
            conn.close()
            return
        conn.setblocking(False)
        pending = Pending(conn, time.monotonic() + FIRST_FRAME_SECONDS)
        self.pending[conn.fileno()] = pending
        self.selector.register(conn, selectors.EVENT_READ, ("request", conn.fileno()))

    def _drop_late(self) -> None:
        now = time.monotonic()
        for pending in [p for p in self.pending.values() if p.deadline <= now]:
            log.warning("a command sent no whole request in %.0f s: dropped", FIRST_FRAME_SECONDS)
            self._unpend(pending)
            pending.conn.close()

    def _unpend(self, pending: Pending) -> None:
        self.selector.unregister(pending.conn)
        del self.pending[pending.conn.fileno()]
        pending.reader.close()

    def _read_request(self, pending: Pending) -> None:
        try:
            pending.reader.feed(pending.conn)
            got = pending.reader.frame()
        except BlockingIOError:
            return
        except wire.OtherVersion as exc:  # a command of another akoflow: this one is old
            log.info("a command of another version (%s): stopping", exc)
            self._unpend(pending)
            pending.conn.close()
            self.stop_listening()
            return
        except (OSError, wire.WireError) as exc:
            log.warning("a command's request failed: %s", exc)
            self._unpend(pending)
            pending.conn.close()
            return
        if got is None and not pending.reader.ended:
            return  # more to come
        conn = pending.conn
        if got is None:  # it left without a (whole) request
            self._unpend(pending)
            conn.close()
            return
        message, fds = got
        try:
            conn.setblocking(True)
            conn.settimeout(1.0)  # answers are a few bytes: the buffer takes them
            if pending.request is None:
                self._first_frame(pending, message, fds)
            else:
                self._unpend(pending)
                self._descriptors(conn, pending.request, fds)
        except (OSError, wire.WireError) as exc:
            log.warning("a command's request failed: %s", exc)
            if pending.conn.fileno() in self.pending:
                self._unpend(pending)
            conn.close()
        finally:
            if conn.fileno() != -1:
                conn.setblocking(False)

    def _first_frame(self, pending: Pending, message: dict[str, Any], fds: list[int]) -> None:
        """A control request (answered), or a command's request: refused, or asked for the
        command's descriptors. They come only then: descriptors sent with the request to a
        server that does not read them (stopped) would keep the command's pipes open after
        it gave up and ran on its own, and `akoflow run ... | tee log` would not end."""
        for fd in fds:  # a request comes without them
            os.close(fd)
        conn = pending.conn
        if "control" in message:
            self._unpend(pending)
            try:
                self._control(conn, message)
            finally:
                conn.close()
            return
        refusal = self._refusal(message)
        if refusal is not None:
            self._unpend(pending)
            reason, note = refusal
            log.info("refused a command: %s", reason)
            self.refused += 1
            self.last_refusal = reason
            try:
                wire.send(conn, {"refused": reason, "note": note})
            finally:
                conn.close()
            return
        pending.request = message
        pending.deadline = time.monotonic() + FIRST_FRAME_SECONDS
        wire.send(conn, {"descriptors": True})

    def _descriptors(self, conn: socket.socket, request: dict[str, Any], fds: list[int]) -> None:
        """The command's descriptors came: its copy starts."""
        keep = False
        try:
            if len(fds) != 4 + bool(request.get("terminal")):
                log.warning(
                    "a command sent %d descriptors, not its streams and directory", len(fds)
                )
                return
            self._fork(conn, request, fds)
            keep = True
        finally:
            for fd in fds:
                os.close(fd)
            if not keep:
                conn.close()

    def _refusal(self, request: dict[str, Any]) -> tuple[str, str | None] | None:
        if self.stopping:
            return "stopping", None
        if not isinstance(request.get("environ"), dict):
            return "a request this server does not understand", None
        if request.get("package") != self.package or code_stamp(self.package) != self.code_stamp:
            self.stop_listening()
            return "the engine's code changed", (
                "the resident engine ran older code and stopped; this command runs on its own "
                "(`akoflow resident start` starts a new one)"
            )
        differ = wire.differences(self.facts, request.get("facts") or {})
        if differ:
            return "the command's process differs in " + ", ".join(differ), None
        return None

    def _control(self, conn: socket.socket, request: dict[str, Any]) -> None:
        if request["control"] == "stop":
            self.stop_listening()
            log.info("asked to stop; %d commands running", len(self.copies))
        wire.send(
            conn,
            {
                "pid": os.getpid(),
                "started": self.started,
                "served": self.served,
                "running": len(self.copies),
                "idle_seconds": self.idle_seconds,
                "stopping": self.stopping,
                "refused": self.refused,
                "last_refusal": self.last_refusal,
            },
        )

    def _fork(self, conn: socket.socket, request: dict[str, Any], fds: list[int]) -> None:
        conn.setblocking(False)
        try:
            if conn.recv(1, socket.MSG_PEEK) == b"":
                log.info("a command left before its copy started")  # (Ctrl-C, killed)
                return
        except BlockingIOError:
            pass  # there, waiting for the answer
        finally:
            conn.settimeout(1.0)
        server_pid = os.getpid()
        # The copy starts the command only once the command knows it runs there (see _become).
        go_r, go_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            os.close(go_w)
            self._become(server_pid, request, fds, go_r)  # no return
        os.close(go_r)
        spawner_start.discard()  # the copy has them now; this side of their links closes
        self.served += 1
        pidfd = os.pidfd_open(pid)
        copy = Copy(pid, pidfd, conn)
        self.copies[pidfd] = copy
        self.selector.register(pidfd, selectors.EVENT_READ, ("end", pidfd))
        self.selector.register(conn, selectors.EVENT_READ, ("command", pidfd))
        copy.go = go_w
        try:
            # The pidfd with it: the command signals and watches its copy even while this
            # server is stopped or busy, and no reused pid can be mistaken for it.
            wire.send(conn, {"pid": pid}, [pidfd])
        except OSError:  # the command left already: its connection's end kills the copy
            pass
        finally:
            conn.setblocking(False)

    def _from_command(self, copy: Copy) -> None:
        """The command's word that it has its answer (its first bytes: the copy may run the
        command), then only its end, which ends the copy: it signals its copy itself."""
        assert copy.conn is not None
        try:
            gone = not copy.conn.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            gone = True
        if gone:  # the command is gone: so is its engine (see the module's doc)
            self._drop_conn(copy)
            _send_signal(copy.pidfd, signal.SIGKILL)
        self._release(copy, run=not gone)

    def _release(self, copy: Copy, *, run: bool) -> None:
        """Let the copy run the command (``run``), or end it before it does anything."""
        if copy.go is None:
            return
        try:
            if run:
                os.write(copy.go, b"g")
        except OSError:
            pass
        finally:
            os.close(copy.go)
            copy.go = None

    def _reap(self, copy: Copy) -> None:
        try:
            _, status = os.waitpid(copy.pid, 0)
            code = os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            code = -signal.SIGKILL
        self.selector.unregister(copy.pidfd)
        os.close(copy.pidfd)
        del self.copies[copy.pidfd]
        self._release(copy, run=False)
        if copy.conn is not None:
            try:
                copy.conn.setblocking(True)
                copy.conn.settimeout(1.0)
                wire.send(copy.conn, {"signal": -code} if code < 0 else {"exit": code})
            except OSError:
                pass
            self._drop_conn(copy)
        self._refill()  # after the command heard its end: nobody waits for this

    def _drop_conn(self, copy: Copy) -> None:
        if copy.conn is not None:
            self.selector.unregister(copy.conn)
            copy.conn.close()
            copy.conn = None

    def stop_listening(self) -> None:
        """New commands run in their own process from now; the server leaves once the ones it
        runs have ended."""
        self.stopping = True
        if self.listener is not None:
            self.selector.unregister(self.listener)
            try:
                path = os.path.join(self.directory, wire.SOCKET_NAME)
                if os.stat(path).st_ino == self.socket_inode:  # not a newer server's
                    os.unlink(path)
            except OSError:
                pass
            self.listener.close()
            self.listener = None

    # ------------------------------------------------------------------ the copy

    def _become(
        self, server_pid: int, request: dict[str, Any], fds: list[int], go: int
    ) -> NoReturn:
        """In the copy: become the command's process, then run the command (never returns).

        It runs the command only when the server says (``go``) that the command has its
        answer and said so: a command whose connection ends without one, or that waited for
        one in vain (a server stopped or hung), runs the command on its own, so this copy must
        not have run it too (it ran twice: once here, once there)."""
        try:
            _die_with_parent()
            if os.getppid() != server_pid:  # the server died before the line above
                os._exit(128 + signal.SIGKILL)
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            _ignore_as_the_command(request.get("ignored"))
            self.selector.close()
            for copy in self.copies.values():  # other commands' connections: theirs only
                os.close(copy.pidfd)
                if copy.conn is not None:
                    copy.conn.close()
                if copy.go is not None:
                    os.close(copy.go)
            for pidfd in self.spawners:
                os.close(pidfd)
            for pending in self.pending.values():  # and their streams, received already
                pending.conn.close()
                pending.reader.close()
            if self.listener is not None:
                self.listener.close()
            self.wake_r.close()
            self.wake_w.close()
            os.setpgid(0, 0)  # the server's group is not the command's
            for target, fd in enumerate(fds[:3]):
                os.dup2(fd, target)
            os.fchdir(fds[3])
            for fd in fds[:4]:
                os.close(fd)
            if len(fds) == 5:  # the command's terminal, kept open (close-on-exec) for questions
                from akoflow import terminal

                terminal.use_descriptor(fds[4])
            os.umask(int(request["umask"]))
            os.environ.clear()
            os.environ.update(request["environ"])
            time.tzset()
            sys.argv = list(request["argv"])
            sys.orig_argv = list(request["orig_argv"])
            _main_module(request.get("main"))
            _standard_streams()
            from akoflow import secret_handoff

            secret_handoff.started_without_secrets()
            root = logging.getLogger()  # as a new interpreter has it
            root.handlers.clear()
            root.setLevel(logging.WARNING)
        except BaseException:
            _last_words("could not take the command over")
            os._exit(EXIT_SETUP_FAILED)
        try:
            told = os.read(go, 1) == b"g"
        except BaseException:  # (a signal sent to it meanwhile: it never ran the command)
            told = False
        if not told:  # the command did not get its answer: it runs the command itself
            os._exit(EXIT_SETUP_FAILED)
        os.close(go)
        try:
            from akoflow.__main__ import run_command

            run_command()  # leaves through os._exit
        except BaseException:
            _last_words("the command failed")
        os._exit(EXIT_SETUP_FAILED)


def _warm_up() -> None:
    """What every run builds the first time and keeps (the workflow schema's validators, the
    database's migration steps): built once here, not in each copy. Pure computation: no
    thread, descriptor or file of the server's is made."""
    from akoflow import service
    from akoflow.store.migrate import migrations

    migrations()
    service.validate_text(_WARM_UP_WORKFLOW, "warm-up.yaml")


_WARM_UP_WORKFLOW = """name: warm-up
spec:
  activities:
    - name: a
      run: "true"
    - name: b
      run: "echo $X"
      dependsOn: [a]
"""


def _ignore(_signum: int, _frame: object) -> None:
    """The wakeup descriptor carries the signal to the loop."""


def _send_signal(pidfd: int, number: int) -> None:
    try:
        signal.pidfd_send_signal(pidfd, number)
    except ProcessLookupError:  # ended, not reaped yet: its end is on the way
        pass


def _answers(path: str) -> bool:
    try:
        wire.connect(path).close()
    except OSError:
        return False
    return True


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")


def _standard_streams() -> None:
    """sys.stdin, stdout and stderr as the interpreter makes them at its start, on the
    command's descriptors (stdout line-buffered on a terminal, stderr always)."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        old = getattr(sys, name)
        encoding = getattr(old, "encoding", None) or "utf-8"
        errors = getattr(old, "errors", None) or "strict"
        binary = open(fd, "rb" if fd == 0 else "wb", closefd=False)
        line_buffering = fd == 2 or (fd == 1 and os.isatty(fd))
        stream = io.TextIOWrapper(
            binary, encoding=encoding, errors=errors, newline="\n", line_buffering=line_buffering
        )
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def _ignore_as_the_command(ignored: object) -> None:
    """The signals the command ignores ignored here, the others not (the server may have been
    started ignoring some: ``nohup``, a script's background job)."""
    if not isinstance(ignored, list):
        return
    wanted = {n for n in ignored if isinstance(n, int)}
    for number in signal.valid_signals():
        if number in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            ignoring = signal.getsignal(number) == signal.SIG_IGN
            if number in wanted and not ignoring:
                signal.signal(number, signal.SIG_IGN)
            elif number not in wanted and ignoring:
                signal.signal(number, signal.SIG_DFL)
        except (OSError, ValueError):
            pass


_SERVER_MAIN: list[object] = []  # the server's own __main__, kept alive in a copy


def _main_module(main: object) -> None:
    """``__main__`` as the command has it (``akoflow``'s script, or ``python -m akoflow``),
    not the server's module: click names the program after it in usage lines."""
    if not isinstance(main, dict):
        return
    import importlib.util
    import types

    module = types.ModuleType("__main__")
    module.__package__ = main.get("package") if isinstance(main.get("package"), str) else None
    if isinstance(main.get("file"), str):
        module.__file__ = main["file"]
    spec = main.get("spec")
    if isinstance(spec, str):
        try:
            module.__spec__ = importlib.util.find_spec(spec)
        except (ImportError, ValueError):
            pass
    _SERVER_MAIN.append(sys.modules["__main__"])
    sys.modules["__main__"] = module


def _last_words(what: str) -> None:
    import traceback

    try:
        os.write(2, f"akoflow (resident engine): {what}:\n{traceback.format_exc()}".encode())
    except OSError:
        pass


def code_stamp(package: str) -> str:
    """A digest of the names, sizes and change times of the engine's source files."""
    digest = hashlib.blake2b(digest_size=16)
    for root, dirs, files in os.walk(package):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(root, name)
                try:
                    info = os.stat(path)
                except OSError:
                    continue
                digest.update(
                    f"{path}\0{info.st_size}\0{info.st_mtime_ns}\n".encode(
                        "utf-8", "surrogateescape"
                    )
                )
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m akoflow.resident.server")
    parser.add_argument("--dir", required=True)
    parser.add_argument("--idle", type=float, required=True, help="seconds")
    parser.add_argument("--ready-fd", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s resident[%(process)d]: %(message)s",
        stream=sys.stderr,
    )
    server = Server(args.dir, args.idle)
    try:
        server.prepare()
        server.listen()
    except SystemExit as exc:
        os.write(args.ready_fd, f"error: {exc.code}\n".encode())
        raise
    except Exception as exc:
        os.write(args.ready_fd, f"error: {exc}\n".encode())
        raise
    os.write(args.ready_fd, f"ready {os.getpid()}\n".encode())
    os.close(args.ready_fd)
    log.info("listening; stops after %.0f s without commands", args.idle)
    server.serve()


if __name__ == "__main__":
    main()
