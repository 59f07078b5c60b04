"""How ends reach the engine: pushed, not polled. One thread per runtime follows the daemon's
event stream (``die`` of containers with a key label); after every (re)connection it
inspects the containers it tracks, so an end during a disconnection is not missed. Each end
is written to the attempt's ``.exit`` record before it is reported."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import docker.errors

from akoflow.runtimes.backoff import Backoff
from akoflow.runtimes.docker import files
from akoflow.runtimes.docker.container import die_events_filter
from akoflow.runtimes.docker.daemon import Daemon, explain
from akoflow.runtimes.docker.status import DieEvent, End, die_event, ended, succeeded_at_die

log = logging.getLogger(__name__)

WRAPPER_LOG_TAIL = 50  # lines of the container's own output kept when it fails
UNREACHABLE = "it ended while the docker daemon was unreachable"


class Tracked:
    """A container the runtime follows until it ends."""

    __slots__ = (
        "cancelled",
        "cid",
        "gate",
        "held",
        "key",
        "known",
        "prefix",
        "reached",
        "started",
        "stopping",
        "waiting",
    )

    def __init__(self, key: str, cid: str, prefix: str, started: float | None) -> None:
        self.key = key
        self.cid = cid
        self.prefix = prefix  # attempt files: prefix + ".sh", ".out/stdout", ".exit"
        self.started = started  # monotonic start, for the first CPU sample (None: adopted)
        self.cancelled = False
        # Every stop ever sent to it went through this runtime: it started it (an adopted
        # container may have been stopped by an engine before this one).
        self.known = True
        # A stop of this runtime may have reached it while it ran (any stop the daemon did
        # not answer "not running"): its end is then no success, whatever its exit code.
        self.reached = False
        self.stopping = 0  # stops sent and not answered yet
        self.waiting: End | None = None  # its end, read while a stop was not answered yet
        # While adopt() has not returned, the engine does not know the key yet: an end seen
        # meanwhile waits here and is reported right after.
        self.held: list[End] | None = None
        self.gate: int | None = None  # holds the go until the wrapper reads it (see .gate)


class EndWatcher:
    """The thread that sees containers end. ``tracked`` is the runtime's (changed on the
    event loop only); ``report`` is called from the thread with each end, once recorded."""

    def __init__(
        self,
        daemon: Daemon,
        tracked: dict[str, Tracked],
        report: Callable[[Tracked, End], None],
    ) -> None:
        self._daemon = daemon
        self._tracked = tracked
        self._report = report
        self._stopping = threading.Event()
        self._stream: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(
                target=self._run, name=f"akoflow-{self._daemon.name}-events", daemon=True
            )
            self._thread.start()

    def stop(self) -> threading.Thread | None:
        """Ask the thread to end, without waiting: the open stream is closed under it. The
        thread is returned, for the caller to join."""
        self._stopping.set()
        stream = self._stream
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()
        thread, self._thread = self._thread, None
        return thread

    def recheck(self, job: Tracked, note: str | None = None) -> None:
        """Thread: collect ``job`` if it is no longer running (its event may be gone)."""
        info = self._daemon.inspect(job.cid)
        if info is None or not info["State"].get("Running"):
            self._collect(job, info, None, note)

    def _run(self) -> None:
        """Follow ``die`` events; reconnect (and re-inspect what is tracked) when the stream
        drops, e.g. while the daemon restarts."""
        since = int(time.time()) - 2  # replay a little: the stream may start after a start
        backoff, unreachable = Backoff(0.1, 2.0), False
        while not self._stopping.is_set():
            try:
                self._daemon.probe()
                stream = self._daemon.client().events(
                    since=since, filters=die_events_filter(), decode=True
                )
            except Exception as exc:
                log.debug("docker events of %s: %s", self._daemon.name, exc)
                unreachable = True
                self._stopping.wait(backoff.next())
                continue
            self._stream, connected = stream, time.monotonic()
            try:
                if self._stopping.is_set():
                    break
                self._sweep(UNREACHABLE if unreachable else None)
                unreachable = False
                for raw in stream:
                    event = die_event(raw)
                    if event.time is not None:
                        since = max(since, event.time)
                    job = self._tracked.get(event.key) if event.key is not None else None
                    if job is not None and job.cid == event.cid:
                        success = succeeded_at_die(event)
                        if success is not None:  # nothing more to learn: no inspect
                            self._record(job, success)
                        else:
                            self._collect(job, self._daemon.inspect(job.cid), event)
            except Exception as exc:
                log.debug("docker event stream of %s ended: %s", self._daemon.name, exc)
            finally:
                self._stream = None
                with contextlib.suppress(Exception):
                    stream.close()
            if time.monotonic() - connected < 1.0:  # a stream that keeps failing: back off
                self._stopping.wait(backoff.next())
            else:
                backoff.reset()

    def _sweep(self, note: str | None) -> None:
        for job in self._tracked.copy().values():  # changed on the loop meanwhile
            try:
                self.recheck(job, note)
            except docker.errors.APIError as exc:  # this one only; a lost daemon propagates
                log.warning("cannot inspect the container of %s: %s", job.key, explain(exc))

    def _collect(
        self,
        job: Tracked,
        info: dict[str, Any] | None,
        event: DieEvent | None,
        note: str | None = None,
    ) -> None:
        """Record how a container ended, then report it."""
        end = ended(info, event, note)
        if end is None:
            return
        if info is not None and end.code:
            self._keep_wrapper_output(job)
        self._record(job, end)

    def _record(self, job: Tracked, end: End) -> None:
        """Write the end to the attempt's exit record, then report it."""
        try:
            files.write_exit_record(job.prefix, end.code, end.oom)
        except OSError as exc:  # e.g. the run dir was deleted: still report the end
            log.warning("cannot record the exit code of %s: %s", job.key, exc)
        self._report(job, end)

    def _keep_wrapper_output(self, job: Tracked) -> None:
        """What the container itself printed (the wrapper's own errors, e.g. a read-only
        output dir) goes to the end of the attempt's stderr."""
        with contextlib.suppress(Exception):
            data = self._daemon.client().logs(
                job.cid, stdout=True, stderr=True, tail=WRAPPER_LOG_TAIL
            )
            if data:
                files.append_stderr(job.prefix, data)
