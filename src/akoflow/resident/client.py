"""The command's side: hand the command line to a resident server, wait for its end.

Imported by the ``akoflow`` entry point, when a server's socket is there, before anything
else (the standard library's C modules, mostly: 2 ms). A server that is not listening, not
this user's, refuses (see :mod:`akoflow.resident`) or does not answer in 10 s, or
``AKOFLOW_RESIDENT=0``: the command runs in its own process, as it always did.
"""

from __future__ import annotations

import _socket
import os
import select
import sys
import time

from akoflow.resident import wire

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
else:  # the C module: signal.py builds IntEnums (with enum, ~5 ms of every command here)
    import _signal as signal

# Passed on to the command's copy; the others (SIGKILL aside) act on this process alone.
FORWARDED = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)
# Ctrl-Z stops the copy with the command (SIGSTOP), SIGCONT continues both.
SUSPENSION = (signal.SIGTSTP, signal.SIGCONT)
EXIT_ENGINE_LOST = 128 + signal.SIGKILL  # as if the engine itself had been killed
EXIT_STATUS_UNKNOWN = 1  # never 0: a success nobody reported is no success
STATUS_SECONDS = 10.0
ANSWER_SECONDS = 10.0  # for the server's answer to a request (milliseconds when it is well)


def hand_over() -> int | None:
    """The exit code of the command as the resident server ran it, or None when no server
    took it (then nothing was run: the caller runs it)."""
    if os.environ.get(wire.DISABLE_VAR) == "0" or _names_descriptors(sys.argv[1:]):
        return None
    path = os.path.join(wire.resident_dir(), wire.SOCKET_NAME)
    try:
        sock = _above_streams(wire.connect(path))
    except OSError:  # none listening (or a stale socket file): run here
        return None
    if not _ours(sock):  # the command's environment (secrets) and streams are for us only
        sock.close()
        return None
    try:
        return _run_there(sock)
    finally:
        sock.close()


def _names_descriptors(args: list[str]) -> bool:
    """Whether an argument names a descriptor of this process other than 0, 1 and 2, which
    the copy does not have (``akoflow run <(envsubst < wf.yaml)`` gives ``/dev/fd/63``)."""
    for arg in args:
        for prefix in ("/dev/fd/", "/proc/self/fd/"):
            at = arg.find(prefix)
            while at != -1:
                start = end = at + len(prefix)
                while end < len(arg) and arg[end].isdigit():
                    end += 1
                if end > start and int(arg[start:end]) > 2:
                    return True
                at = arg.find(prefix, end)
    return False


def _ours(sock: _socket.socket) -> bool:
    """Whether the server is a process of this user (a state dir others may write to, such as
    a shared project's, can hold another user's socket)."""
    try:
        return wire.peer_uid(sock) == os.getuid()
    except OSError:
        return False


def _above_streams(sock: _socket.socket) -> _socket.socket:
    """``sock``, moved above 0, 1 and 2 when one of them was closed and it took its place:
    else it would be handed over as that stream, and the copy, holding the connection, would
    outlive a killed command."""
    if sock.fileno() > 2:
        return sock
    import fcntl  # rare: not on every command's path

    try:
        fd = fcntl.fcntl(sock.fileno(), fcntl.F_DUPFD_CLOEXEC, 3)
    finally:
        sock.close()
    return _socket.socket(fileno=fd)


def _say(text: str) -> None:
    """A line on stderr, unless the command has none (fd 2 closed: sys.stderr is None)."""
    if sys.stderr is None:
        return
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _run_there(sock: _socket.socket) -> int | None:
    """Request, then (asked for them) the descriptors, then the word that the copy may run:
    until that word the command may still give up and run on its own (the copy never ran)."""
    opened: list[int] = []
    try:
        terminal = _terminal_fd(opened)
        mask = os.umask(0o022)
        os.umask(mask)
        request = {
            "argv": sys.argv,
            "orig_argv": sys.orig_argv,
            "environ": dict(os.environ),
            "umask": mask,
            "package": os.path.dirname(os.path.dirname(os.path.abspath(wire.__file__))),
            "main": _main_module(),
            "ignored": _ignored_signals(),
            "facts": wire.process_facts(),
            "terminal": terminal is not None,
        }
        wire.send(sock, request)
        asked = _answer(sock)
        if asked is None or not asked[0].get("descriptors"):
            _not_taken(asked)
            return None
        fds = [_stream_fd(fd, opened) for fd in (0, 1, 2)]
        fds.append(_cwd_fd(opened))
        if terminal is not None:
            fds.append(terminal)
        wire.send(sock, {"descriptors": len(fds)}, fds)
        started = _answer(sock)
    except OSError:  # the server went away: nothing started there
        return None
    finally:
        for fd in opened:
            os.close(fd)
    if started is None or "pid" not in started[0] or len(started[1]) != 1:
        _not_taken(started)
        return None
    pidfd = started[1][0]
    try:
        try:
            wire.send(sock, {"go": True})  # from here the copy runs it: no turning back
        except OSError:  # the server is gone: its copy never ran (it waits for this word)
            return None
        return _wait(sock, pidfd)
    finally:
        os.close(pidfd)


