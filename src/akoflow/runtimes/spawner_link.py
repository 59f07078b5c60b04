"""The engine's side of the local spawner (:mod:`akoflow.runtimes.local_spawner`).

One :class:`SpawnerLink` per local runtime: it starts the spawner with a clean environment
(in a session of its own, so a terminal's signals never reach it), sends it requests without
blocking the event loop, and routes its answers (``started``, ``failed``, ``ended``) to the
runtime's callbacks. If the spawner dies, ``on_lost`` is called once (the runtime then ends
what it had asked for, none of which can be recorded any more) and the next spawn starts a
new spawner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

import psutil

from akoflow.runtimes import spawner_start
from akoflow.runtimes.local_spawner import Frames, frame

log = logging.getLogger(__name__)

EXIT_WAIT = 2.0  # s: an idle spawner leaves at once when its link closes
STALL_WARN = 10.0  # s: a spawner silent this long with starts asked of it is logged
# Spawners this process started that were left with attempts still running: reaped once they
# have recorded the last one and left (no zombie in a long-lived process such as the server).
_left: set[int] = set()

Ended = Callable[[str, int, float, "int | None", bool, bool, "float | None", "float | None"], None]
Started = Callable[[str, int], None]
Failed = Callable[[str, str, bool], None]  # key, reason, the host short of room


def reap_left() -> None:
    for pid in list(_left):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            _left.discard(pid)


def _state_of(pid: int | None) -> str:
    """A process's state as ps says it ("stopped", "sleeping"...), for a log line."""
    try:
        return str(psutil.Process(pid).status()) if pid is not None else "not started"
    except psutil.Error:
        return "gone"


