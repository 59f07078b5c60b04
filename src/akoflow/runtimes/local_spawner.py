"""The local runtime's spawner: the process that starts each local attempt and records its end.

The engine starts one spawner per local runtime (``python -I -S local_spawner.py``: the
standard library only, nothing of the engine's, a clean environment) and sends it requests
over a socket. For each attempt the spawner

1. claims the attempt with an exclusive create of its ``.exit`` file (``spawning now by R``): an
   engine restarted after a crash claims it first (``engine``) if it never started, and then
   it never will;
2. writes the script whole before any bash exists (a started bash never reads a partial
   script);
3. posix_spawns ``bash SCRIPT ARGS`` (exactly ``bash script.sh``: one process, its own
   ``$$``, traps and options; for a script that is one plain command, its program, as bash
   would start it) in a new session, with the attempt's files as its output, the
   engine's umask, the data dir as its working directory, default signal dispositions, and
   inside the attempt's cgroup (this process enters it for the instant of the spawn);
4. records ``pid C by R`` over the claim once bash runs, then ``exit N`` when it ends
   (``128+N`` for a signal, as shells report it), written over it in place and the file cut
   to that line (no new file per end: a create costs more than the rest of a short
   attempt's record keeping on some file systems);
5. removes the attempt's cgroup once it is empty, and tells the engine (``started``,
   ``ended`` with exit status, CPU time, peak memory, whether the cgroup is gone, whether a
   stop reached it, when it ended and when it was started).

Why a process of its own: activities are no longer children of the engine, whose environment
may hold secrets (an activity can read its parent's ``/proc/PPID/environ``); the fork and exec
run off the engine's event loop; and an attempt's end is recorded by a process that outlives
an engine killed with SIGKILL. The spawner stays until its last child has ended and been
recorded, then leaves. If the spawner itself is killed, the ``.exit`` file keeps ``pid C``:
the attempt counts as ended with its exit code lost (a failure, never a success).

Messages are ``marshal`` tuples behind a 4-byte length, between two processes of the same
program and user (see :func:`frame` and :class:`Frames`).
"""

from __future__ import annotations

import _locale
import contextlib
import errno
import marshal
import os
import resource
import select
import signal
import stat
import struct
import sys
import time
from typing import Any

HEADER = struct.Struct("!I")
MAX_FRAME = 512 << 20  # bytes: a request carries a script (1 Mi chars) and an environment
READ_SIZE = 1 << 16
EXEC_FAILED = 127
WORKDIR_FAILED = 214
ENV_ENTRY_MAX = 128 * 1024 - 2  # Linux: bytes of one NAME=value of exec's env (MAX_ARG_STRLEN)
# What this interpreter ignores (and an exec would keep ignored); handlers reset at exec.
_IGNORED_HERE = (signal.SIGPIPE, signal.SIGXFSZ)
# Inherited variables bash 5.2 drops, resets or replaces before its commands see them, or
# prints a complaint about (BASH_XTRACEFD, BASH_COMPAT): with one of them, a plain command
# goes to bash (PS1 and PS2, often exported by a login shell, are dropped).
_BASH_ALTERS = frozenset(
    "BASH BASHPID BASH_ARGV0 BASH_COMMAND BASH_COMPAT BASH_SUBSHELL BASH_VERSINFO BASH_VERSION "
    "BASH_XTRACEFD COMP_WORDBREAKS EPOCHREALTIME EPOCHSECONDS HISTCMD IFS LINENO OPTERR OPTIND "
    "PPID PS1 PS2 PS4 RANDOM SRANDOM".split()
)
# The host, not the attempt, is short of room: no space, inode or quota for the attempt's
# files. The attempt never ran; it may once there is room again (what a start makes can be
# tried: see akoflow.room, whose copy of this set the engine uses). A shortage of processes,
# memory or descriptors fails the attempt as before: no check could tell when it is over,
# and a runtime held for it would never end.
HOST_SHORT = frozenset({errno.ENOSPC, errno.EDQUOT})


def host_short(exc: BaseException) -> bool:
    """Whether ``exc`` says the host is short of room (see :data:`HOST_SHORT`)."""
    return isinstance(exc, OSError) and exc.errno in HOST_SHORT


