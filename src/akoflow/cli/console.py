"""Terminal output through rich, imported on first use: a command that prints nothing
(`akoflow run --quiet`, the benchmarks' way) does not pay for rich's import (60-80 ms here)."""

from __future__ import annotations

import errno
import logging
import logging.handlers
import os
import queue
import sys
import time
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

if TYPE_CHECKING:
    from rich.console import Console


class GuardedStream:
    """``sys.stdout`` or ``sys.stderr`` as rich writes to them, where a terminal that went away
    (EIO after a hangup), a closed pipe (EPIPE: rich would raise SystemExit from inside the
    engine's loop) or a full disk ends the output, never the command: the run goes on (or
    is cancelled) and is recorded whatever happens to the screen."""

    def __init__(self, *, stderr: bool) -> None:
        self._stderr = stderr
        self.dead = False
        self.error: OSError | None = None  # what ended the output (see lost_output)

    @property
    def target(self) -> TextIO:
        stream = sys.stderr if self._stderr else sys.stdout
        # rich's live view swaps in a proxy that writes back through the console: not that
        proxied: TextIO = getattr(stream, "rich_proxied_file", stream)
        return proxied

    def write(self, text: str) -> int:
        if not self.dead:
            try:
                self.target.write(text)
            except OSError as exc:
                self._ended(exc)
        return len(text)

    def flush(self) -> None:
        if not self.dead:
            try:
                self.target.flush()
            except OSError as exc:
                self._ended(exc)

    def _ended(self, exc: OSError) -> None:
        self.dead = True
        self.error = self.error or exc

    def isatty(self) -> bool:
        try:
            return not self.dead and self.target.isatty()
        except (OSError, ValueError):
            return False

    def fileno(self) -> int:
        return self.target.fileno()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.target, name)


class LazyConsole:
    """Stands for a ``rich.console.Console`` (stdout, or stderr) created when first used."""

    def __init__(self, *, stderr: bool = False) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(
                file=GuardedStream(stderr=self._stderr),  # type: ignore[arg-type]
                stderr=self._stderr,
            )
        return self._console

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "console":
            # Reached when building the console raised AttributeError: that error, not a
            # recursion through this method.
            raise AttributeError(name)
        return getattr(self.console, name)


out = LazyConsole()
err = LazyConsole(stderr=True)


def lost_output(flushed: OSError | None = None) -> str | None:
    """Why what the command wrote on stdout is incomplete (a full disk, an I/O error), or
    None; ``flushed``: what the last flush of ``sys.stdout`` raised. A reader that left (a
    closed pipe: ``| head``) or a terminal that went away is no news to anyone."""
    console = out._console
    stream = console.file if console is not None else None
    error = getattr(stream, "error", None) or flushed
    if error is None or error.errno in (errno.EPIPE, errno.EIO):
        return None
    return f"stdout: {error.strerror or error}: the output is incomplete"


def escape(text: str) -> str:
    """Text shown as written in rich markup (``rich.markup.escape``)."""
    from rich.markup import escape as markup_escape

    return markup_escape(text)


class LazyRichHandler(logging.Handler):
    """A ``rich.logging.RichHandler`` on ``console``, created at the first record logged."""

    def __init__(self, console: LazyConsole) -> None:
        super().__init__()
        self._console = console
        self._handler: logging.Handler | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self._handler is None:
            from rich.logging import RichHandler

            console = self._console.console
            self._handler = RichHandler(console=console, show_path=False, markup=False)
            self._handler.setFormatter(self.formatter)
        self._handler.emit(record)


class BackgroundLogHandler(logging.handlers.QueueHandler):
    """Hands each record to a thread that writes it with ``target``. A write that blocks
    (stderr a pipe nobody reads now: ``run -v 2>&1 | less`` paused, a parent reading another
    pipe first) blocks that thread, never the engine's loop, which logs while it holds the
    store's write lock: every other command on the state dir waited for the lock, then failed
    "database is locked". Up to :data:`MAX_WAITING` records wait; beyond, they are dropped
    and a last line says how many. :meth:`close` (``logging.shutdown``) writes what waits."""

    MAX_WAITING = 10_000

    def __init__(self, target: logging.Handler) -> None:
        super().__init__(queue.Queue(self.MAX_WAITING))
        self.target = target
        self.dropped = 0
        self.listener = logging.handlers.QueueListener(
            self.queue, target, respect_handler_level=True
        )
        self.listener.start()
        self.writing = True

    def enqueue(self, record: logging.LogRecord) -> None:
        if not self.writing:
            # Closed, and logging on: logging.config (uvicorn's, in the server) closes every
            # handler it finds and leaves them in place. Its thread starts again.
            self.writing = True
            self.listener.start()
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1

    def drain(self, stall: float, most: float) -> bool:
        """Wait until every record queued is written: True if written. As long as writes go
        on (a busy machine writes slowly), at most ``most`` s; but never ``stall`` s without
        one (stderr not read: the write blocks). This never writes itself, nor waits past
        those limits for the queue's lock (a signal handler may run while this thread holds
        it)."""
        q = self.queue
        assert isinstance(q, queue.Queue)
        done = q.all_tasks_done
        start = last_write = time.monotonic()
        waiting = None

        def left() -> float:
            return min(last_write + stall, start + most) - time.monotonic()

        while True:
            if not done.acquire(timeout=max(left(), 0)):
                return False
            try:
                if not q.unfinished_tasks:
                    return True
                if waiting is None or q.unfinished_tasks < waiting:
                    waiting, last_write = q.unfinished_tasks, time.monotonic()
                if left() <= 0:
                    return False
                done.wait(min(left(), DRAIN_LOOK))  # woken at the last write only: look again
            finally:
                done.release()

    def close(self) -> None:
        try:
            if self.writing:
                self.writing = False
                self.listener.stop()  # what waits is written first
            if self.dropped:
                self.target.handle(
                    logging.makeLogRecord(
                        {
                            "msg": f"{self.dropped} log lines were dropped while stderr was "
                            "not read",
                            "levelno": logging.WARNING,
                            "levelname": "WARNING",
                        }
                    )
                )
                self.dropped = 0
        finally:
            super().close()


# When leaving at once, the log lines still queued may take: LEAVE_STALL s without a line
# written (stderr not read), LEAVE_MOST s in all (a busy machine writes them slowly).
LEAVE_STALL = 0.5
LEAVE_MOST = 5.0
DRAIN_LOOK = 0.02  # s between looks at the queue while its lines are written


def leave_now(code: int) -> NoReturn:
    """``os._exit(code)`` (a second Ctrl-C, a signal after the engine's stop), once the log
    lines still queued in a :class:`BackgroundLogHandler` are written, or their writing
    stalls (:data:`LEAVE_STALL`): a stderr nobody reads never holds the exit. Without it, the
    last lines logged before the exit were lost; with a fixed 0.5 s, they were on a machine
    busy enough."""
    try:
        for handler in logging.getLogger().handlers:
            if isinstance(handler, BackgroundLogHandler):
                handler.drain(LEAVE_STALL, LEAVE_MOST)
    finally:
        os._exit(code)


def is_text(value: str) -> bool:
    """False for command-line arguments that are not valid Unicode (bytes the locale could
    not decode): no workflow or activity has such a name."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown(value: str) -> str:
    """An argument or a path as it can be printed, as ``akoflow files`` shows names
    (:func:`akoflow.provenance.names.display`): undecodable bytes and control characters as
    ``\\xNN`` (an escape sequence in a name an activity chose never drives the terminal),
    bidirectional controls as ``\\uNNNN``, a backslash doubled."""
    from akoflow.provenance.names import display

    return display(value)