class SpawnerLink:
    def __init__(
        self,
        name: str,
        env: dict[str, str],
        on_started: Started,
        on_failed: Failed,
        on_ended: Ended,
        on_lost: Callable[[], None],
        base: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self._env = env
        # What every attempt's environment starts from: sent once per spawner, so that a
        # request carries only what differs (an engine's environment is kilobytes).
        self._base = base or {}
        self._on_started = on_started
        self._on_failed = on_failed
        self._on_ended = on_ended
        self._on_lost = on_lost
        self._out = bytearray()  # what the socket did not take yet (sent in order)
        self._flushing = False  # a write of _out is due in this turn of the loop
        self._waiting_writable = False  # ... or once the socket takes more
        self._sock: socket.socket | None = None
        self._pid: int | None = None
        self._frames = Frames()
        self._loop: asyncio.AbstractEventLoop | None = None
        # Starts asked and not answered; when the spawner last said anything; the watch that
        # logs a spawner that stays silent (stopped, hung): waited for, never silently.
        self._unanswered = 0
        self._heard = 0.0
        self._watch: asyncio.TimerHandle | None = None
        self._stall_logged = False

    @property
    def pid(self) -> int | None:
        return self._pid

    def _start(self) -> socket.socket:
        reap_left()
        # One started ahead (``akoflow run`` starts them while it imports) or a new one.
        self._pid, ours = spawner_start.take(self._env) or spawner_start.start(self._env)
        ours.setblocking(False)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(ours.fileno(), self._readable)
        self._sock = ours
        self._send(frame(("base", self._base)))
        return ours

    def spawn(self, request: tuple[Any, ...]) -> None:
        """Send one spawn request (its first item is the attempt's key); the answer comes to
        ``on_started`` or ``on_failed`` (or ``on_lost``), in a later turn of the loop. Not
        awaited: the engine goes on while the spawner forks and bash starts."""
        if self._sock is None:
            self._start()
        assert self._loop is not None
        if not self._unanswered:
            self._heard = self._loop.time()
        self._unanswered += 1
        if self._watch is None:
            self._watch = self._loop.call_later(STALL_WARN, self._watch_stall)
        self._send(frame(("spawn", *request)))

    def _watch_stall(self) -> None:
        self._watch = None
        if self._sock is None or self._loop is None or not self._unanswered:
            return
        silent = self._loop.time() - self._heard
        if silent >= STALL_WARN and not self._stall_logged:
            self._stall_logged = True
            log.warning(
                "%s: the local spawner (pid %s, %s) has not answered for %.0fs; %d attempt(s) "
                "wait for it to start them",
                self.name,
                self._pid,
                _state_of(self._pid),
                silent,
                self._unanswered,
            )
        self._watch = self._loop.call_later(max(0.1, STALL_WARN - silent), self._watch_stall)

    def signal(self, key: str, number: int) -> bool:
        """Ask the spawner to signal the attempt's process group (it knows whether the pid
        is still the attempt's); False when there is no spawner to ask."""
        if self._sock is None:
            return False
        self._send(frame(("signal", key, int(number))))
        return True

    def _send(self, data: bytes) -> None:
        """Queue ``data`` after what waits (messages are never interleaved); what one turn of
        the event loop queued goes in one write (a wide run's batch of starts: one wake-up
        of the spawner, not one each)."""
        assert self._sock is not None and self._loop is not None
        self._out += data
        if not self._flushing:
            self._flushing = True
            self._loop.call_soon(self._writable)

    def _writable(self) -> None:
        """Write what waits; the rest when the socket takes more."""
        self._flushing = False
        if self._sock is None or self._loop is None or not self._out:
            return
        try:
            sent = self._sock.send(self._out)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._lost()
            return
        del self._out[:sent]
        if self._out and not self._waiting_writable:
            self._waiting_writable = True
            self._loop.add_writer(self._sock.fileno(), self._writable)
        elif not self._out and self._waiting_writable:
            self._waiting_writable = False
            self._loop.remove_writer(self._sock.fileno())

    def serve(self) -> None:
        """Read what the spawner said and write what waits for it, now (not in a later
        turn of the event loop): called while the engine records a batch of events, so that
        an end read here starts the next attempt of the runtime's line at once."""
        if self._sock is None:
            return
        self._readable()
        if self._out and not self._waiting_writable:
            self._writable()

    def _readable(self) -> None:
        if self._sock is None:  # closed by an earlier call of this turn (serve, then here)
            return
        try:
            data = self._sock.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._lost()
            return
        assert self._loop is not None
        self._heard = self._loop.time()
        if self._stall_logged:
            self._stall_logged = False
            log.warning("%s: the local spawner (pid %s) answers again", self.name, self._pid)
        for message in self._frames.feed(data):
            kind, key = message[0], message[1]
            if kind == "ended":
                # The last: whether a stop reached it while it ran (see local_spawner).
                signalled = len(message) < 7 or bool(message[6])
                ended_at = message[7] if len(message) > 7 else None
                started_at = message[8] if len(message) > 8 else None
                self._on_ended(
                    key,
                    message[2],
                    message[3],
                    message[4],
                    bool(message[5]),
                    signalled,
                    ended_at,
                    started_at,
                )
            elif kind == "started":
                self._unanswered = max(0, self._unanswered - 1)
                self._on_started(key, message[2])
            elif kind == "failed":
                self._unanswered = max(0, self._unanswered - 1)
                self._on_failed(key, message[2], len(message) > 3 and bool(message[3]))
            elif kind == "warning":
                log.warning("%s: local spawner: %s", self.name, message[2])

    def _lost(self) -> None:
        """The spawner died (or its link broke): what it was asked is unknown."""
        if self._sock is None:
            return
        log.error("%s: the local spawner (pid %s) is gone", self.name, self._pid)
        self._close()
        self._on_lost()

    def _close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        self._unanswered = 0
        self._stall_logged = False
        if self._sock is not None:
            if self._out:  # a request or signal of this very turn: not dropped
                with contextlib.suppress(OSError):
                    del self._out[: self._sock.send(self._out)]
            if self._loop is not None:
                self._loop.remove_reader(self._sock.fileno())
                if self._waiting_writable:
                    self._loop.remove_writer(self._sock.fileno())
            self._waiting_writable = self._flushing = False
            self._out.clear()
            self._sock.close()
            self._sock = None
        pid, self._pid = self._pid, None
        if pid is not None:
            _left.add(pid)
            reap_left()

    async def close(self, *, busy: bool) -> None:
        """Close the link: the spawner records what still runs, then leaves. When it has
        nothing running it leaves at once, and is reaped here."""
        pid = self._pid
        self._close()
        if pid is None or busy:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + EXIT_WAIT
        pause = 0.0005  # it leaves within a few ms: an `akoflow run` waits for it at its end
        while pid in _left and loop.time() < deadline:
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.005)
            reap_left()


__all__ = ["SpawnerLink", "reap_left"]