def frame(message: tuple[Any, ...]) -> bytes:
    data = marshal.dumps(message)
    return HEADER.pack(len(data)) + data


class Frames:
    """Splits a byte stream into the messages :func:`frame` made."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[Any, ...]]:
        self._buffer += data
        messages: list[tuple[Any, ...]] = []
        while len(self._buffer) >= HEADER.size:
            (size,) = HEADER.unpack_from(self._buffer)
            if size > MAX_FRAME:
                raise ValueError(f"message of {size} bytes")
            end = HEADER.size + size
            if len(self._buffer) < end:
                break
            messages.append(marshal.loads(bytes(self._buffer[HEADER.size : end])))
            del self._buffer[:end]
        return messages


def open_attempt_file(path: str, *, truncate: bool = True) -> int:
    """``path`` (mode 0600) opened for writing (emptied with ``truncate``), made if missing.
    The names of an attempt's files are predictable: a script (its own, another attempt's)
    may have put a FIFO there (an open would wait for a reader for ever, and with it every
    start and end this spawner handles) or a symlink to elsewhere. Only a regular file of
    that name is written to."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    if truncate:
        flags |= os.O_TRUNC
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno in (errno.ENXIO, errno.ELOOP):  # a FIFO nobody reads; a symlink
            raise OSError(exc.errno, "it is not a regular file", path) from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "it is not a regular file", path)
        os.set_blocking(fd, True)  # what the script inherits is an ordinary file
    except BaseException:
        os.close(fd)
        raise
    return fd