def _answer(sock: _socket.socket) -> tuple[dict[str, object], list[int]] | None:
    """The server's next answer, None when it has none (it went away, or said nothing in
    :data:`ANSWER_SECONDS`: stopped or hung; its copy, if any, runs nothing without our
    word)."""
    try:
        sock.settimeout(ANSWER_SECONDS)
        reply, fds = wire.receive(sock, with_fds=True)
        sock.settimeout(None)
    except TimeoutError:
        _say(
            f"akoflow: the resident engine did not answer in {ANSWER_SECONDS:.0f} s "
            "(stopped?); this command runs on its own\n"
        )
        return None
    except (OSError, wire.WireError):
        return None
    return None if reply is None else (reply, fds)


def _not_taken(answer: tuple[dict[str, object], list[int]] | None) -> None:
    """The server did not take the command (it runs here): its note said, if it has one."""
    if answer is not None:
        reply, fds = answer
        for fd in fds:
            os.close(fd)
        if reply.get("note"):
            _say(f"akoflow: {reply['note']}\n")
    return None


def _main_module() -> dict[str, str | None]:
    """What ``__main__`` is here (click names the program after it in usage lines)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return {
        "package": getattr(main, "__package__", None),
        "file": getattr(main, "__file__", None),
        "spec": getattr(spec, "name", None),
    }


def _ignored_signals() -> list[int]:
    """The signals this process ignores (inherited: ``nohup``, ``trap '' QUIT``, a script's
    background job): the copy ignores them too, as the command's engine would."""
    ignored = []
    for number in signal.valid_signals():
        try:
            if signal.getsignal(number) == signal.SIG_IGN:
                ignored.append(int(number))
        except (OSError, ValueError):
            pass
    return ignored


def _stream_fd(fd: int, opened: list[int]) -> int:
    """``fd``, or /dev/null where it is closed (as the command would have it)."""
    try:
        os.fstat(fd)
        return fd
    except OSError:
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        opened.append(null)
        return null


def _cwd_fd(opened: list[int]) -> int:
    # O_PATH: a working directory this user may enter but not list is still one to pass.
    fd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    opened.append(fd)
    return fd


def _terminal_fd(opened: list[int]) -> int | None:
    """The command's controlling terminal (the copy has none of its own: questions such as a
    keyboard-interactive login go to this one, akoflow.terminal), or None without one."""
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return None
    opened.append(fd)
    return fd


def _wait(sock: _socket.socket, pidfd: int) -> int:
    """Pass signals on to the copy (through its pidfd: even while the server is stopped)
    until the server says how the copy ended."""
    wake_r, wake_w = _socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    previous = {sig: signal.signal(sig, _noted) for sig in (*FORWARDED, *SUSPENSION)}
    signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
    try:
        watched: list[_socket.socket | int] = [sock, wake_r, pidfd]
        deadline = None
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select(watched, [], [], left)
            if wake_r in ready:
                for number in wake_r.recv(64):
                    if number == signal.SIGTSTP:
                        _suspend(pidfd)
                        continue
                    try:
                        signal.pidfd_send_signal(pidfd, number)
                    except ProcessLookupError:  # it ended: its status is on the way
                        pass
            if sock in ready:
                try:
                    reply, _ = wire.receive(sock)
                except (OSError, wire.WireError):
                    reply = None
                return _ended(reply)
            if pidfd in ready:  # the copy ended: the server reaps it and says how, at once
                watched.remove(pidfd)
                deadline = time.monotonic() + STATUS_SECONDS
            elif deadline is not None and not ready:
                _say(
                    "akoflow: the command ended in the resident engine, which did not say how "
                    f"in {STATUS_SECONDS:.0f} s (stopped?); `akoflow status` shows the run\n"
                )
                return EXIT_STATUS_UNKNOWN
    except OSError:
        return _ended(None)
    finally:
        signal.set_wakeup_fd(-1)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        wake_r.close()
        wake_w.close()


def _suspend(pidfd: int) -> None:
    """Ctrl-Z (SIGTSTP): the copy stops with the command, as the engine in the command's own
    process did, and goes on when the command does (``fg``, ``bg``: SIGCONT, passed on)."""
    for number in (signal.SIGSTOP, None, signal.SIGCONT):
        if number is None:  # stop here, until continued (at once in an orphaned group)
            signal.signal(signal.SIGTSTP, signal.SIG_DFL)
            try:
                os.kill(os.getpid(), signal.SIGTSTP)
            finally:
                signal.signal(signal.SIGTSTP, _noted)
            continue
        try:
            signal.pidfd_send_signal(pidfd, number)
        except ProcessLookupError:
            pass


def _noted(_signum: int, _frame: object) -> None:
    """Nothing here: the wakeup descriptor carries the signal's number to :func:`_wait`."""


def _ended(reply: dict[str, object] | None) -> int:
    exit_code = None if reply is None else reply.get("exit")
    number = None if reply is None else reply.get("signal")
    if isinstance(exit_code, int):
        return exit_code
    if isinstance(number, int):
        # Die as the copy died (a shell shows the same status), where the signal can do it.
        try:  # SIGKILL and SIGSTOP have no handler to reset: os.kill all the same
            signal.signal(number, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
        try:
            os.kill(os.getpid(), number)
        except (OSError, ValueError):
            pass
        return 128 + number
    _say("akoflow: the resident engine stopped during the command (killed?)\n")
    return EXIT_ENGINE_LOST