def _write_new(path: str, data: bytes) -> None:
    """Write ``data`` to the regular file ``path`` (see :func:`open_attempt_file`)."""
    fd = open_attempt_file(path)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def write_private_file(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` (mode 0600) so that ``path`` never exists partly written:
    a temporary name, completely written, then renamed."""
    partial = path + ".part"
    _write_new(partial, data)
    os.replace(partial, path)


def claim_line(me: int) -> bytes:
    """Spawner ``me``'s claim of an attempt, until bash runs. As long as the started line
    written over it in place, with a letter where that line's pid ends: a reader catching
    the rewrite half done (the head of one line, the tail of the other, or the new line cut
    at the old size) reads neither a claim nor a start, and reads again (``local._Record``)."""
    return f"spawning now by {me}\n".encode()


def started_line(pid: int, me: int) -> bytes:
    """Bash runs as ``pid``; spawner ``me`` records its end (the pid padded to 8 digits,
    the length of :func:`claim_line`; pid_max is at most 4,194,304)."""
    return f"pid {pid:>8} by {me}\n".encode()


def exit_line(code: int) -> bytes:
    """The end's record. Exit codes (0-255, a shell's 128+N) make it shorter than where the
    ``by`` of the ``pid C by R`` line it replaces begins: a reader catching the write half
    done sees a line of more than two words, never another exit code (``local._Record``)."""
    return f"exit {code}\n".encode()


def record_end(path: str, code: int) -> None:
    """``exit N`` over the claim at ``path`` in place, then the file cut to that line: the
    first line is the record at every moment (the rest, until the cut, is stale)."""
    line = exit_line(code)
    # Made again if the script removed it: without a record, a resumed engine would claim
    # the attempt as never started and run it again.
    fd = open_attempt_file(path, truncate=False)
    try:
        if os.pwrite(fd, line, 0) != len(line):
            raise OSError(errno.EIO, "short write")
        os.ftruncate(fd, len(line))
    finally:
        os.close(fd)


def env_entry_size(name: str, value: str) -> int:
    """Bytes of ``NAME`` and ``value`` in exec's environment: a byte that is not UTF-8 (from
    the engine's own environment, decoded with surrogateescape) is one byte there, not the
    three of its surrogate's UTF-8 (a 60,000-byte such value was refused as over 128 KiB)."""
    try:
        return len((name + value).encode(errors="surrogateescape"))
    except UnicodeEncodeError:  # a surrogate no byte decodes to: refused by exec anyway
        return len((name + value).encode(errors="surrogatepass"))


def spawn_error(exc: BaseException, env: dict[str, str]) -> str:
    """Why a process could not be started, in the user's terms."""
    if isinstance(exc, ValueError) or (isinstance(exc, OSError) and exc.errno == errno.E2BIG):
        unfit = sorted(k for k, v in env.items() if "\0" in k or "\0" in v or "=" in k or not k)
        if unfit:
            return (
                f"environment variable(s) {', '.join(map(repr, unfit))} contain a NUL byte "
                "or an invalid name, which no process environment can hold"
            )
        if isinstance(exc, ValueError):
            return str(exc)
        big = sorted(k for k, v in env.items() if env_entry_size(k, v) > ENV_ENTRY_MAX)
        detail = f" ({', '.join(big)}: over 128 KiB each)" if big else ""
        return f"the environment is too big for the kernel to start a process{detail}"
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc)
        if isinstance(exc.filename, str):  # which one: the data dir gone, bash missing...
            shown = exc.filename.encode(errors="surrogateescape").decode(errors="backslashreplace")
            reason += f": {shown}"
        return reason
    return str(exc)


def shell_code(status_code: int) -> int:
    """The exit code a shell reports: ``128+N`` for a process killed by signal N."""
    return 128 - status_code if status_code < 0 else status_code


class _Child:
    __slots__ = ("cgroup", "key", "prefix", "signalled", "started_at")

    def __init__(self, key: str, prefix: str, cgroup: str | None, started_at: float) -> None:
        self.key = key
        self.prefix = prefix
        self.cgroup = cgroup
        self.started_at = started_at  # just before its spawn: its run time is not longer
        # Whether a stop reached it while it ran: one that had ended on its own before (its
        # end not read yet) keeps its exit code's meaning, a success included.
        self.signalled = False


class Spawner:
    def __init__(self, link: int) -> None:
        self.link = link
        self.me = os.getpid()
        self.children: dict[int, _Child] = {}
        self.by_key: dict[str, int] = {}
        self.engine_gone = False
        self.frames = Frames()
        self.outbox = bytearray()
        self.base: dict[str, str] = {}
        self.devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        self.umask = os.umask(0o077)
        os.umask(self.umask)
        self.home: int | None = None  # this process's own cgroup.procs, to come back to

    # ---------------------------------------------------------------- to the engine

    def send(self, *message: Any) -> None:
        """Queue a message; :meth:`flush` writes what one turn of the loop queued in one go
        (the engine reads a start and an end of a short attempt in one wake-up)."""
        if not self.engine_gone:
            self.outbox += frame(message)

    def flush(self) -> None:
        data, self.outbox = self.outbox, bytearray()
        if self.engine_gone or not data:
            return
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self.link, view) :]
        except OSError:  # the engine is gone; the record in the files is what counts
            self.engine_gone = True

    # ---------------------------------------------------------------- requests

    def handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "spawn":
            self.spawn(*message[1:])
        elif kind == "base":  # what every attempt's environment starts from
            self.base = message[1]
        elif kind == "signal":
            _, key, number = message
            pid = self.by_key.get(key)
            # Not reaped yet: the pid and its group are still its own. Ended already (a
            # zombie): the stop came too late, and its group is killed as it is reaped.
            if pid is not None and not _has_ended(pid):
                child = self.children.get(pid)
                try:
                    os.killpg(pid, number)
                except (ProcessLookupError, PermissionError):
                    pass
                else:
                    if child is not None:
                        child.signalled = True

    def spawn(
        self,
        key: str,
        prefix: str,
        script: bytes,
        script_path: str,
        bash: str,
        argv: list[str],
        env: dict[str, str],
        workdir: str,
        umask: int,
        cgroup: str | None,
        plain: list[str] | None = None,
    ) -> None:
        env = {**self.base, **env}  # the request carries what differs from the base
        try:
            claim = os.open(
                prefix + ".exit", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600
            )
        except FileExistsError:
            self.send("failed", key, f"attempt {key} was already launched once; not started again")
            return
        except OSError as exc:
            self._failed(key, f"cannot claim attempt {key}", exc, env)
            return
        try:
            try:
                os.write(claim, claim_line(self.me))
            except OSError as exc:  # a full disk: this attempt fails, this spawner goes on
                _unclaim(prefix, script_path)
                self._failed(key, f"cannot claim attempt {key}", exc, env)
                return
            try:
                # The script only once the attempt is its own (a late request never touches
                # another's), written whole before any bash exists.
                _write_new(script_path, script)
            except OSError as exc:
                _unclaim(prefix, script_path)
                self._failed(key, f"cannot write the script of {key}", exc, env)
                return
            started_at = time.time()
            try:
                pid = self._start(prefix, bash, argv, env, workdir, umask, cgroup, plain)
            except Exception as exc:
                _unclaim(prefix, script_path)
                self._failed(key, f"cannot start bash for {key}", exc, env)
                return
            os.pwrite(claim, started_line(pid, self.me), 0)
        finally:
            os.close(claim)
        self.children[pid] = _Child(key, prefix, cgroup, started_at)
        self.by_key[key] = pid
        self.send("started", key, pid)

    def _failed(self, key: str, what: str, exc: BaseException, env: dict[str, str]) -> None:
        """Tell the engine the attempt was not started, and whether the host was short of
        something (then it never ran for a reason of the host's, not its own)."""
        self.send("failed", key, f"{what}: {spawn_error(exc, env)}", host_short(exc))

    def _start(
        self,
        prefix: str,
        bash: str,
        argv: list[str],
        env: dict[str, str],
        workdir: str,
        umask: int,
        cgroup: str | None,
        plain: list[str] | None = None,
    ) -> int:
        """``bash`` started (posix_spawn: it has exec'd on return) in a new session, in the
        attempt's cgroup when there is one, with the attempt's files as its output: its
        pid. ``plain``: the script is this one plain command (akoflow.runtimes.plain_command),
        started without bash when it is a program bash would find and could start."""
        out = open_attempt_file(prefix + ".stdout")
        try:
            err = open_attempt_file(prefix + ".stderr")
        except OSError:
            os.close(out)
            raise
        try:
            os.chdir(workdir)
            if umask != self.umask:
                os.umask(umask)
                self.umask = umask
            # The child is created in this process's cgroup: for that instant this process
            # is in the attempt's, so the script is in it before its first command, and so
            # is whatever it starts, even in a new session (then killed with it).
            home = self._enter(cgroup) if cgroup is not None else None
            if cgroup is not None and home is None:
                os.write(
                    err,
                    f"akoflow: could not join cgroup {cgroup}; processes this script moves "
                    "to a new session may outlive it\n".encode(errors="surrogateescape"),
                )
            actions = [
                (os.POSIX_SPAWN_DUP2, self.devnull, 0),
                (os.POSIX_SPAWN_DUP2, out, 1),
                (os.POSIX_SPAWN_DUP2, err, 2),
            ]

            def spawn(path: str, args: list[str], environ: dict[str, str]) -> int:
                return os.posix_spawn(
                    path,
                    args,
                    environ,
                    file_actions=actions,
                    setsid=True,
                    setsigdef=_IGNORED_HERE,
                    setsigmask=(),
                )

            try:
                pid = None
                program = _program(plain[0], env) if plain else None
                passed = _as_bash_passes_it(env, program) if program is not None else None
                if plain and program is not None and passed is not None:
                    # Not a program exec takes (a script with no #!...): bash tells, or runs
                    # it, as it always did.
                    with contextlib.suppress(OSError):
                        pid = spawn(program, plain, passed)
                if pid is None:
                    pid = spawn(bash, argv, env)
            finally:
                if home is not None:
                    os.write(home, b"0")
        finally:
            os.close(out)
            os.close(err)
            os.chdir("/")
        return pid

    def _enter(self, cgroup: str) -> int | None:
        """Move this process into ``cgroup`` (made if missing); the fd that moves it back
        home, or None when it could not."""
        if self.home is None:
            try:
                self.home = os.open(
                    os.path.join(os.path.dirname(cgroup), "cgroup.procs"),
                    os.O_WRONLY | os.O_CLOEXEC,
                )
            except OSError:
                return None
        try:
            with contextlib.suppress(FileExistsError):
                os.mkdir(cgroup)
            procs = os.open(os.path.join(cgroup, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(procs, b"0")
            finally:
                os.close(procs)
        except OSError:
            return None
        return self.home

    # ---------------------------------------------------------------- ends

    def reap(self) -> None:
        while self.children:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None:
                return
            # When it ended, as near as this process knows (woken by SIGCHLD): the engine
            # judges an end it heard of after the attempt's deadline by it.
            ended_at = time.time()
            pid = info.si_pid
            # Still a zombie: its pid and group cannot be reused yet, so what it left in
            # its group goes first, then it is reaped.
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            _, status, usage = os.wait4(pid, 0)
            child = self.children.pop(pid, None)
            if child is None:
                continue
            self.by_key.pop(child.key, None)
            code = os.waitstatus_to_exitcode(status)
            try:
                record_end(child.prefix + ".exit", shell_code(code))
            except OSError as exc:  # the engine is told; a restarted one would see "pid"
                self.send("warning", child.key, f"cannot record the end of {child.key}: {exc}")
            peak = usage.ru_maxrss
            # The child's peak counts this process's pages (exec keeps the old high-water
            # mark): a peak not above ours is not the activity's own.
            own = _own_peak()
            rss = peak * 1024 if peak > own else None
            # Removed here, and said so: the engine then does not try again (an rmdir on its
            # loop per activity). One it cannot remove yet is the engine's to empty.
            removed = child.cgroup is None or _remove_empty_cgroup(child.cgroup)
            cpu = usage.ru_utime + usage.ru_stime
            self.send(
                "ended",
                child.key,
                code,
                cpu,
                rss,
                removed,
                child.signalled,
                ended_at,
                child.started_at,
            )

    # ---------------------------------------------------------------- loop

    def run(self) -> None:
        wake_r, wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        poller = select.poll()
        poller.register(self.link, select.POLLIN)
        poller.register(wake_r, select.POLLIN)
        while not (self.engine_gone and not self.children):
            try:
                ready = poller.poll()
            except InterruptedError:
                continue
            for fd, _ in ready:
                if fd == wake_r:
                    _drain(wake_r)
                    self.reap()
                elif fd == self.link:
                    self._read_link(poller)
            self.reap()
            self.flush()

    def _read_link(self, poller: select.poll) -> None:
        try:
            data = os.read(self.link, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.engine_gone = True
            poller.unregister(self.link)
            return
        for message in self.frames.feed(data):
            self.handle(message)


def _unclaim(prefix: str, script_path: str) -> None:
    """Undo the claim of an attempt that never ran (a retry may claim it again), with the
    files it made after its claim (its script, its empty outputs): left, each attempt lost
    to a full disk kept an inode of it, the disk fuller at each. If even that fails, the
    claim stays without a record: an attempt lost, a failure."""
    for path in (script_path, prefix + ".stdout", prefix + ".stderr", prefix + ".exit"):
        with contextlib.suppress(OSError):
            os.unlink(path)


def _remove_empty_cgroup(path: str) -> bool:
    """Remove an ended attempt's cgroup; False when it still has processes (they left the
    session the end killed) or cgroups of its own: the engine kills what is in it and
    removes it (``LocalRuntime._release_cgroup``)."""
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def _program(name: str, env: dict[str, str]) -> str | None:
    """The file bash would run for command ``name`` (not a builtin): ``name`` itself when it
    has a slash (from the working directory), else the first executable file (not a directory)
    of that name in ``PATH`` (an empty entry is the working directory). None when bash would
    not find one (it then says so itself, with its own exit code), PATH is unset (bash's own
    default applies), or an entry bash looks in first begins with ``~`` (bash expands it:
    ``~/bin`` is ``$HOME/bin`` to bash, a directory named ``~`` here). ``true`` and ``false``
    are bash's builtins whatever PATH holds: the system's programs, which do the same."""
    if "/" in name:
        return name if _executable_file(name) else None
    if name in ("true", "false"):
        path: str | None = os.confstr("CS_PATH") or "/bin:/usr/bin"
    else:
        path = env.get("PATH")
    if path is None:
        return None
    for directory in path.split(":"):
        if directory.startswith("~"):
            return None
        candidate = os.path.join(directory or ".", name)
        if _executable_file(candidate):
            return candidate
    return None


def _executable_file(path: str) -> bool:
    """What bash's command search takes (file_status): any file but a directory that may be
    executed (a FIFO with x bits too: its exec then fails and bash reports it)."""
    try:
        return not stat.S_ISDIR(os.stat(path).st_mode) and os.access(path, os.X_OK)
    except (OSError, ValueError):
        return False


def _as_bash_passes_it(env: dict[str, str], program: str) -> dict[str, str] | None:
    """The environment bash 5 gives a command it runs from the working directory: ``PWD``
    that directory (the inherited one if it is absolute and names it), ``SHLVL`` one more,
    ``OLDPWD`` only if it names a directory, ``_`` the program. None when bash would pass
    something else (:data:`_BASH_ALTERS`) or print something (a SHLVL it resets, a locale
    it cannot set, with a warning): bash then runs it."""
    level = _shell_level(env.get("SHLVL", ""))
    if level is None or not _BASH_ALTERS.isdisjoint(env) or not _locale_loads(env):
        return None
    passed = dict(env)
    inherited = env.get("PWD", "")
    try:
        same = inherited.startswith("/") and os.path.samestat(os.stat(inherited), os.stat("."))
    except (OSError, ValueError):
        same = False
    passed["PWD"] = inherited if same else os.getcwd()
    if "OLDPWD" in passed and not _is_directory(passed["OLDPWD"]):
        del passed["OLDPWD"]
    passed["SHLVL"] = str(level)
    passed["_"] = program
    return passed


def _locale_loads(env: dict[str, str]) -> bool:
    """Whether bash would set the locale LC_ALL names without its warning (``setlocale:
    LC_ALL: cannot change locale``, on the attempt's stderr: en_US.UTF-8 on a host that lacks
    it). Set here for the instant of the test, then set back."""
    wanted = env.get("LC_ALL")
    if not wanted:
        return True
    known = _LOCALES.get(wanted)
    if known is None:
        before = _locale.setlocale(_locale.LC_ALL)
        try:
            _locale.setlocale(_locale.LC_ALL, wanted)
            known = True
        except Exception:  # _locale.Error: a locale this host lacks; ValueError: a NUL
            known = False
        finally:
            _locale.setlocale(_locale.LC_ALL, before)
        _LOCALES[wanted] = known
    return known


_LOCALES: dict[str, bool] = {}


def _is_directory(path: str) -> bool:
    try:
        return os.path.isdir(path)
    except ValueError:  # a NUL byte
        return False


def _shell_level(inherited: str) -> int | None:
    """bash's SHLVL for the commands it runs (adjust_shell_level): the inherited number
    (legal_number: C white space before it, blanks after, a sign, decimal digits, 64 bits)
    plus one, as a C int; 0 for a negative one, 1 for a missing or malformed one. None for
    1000 or more, which bash resets to 1 with a warning on its stderr."""
    text = inherited.lstrip(" \t\n\v\f\r").rstrip(" \t")
    digits = text[1:] if text[:1] in "+-" else text
    old = int(text) if digits and digits.isascii() and digits.isdigit() else 0
    if not -(1 << 63) <= old < 1 << 63:  # strtoimax: out of range
        old = 0
    level = (old + 1 + (1 << 31)) % (1 << 32) - (1 << 31)  # an int, wrapped as bash's is
    return 0 if level < 0 else None if level >= 1000 else level


def _has_ended(pid: int) -> bool:
    """Whether this process's child ``pid`` has ended (it stays to be reaped)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except OSError:
        pass


def _own_peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    link = int(sys.argv[1])
    os.set_inheritable(link, False)  # the attempts never hold the engine's link
    # Descriptors the engine inherited from whoever started it (a CI runner's pipe, a make
    # jobserver, a shell's `exec 9>file`) are not the activities' to hold: a pipe kept open
    # by a spawner or an activity that outlives the engine keeps its reader waiting.
    for name in os.listdir("/proc/self/fd"):
        if int(name) > link:
            with contextlib.suppress(OSError):  # the listing's own descriptor, gone already
                os.close(int(name))
    spawner = Spawner(link)
    try:
        spawner.run()
    except BaseException as exc:  # said to the engine (this process has no stderr)
        import traceback

        spawner.send("warning", "", "".join(traceback.format_exception(exc)))
        spawner.flush()
        raise
    # Nothing is left to write or close: the engine that waits to reap this process
    # (an idle one at its stop) need not wait for the interpreter's teardown too.
    os._exit(0)


if __name__ == "__main__":
    main()
