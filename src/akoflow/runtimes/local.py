"""Local runtime: each activity is a detached process group running bash on its script (or,
for a script that is one plain command, that command's program: :mod:`.plain_command`).

- The attempts are started by the runtime's spawner (:mod:`akoflow.runtimes.local_spawner`), a
  small process of its own with a clean environment: activities are never children of the
  engine (whose environment may hold secrets), and the fork and exec run off its event loop.
- The script is a file of the attempt (``<attempt>.sh``, 0600), written whole under a temporary
  name and renamed before bash is started, so a bash never reads a partial or empty script and
  "succeeds"; nothing from the workflow is ever put on a command line. It runs as
  ``bash <attempt>.sh`` would, in one process: its own ``$$``, ``$0``, traps and options. The
  names bash acts on at start-up (:data:`BASH_STARTUP_NAMES`, ``BASH_FUNC_*``) are removed
  from its environment, whatever the workflow or the engine's environment says.
- Each attempt runs in its own cgroup v2 where the engine may create one
  (:mod:`akoflow.runtimes.cgroups`): what it starts in a new session dies with it too.
- Crash safety: the spawner claims the attempt (exclusive create of its ``.exit`` file) before
  the script starts and records its exit code there; it outlives an engine killed with
  SIGKILL, so a restarted engine adopts a process still running, collects the exit code of one
  that ended, or proves that one never started (by claiming the file first). A spawner that
  dies is replaced; what it was asked to start and never claimed is proved never started the
  same way and runs as a new attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import functools
import logging
import os
import shutil
import signal
import socket
import stat
import time
from collections.abc import Mapping, Sequence
from typing import Any

import psutil

from akoflow.config import activity_environ
from akoflow.room import has_room, host_short
from akoflow.runtimes import cgroups, spawner_start
from akoflow.runtimes.base import (
    MAX_PARALLEL_LIMIT,
    Adopted,
    Health,
    JobSpec,
    Metrics,
    NodeInfo,
    Outcome,
    Runtime,
    RuntimeUnavailable,
    SubmitError,
)
from akoflow.runtimes.local_spawner import (
    ENV_ENTRY_MAX,
    env_entry_size,
    spawn_error,
    write_private_file,
)
from akoflow.runtimes.plain_command import plain_argv
from akoflow.runtimes.spawner_link import SpawnerLink

log = logging.getLogger(__name__)

ENGINE_CLAIM = "engine\n"
UNREADABLE = "unreadable\n"  # what a record that is no regular file reads as
# A record caught while being written is read again, this many times at most, this apart.
TORN_READS = 20
TORN_READ_PAUSE = 0.0005
TERM_GRACE_SECONDS = 5.0
STREAMS = ("stdout", "stderr")
LOG_READ_MAX = 8 << 20  # bytes per stream and call: big outputs arrive in several reads
CGROUP_RELEASE_TRIES = 250  # x CGROUP_RELEASE_DELAY: time for killed processes to be gone
CGROUP_RELEASE_DELAY = 0.02
RECORD_WAIT = 10.0  # s: how long a living spawner may take to record an end it saw
RECORD_POLL = 0.01
DEFAULT_SPAWNERS = spawner_start.DEFAULT_COUNT  # {NAME}_SPAWNERS
# A line of attempts of its own while attempts are short (see LocalRuntime._waiting):
# {NAME}_QUEUE_AHEAD's default: 24 x MAX_PARALLEL, at most QUEUE_AHEAD_MAX (a wide run of
# `true`s on 2 CPUs, MAX_PARALLEL 4: 2.5% faster with 96 than with 32, no better with 192)
QUEUE_AHEAD_FACTOR = 24
QUEUE_AHEAD_MAX = 1000
SHORT_ATTEMPT = 0.5  # s: ends this soon after their start keep the line open
_OFF = ("0", "false", "no", "off")  # {NAME}_CGROUPS: no cgroups, the session only
_ON = ("1", "true", "yes")
CGROUP_SWEEP_AGE = 600.0  # empty attempt cgroups older than this are removed at start
# Variables bash acts on at start-up, before the script's first line: they would run other
# code first (BASH_ENV; ENV in POSIX mode), change how it runs (POSIXLY_CORRECT, SHELLOPTS:
# posix, noexec, xtrace with a PS4 of $(...)) or its options (BASHOPTS). With these gone, PS4
# and BASH_XTRACEFD are inert until the script's own set -x.
BASH_STARTUP_NAMES = frozenset({"BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "POSIXLY_CORRECT"})
# Exported functions (BASH_FUNC_name%%=...) would replace the script's builtins.
BASH_FUNCTION_PREFIX = "BASH_FUNC_"


def without_bash_startup_names(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` without the variables that act on bash before the script runs."""
    return {
        k: v
        for k, v in env.items()
        if k not in BASH_STARTUP_NAMES and not k.startswith(BASH_FUNCTION_PREFIX)
    }


def _process_umask() -> int:
    """This process's umask, read without changing it (os.umask would, for a moment, for
    every thread)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def unfit_environment(env: Mapping[str, str]) -> str | None:
    """Why no process could be started with ``env`` (checked before anything is claimed),
    or None."""
    for k, v in env.items():
        if not k or "=" in k or "\0" in k or "\0" in v:
            return spawn_error(ValueError("embedded null byte"), dict(env))
        if len(k) + len(v) > ENV_ENTRY_MAX // 4 and (env_entry_size(k, v) > ENV_ENTRY_MAX):
            return spawn_error(OSError(errno.E2BIG, "Argument list too long"), dict(env))
    return None


class _Tracked:
    __slots__ = ("began", "cancelled", "cgroup", "key", "link", "pid", "pidfd", "prefix", "tries")

    def __init__(
        self, key: str, pid: int, pidfd: int, prefix: str, cgroup: str | None, link: int = -1
    ) -> None:
        self.key = key
        self.link = link  # the spawner (index) whose child it is; -1: adopted
        self.pid = pid
        self.pidfd = pidfd  # -1: the spawner's child, whose end the spawner reports
        self.prefix = prefix  # attempt files are prefix + ".stdout", ".stderr", ".exit"
        self.cgroup = cgroup  # the attempt's cgroup directory, None: its session only
        self.cancelled = False
        self.tries = 0  # waits for a living spawner to record an end (adopted attempts)
        self.began = time.monotonic()  # when this runtime learnt it runs


class _Record:
    """What an attempt's ``.exit`` file says: ``engine`` (claimed by an engine: never ran),
    ``spawning now by R`` (claimed by spawner R, not started yet; ``spawning by R`` from an
    older one), ``pid C by R`` (started; R records its end), ``pid C`` (an older engine's
    prelude), ``exit N``; None when absent. A read that caught a line being written reads
    as none of them (not :attr:`whole`)."""

    __slots__ = ("code", "engine", "pid", "recorder", "text")

    def __init__(self, text: str | None) -> None:
        self.text = text
        self.engine = text == ENGINE_CLAIM
        self.code: int | None = None
        self.pid: int | None = None
        self.recorder: int | None = None
        # The first line is the record: an end is written over the claim in place and the
        # file cut after it, so until the cut the claim's tail follows (local_spawner). A
        # line without its newline was caught being written: no record (read again).
        line, newline, _ = (text or "").partition("\n")
        words = line.split() if newline else []
        if len(words) == 2 and words[0] == "exit" and words[1].lstrip("-").isdigit():
            self.code = int(words[1])
        elif len(words) in (2, 4) and words[0] == "pid" and words[1].isdigit():
            self.pid = int(words[1])
        if len(words) in (3, 4) and words[-2] == "by" and words[-1].isdigit():
            self.recorder = int(words[-1])

    @property
    def spawning(self) -> bool:
        text = self.text
        return (
            text is not None
            and self.recorder is not None
            and text.startswith(("spawning now by ", "spawning by "))
        )

    @property
    def whole(self) -> bool:
        """One of the records the spawner or an engine writes, whole (or no file at all)."""
        return (
            self.text is None
            or self.engine
            or self.code is not None
            or self.pid is not None
            or self.spawning
            or self.text == UNREADABLE
        )


def _mtime(path: str) -> float | None:
    """When ``path`` was last written: an attempt's script (the one bash runs) is written
    by the spawner just before bash starts, its ``.exit`` record as bash is reaped."""
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def _read_record(prefix: str) -> _Record:
    """The attempt's record, read again while a read catches a line being written (the
    spawner rewrites its line in place; a write is done in microseconds, unless its writer
    was preempted or killed in it: then the last read is what there is)."""
    record = _Record(_read_exit_text(prefix))
    for _ in range(TORN_READS):
        if record.whole:
            break
        time.sleep(TORN_READ_PAUSE)
        record = _Record(_read_exit_text(prefix))
    return record


def _read_exit_text(prefix: str) -> str | None:
    try:
        # Non-blocking, a regular file only: a hostile script may have put a FIFO there,
        # whose open (or read) would wait for a writer forever.
        fd = os.open(prefix + ".exit", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError:  # made a directory, say, by a hostile script: unreadable, not absent
        return UNREADABLE
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return UNREADABLE
        raw = os.read(fd, 256)
    except OSError:
        return UNREADABLE
    finally:
        os.close(fd)
    # Anything but the spawner's own ASCII lines reads as no exit code at all (lost).
    return raw.decode("ascii", "replace")


def _written_before_leaving(prefix: str, record: _Record) -> _Record:
    """``record`` with no end, read again if its spawner has left since: a spawner writes
    the end, then leaves at once (between a read and the look at the spawner, the end was
    missed and the attempt counted lost)."""
    if record.code is None and not _spawner_alive(record.recorder):
        return _read_record(prefix)
    return record


ROOM_PROBE_BYTES = 64 * 1024
# The files a start makes before bash runs: its claim, its script and its two outputs. A
# single file passed with a free inode or two left where a start needs four: READY every
# health check, its attempts lost again at once, for ever (READY_TIMEOUT never reached).
ROOM_PROBE_FILES = (".exit", ".sh", ".stdout", ".stderr")


def _no_room_to_claim(job: JobSpec, exc: OSError) -> OSError | RuntimeUnavailable:
    """What an engine's claim of an attempt that never started raises when it cannot be
    made: for want of room, a transient failure (the adoption is asked again after a health
    period, and the run waits), else the error itself."""
    if not host_short(exc):
        return exc
    return RuntimeUnavailable(
        f"cannot claim attempt {job.key} (it never started): {exc.strerror or exc}; "
        "it is claimed once there is room"
    )


def _engine_claim(prefix: str) -> bool:
    """Claim the attempt for the engine (an exclusive create of its ``.exit`` file, as a
    spawner claims it before a start): True when won, and then the attempt never ran its
    script and never will; False when a spawner claimed it first. Raises OSError when the
    claim cannot be written (no room): then it is left unclaimed."""
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    try:
        fd = os.open(prefix + ".exit", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    try:
        with os.fdopen(fd, "w") as f:
            f.write(ENGINE_CLAIM)
    except OSError:
        # Given up, as a spawner gives up a claim it could not write: left empty, it read
        # later as an attempt whose end was lost (failed, a retry spent). Meanwhile a
        # spawner found it taken and gave up too: the attempt is claimed by no one and
        # started by no one, and the next adoption claims it.
        with contextlib.suppress(OSError):
            os.unlink(prefix + ".exit")
        raise
    return True


def _spawner_alive(pid: int | None) -> bool:
    """Whether ``pid`` is a living local spawner (it then records what its children do)."""
    if pid is None:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return str(spawner_start.SPAWNER) in proc.cmdline()
    except (psutil.Error, OSError):
        return False


def _claim_writer(prefix: str) -> int | None:
    """A living spawner holding the attempt's ``.exit`` open, or None. Read when the record
    is no whole line: a spawner stopped or preempted between the exclusive create of the
    file and the write of its claim (an older one's ``spawning by R`` too) leaves it empty
    for as long as it stays so, and may still write its claim and start the attempt."""
    try:
        record = os.stat(prefix + ".exit")
    except OSError:
        return None
    for proc in psutil.process_iter():
        try:
            if str(spawner_start.SPAWNER) not in proc.cmdline():
                continue
            fds = os.listdir(f"/proc/{proc.pid}/fd")
        except (psutil.Error, OSError):
            continue
        for fd in fds:
            try:
                held = os.stat(f"/proc/{proc.pid}/fd/{fd}")
            except OSError:
                continue
            if (held.st_dev, held.st_ino) == (record.st_dev, record.st_ino):
                return proc.pid if _spawner_alive(proc.pid) else None
    return None


def _kill_attempt_processes(prefix: str) -> None:
    """SIGKILL every process still carrying this attempt in its start-up environment (an
    attempt's processes inherit ``AKOFLOW_ATTEMPT_FILES``): found by the attempt, not by a
    PID that may have been reused since."""
    for proc in _attempt_processes(prefix):
        with contextlib.suppress(psutil.Error, OSError):
            proc.kill()


def _attempt_processes(prefix: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("AKOFLOW_ATTEMPT_FILES") == prefix:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def _cgroup_of(pid: int, prefix: str) -> str | None:
    """The cgroup of the attempt ``prefix`` that process ``pid`` is in (this engine may run
    in another cgroup than the one that started it); None when it is in no cgroup of that
    attempt (a pid reused since by another attempt's process names that attempt's cgroup,
    which is not this one's to kill)."""
    path = cgroups.process_cgroup_dir(pid)
    if path is None or os.path.basename(path) != os.path.basename(
        cgroups.attempt_cgroup("/", prefix)
    ):
        return None
    return path


def _signal_name(number: int) -> str:
    """``SIGTERM``, ``SIGRTMIN+3``...: every number the kernel may report has a name here
    (Python's Signals enum lacks the real-time ones between SIGRTMIN and SIGRTMAX)."""
    try:
        return signal.Signals(number).name
    except ValueError:
        if signal.SIGRTMIN < number < signal.SIGRTMAX:
            return f"SIGRTMIN+{number - signal.SIGRTMIN}"
        return f"signal {number}"


def _is_attempt_process(pid: int, prefix: str, recorder: int | None) -> bool:
    """Whether ``pid`` is still the attempt's process (guards against PID reuse): a child of
    the spawner that recorded it (whose pid cannot be reused before that spawner reaps it),
    or a process carrying this attempt in its environment. The parent counts first: a script
    that ran ``exec env -i prog`` carries nothing in its environment and is still the
    attempt, running (it was taken for ended, stopped or left running beside its retry)."""
    try:
        proc = psutil.Process(pid)
        if recorder is not None and proc.ppid() == recorder:
            return True
        return bool(proc.environ().get("AKOFLOW_ATTEMPT_FILES") == prefix)
    except (psutil.Error, OSError):
        return False


async def _stop_stalled_spawner(pid: int) -> None:
    """SIGKILL a spawner (an earlier engine's) that holds an attempt's claim without starting
    it, and wait until it is gone: alive, it could start the attempt at any later instant,
    after this engine counted it lost and beside its retry."""
    log.warning(
        "local spawner %s claimed an attempt and did not start it in %gs: killed", pid, RECORD_WAIT
    )
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)
    for _ in range(int(RECORD_WAIT / RECORD_POLL)):
        if not _spawner_alive(pid):
            return
        await asyncio.sleep(RECORD_POLL)


class LocalRuntime(Runtime):
    kind = "local"
    instant_submit = True  # a request to the spawner on this host; no network round trip
    instant_logs = True  # the attempt's own files
    default_max_parallel = max(2, (os.cpu_count() or 1) * 2)
    # The attempt's file bash runs (``bash <prefix><suffix>``), written by the spawner as it
    # starts it: its time is the attempt's start (an adapter may write other files earlier,
    # at its submit, which can precede the start by a wait in the runtime's line).
    script_suffix = ".sh"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._jobs: dict[str, _Tracked] = {}
        # key -> (prefix, cgroup, spawner index): asked, not started yet
        self._starting: dict[str, tuple[str, str | None, int]] = {}
        self._cancelled_early: set[str] = set()  # cancelled while in _starting
        self._bash = shutil.which("bash")
        self._loop: asyncio.AbstractEventLoop | None = None
        # psutil needs the same Process object between samples to compute CPU percent.
        self._procs: dict[int, psutil.Process] = {}
        self._base_env: dict[str, str] = {}
        self._cgroup_base: str | None = None
        self._releasing: set[str] = set()  # ended attempts' cgroups, killed, not yet empty
        self._umask = 0o022
        self._links: list[SpawnerLink] = []
        self._next_link = 0
        # Attempts handed over beyond MAX_PARALLEL (key -> prefix, cgroup, request), sent
        # to a spawner as soon as a running one ends, in the turn its end is read: while
        # attempts last milliseconds, the engine's round trip (record the end, release, pick
        # the next, commit) between an end and the next start left the CPUs idle for much
        # of the time. Only while the last MAX_PARALLEL ends came within SHORT_ATTEMPT of
        # their start: long attempts would show RUNNING while they wait, for nothing.
        self._waiting: dict[str, tuple[str, str | None, tuple[Any, ...]]] = {}
        self._running_cap = self.default_max_parallel
        self._ahead = 0  # {NAME}_QUEUE_AHEAD
        self._short_ends = 0  # ends in a row within SHORT_ATTEMPT of their start
        # The host was short of room at a start (a full disk): where the attempt's files go,
        # and why. NOT_READY until a health check finds room there.
        self._short_of: tuple[str, str] | None = None

    @property
    def queue_ahead(self) -> int:
        return self._ahead if self._short_ends >= self._running_cap else 0

    @property
    def line_length(self) -> int:
        return len(self._waiting)

    def in_line(self, key: str) -> bool:
        return key in self._waiting

    def leave_line(self, key: str) -> bool:
        if self._waiting.pop(key, None) is None:
            return False
        assert self._loop is not None
        outcome = Outcome(False, None, "stopped before it started")
        self._loop.call_soon(self.events.job_finished, key, outcome)
        return True

    def serve(self) -> None:
        # Only while attempts wait in the line: the ends read here start them.
        if not self._waiting:
            return
        for link in self._links:
            try:
                link.serve()
            except Exception:  # as the event loop's reader would: said, and the run goes on
                log.exception("%s: reading the local spawner failed", self.name)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._running_cap = self.max_parallel
        self._ahead = self.config.get_int(
            "QUEUE_AHEAD",
            min(self._running_cap * QUEUE_AHEAD_FACTOR, QUEUE_AHEAD_MAX),
            minimum=0,
            maximum=MAX_PARALLEL_LIMIT,
        )
        self._base_env = without_bash_startup_names(activity_environ())
        for name in ("AKOFLOW_CGROUP", "AKOFLOW_UMASK"):  # older engines' names: never passed
            self._base_env.pop(name, None)
        self._umask = _process_umask()
        wanted = self.config.get_choice("CGROUPS", ("auto", "on", *_ON, *_OFF), "auto")
        self._cgroup_base = None if wanted in _OFF else cgroups.usable_base()
        if self._cgroup_base is None:
            log.debug("%s: no writable cgroup v2 here; attempts are killed by session", self.name)
        else:
            cgroups.sweep(self._cgroup_base, CGROUP_SWEEP_AGE)
        # Spawners' own environment is empty: they are the parents of every attempt. More
        # than one: a start waits for bash's exec, and they start attempts side by side.
        count = self.config.get_int("SPAWNERS", DEFAULT_SPAWNERS, minimum=1, maximum=64)
        self._links = [
            SpawnerLink(
                self.name,
                {},
                self._spawned,
                self._spawn_failed,
                self._spawner_ended,
                functools.partial(self._spawner_lost, index),
                self._base_env,
            )
            for index in range(count)
        ]

    async def stop(self) -> None:
        # Running processes stay alive on purpose: a restarted engine adopts them (the
        # spawner records the ends of its own meanwhile).
        loop = self._loop
        busy = {job.link for job in self._jobs.values() if job.pidfd < 0}
        busy.update(link for _, _, link in self._starting.values())
        for job in list(self._jobs.values()):
            if job.pidfd >= 0:
                if loop is not None:
                    loop.remove_reader(job.pidfd)
                os.close(job.pidfd)
        self._jobs.clear()
        self._starting.clear()
        self._waiting.clear()  # never sent: a resumed engine claims and starts them
        await asyncio.gather(
            *(link.close(busy=index in busy) for index, link in enumerate(self._links))
        )
        # Ended attempts' cgroups go with this engine: their killed processes are gone soon.
        for _ in range(CGROUP_RELEASE_TRIES):
            if not self._releasing:
                break
            await asyncio.sleep(CGROUP_RELEASE_DELAY)
            self._releasing = {path for path in self._releasing if not cgroups.remove(path)}

    # ------------------------------------------------------------------ submit

    async def submit(self, job: JobSpec) -> dict[str, Any]:
        run = job.activity.run
        env = {**job.env, **job.activity.env}
        return await self._spawn(job, env, run.encode(), plain=plain_argv(run))

    async def _spawn(
        self,
        job: JobSpec,
        env_vars: Mapping[str, str],
        script: bytes,
        args: Sequence[str] = (),
        *,
        plain: list[str] | None = None,
    ) -> dict[str, Any]:
        """Start ``bash SCRIPT ARGS...`` for the attempt: detached, claimed, tracked.

        The local runtime's script is the activity's; another adapter (singularity) passes a
        fixed script such as ``"$@"`` and its launcher's argv as ``args``, and so gets the
        same exit-claim, adoption, end events, metrics and log files. ``plain``: the script
        is this one plain command, which the spawner may start without bash.
        """
        if self._bash is None:
            raise SubmitError("bash not found on PATH")
        prefix = str(job.attempt_prefix)
        if self.launched(job.key):
            return {"prefix": prefix}  # asked again: the same attempt, nothing started
        if os.path.lexists(prefix + ".exit"):
            # Idempotent by key: the attempt was launched once (or claimed by the engine).
            # The spawner's exclusive claim of this file is what really guards it.
            raise SubmitError(f"attempt {job.key} was already launched once; not starting it again")
        # What differs from the base environment (the spawner holds that one).
        env = without_bash_startup_names(env_vars)
        env["AKOFLOW_ATTEMPT_FILES"] = prefix
        env["AKOFLOW_WORKDIR"] = workdir = os.path.abspath(job.data_dir)
        env.pop("AKOFLOW_CGROUP", None)
        env.pop("AKOFLOW_UMASK", None)
        unfit = unfit_environment(env)
        if unfit is not None:
            raise SubmitError(f"cannot start bash for {job.key}: {unfit}")
        cgroup = self._attempt_cgroup(prefix)
        assert self._links, "LocalRuntime.start() was not awaited"
        request = (
            job.key,
            prefix,
            script,
            prefix + self.script_suffix,
            self._bash,
            ["bash", prefix + self.script_suffix, *args],
            env,
            workdir,
            self._umask,
            cgroup,
            plain,
        )
        if self._has_room():
            self._send(job.key, prefix, cgroup, request)
        else:
            self._waiting[job.key] = (prefix, cgroup, request)
        return {"prefix": prefix}

    def _send(self, key: str, prefix: str, cgroup: str | None, request: tuple[Any, ...]) -> None:
        link = self._next_link
        self._next_link = (link + 1) % len(self._links)
        # Starting once asked only: a spawner that could not be started (one that died is
        # replaced here) raises, and an attempt left "starting" would hold a place of
        # MAX_PARALLEL for ever, and the line behind it.
        self._links[link].spawn(request)
        self._starting[key] = (prefix, cgroup, link)

    def _has_room(self) -> bool:
        """Fewer than MAX_PARALLEL attempts are starting or running."""
        return len(self._starting) + len(self._jobs) < self._running_cap

    def _start_waiting(self) -> None:
        """Send waiting attempts to the spawners while fewer than MAX_PARALLEL run."""
        while self._waiting and self._has_room():
            key = next(iter(self._waiting))
            prefix, cgroup, request = self._waiting.pop(key)
            try:
                self._send(key, prefix, cgroup, request)
            except Exception as exc:  # no spawner can be started (out of processes, files)
                # It fails as its submit would have; raised here (a callback that read an
                # end), it left the attempt and the line behind it waiting for ever.
                log.error("%s: cannot start %s: %s", self.name, key, exc)
                self.events.job_finished(key, Outcome(False, None, f"cannot start it: {exc}"))
                continue
            self.events.job_started(key)

    def launched(self, key: str) -> bool:
        """Whether this runtime started (or is starting) the attempt ``key``."""
        return key in self._jobs or key in self._starting or key in self._waiting

    def _spawned(self, key: str, pid: int) -> None:
        """The spawner started the attempt (called in the turn its answer is read)."""
        starting = self._starting.pop(key, None)
        if starting is None:
            return  # stopped meanwhile: the spawner records it, a resumed engine adopts it
        prefix, cgroup, link = starting
        tracked = self._jobs[key] = _Tracked(key, pid, -1, prefix, cgroup, link)
        if key in self._cancelled_early:
            self._cancelled_early.discard(key)
            tracked.cancelled = True
        self.announce_process(key, pid=pid)

    def _spawn_failed(self, key: str, reason: str, host_short: bool = False) -> None:
        """The spawner could not start the attempt: it never ran (its claim was undone). When
        the host was short of room, the attempt costs no retry and waits for room."""
        starting = self._starting.pop(key, None)
        if starting is None:
            return
        prefix, cgroup, _ = starting
        self._cancelled_early.discard(key)
        if cgroup is not None:
            cgroups.remove(cgroup)
        if not host_short:
            self._start_waiting()
            self.events.job_finished(key, Outcome(False, None, reason))
            return
        self._short_of = (os.path.dirname(prefix), reason)
        log.warning("%s: %s; its attempts wait until there is room", self.name, reason)
        # The attempts in line would go to the same full disk: given back too, never started
        # (last first: the engine puts each back at the head of the queue, which keeps their
        # order, this one first). Kept here instead, they would wait on a runtime the engine
        # may give up on (READY_TIMEOUT fails the work it holds, not what is in line).
        held = list(self._waiting)
        self._waiting.clear()
        short = Outcome(False, None, reason, never_started=True, short_of_room=True)
        for other in reversed(held):
            self.events.job_finished(other, short)
        self.events.job_finished(key, short)

    def _spawner_ended(
        self,
        key: str,
        code: int,
        cpu: float,
        rss: int | None,
        cgroup_removed: bool,
        signalled: bool,
        ended_at: float | None,
        started_at: float | None = None,
    ) -> None:
        job = self._jobs.get(key)
        if job is None or job.pidfd >= 0:
            return
        del self._jobs[key]
        if job.cgroup is not None and not cgroup_removed:
            self._release_cgroup(job.cgroup)
        if time.monotonic() - job.began < SHORT_ATTEMPT:
            self._short_ends += 1
        else:
            self._short_ends = 0
        self._start_waiting()
        self.events.job_finished(
            key,
            self._outcome(
                code,
                job.cancelled and signalled,
                cpu,
                rss,
                ended_at=ended_at,
                started_at=started_at,
            ),
        )

    def _spawner_lost(self, link: int) -> None:
        """A spawner died: the ends of its children can no longer be recorded. Each is
        stopped now and counts as ended with its exit code lost (a failure: its retry, if
        any, never runs beside it). What it was asked to start and had not claimed yet is
        claimed by the engine: it never ran and never will, and runs again as a new attempt
        (no retry spent). One it had claimed may have started: lost, as a running one. New
        attempts get a new spawner."""
        for job in [j for j in self._jobs.values() if j.pidfd < 0 and j.link == link]:
            del self._jobs[job.key]
            self._finish_unwatched(job.key, job.prefix, job.cgroup)
        for key, (prefix, cgroup, owner) in list(self._starting.items()):
            if owner == link:
                del self._starting[key]
                self._cancelled_early.discard(key)
                if not self._never_started(key, prefix, cgroup):
                    self._finish_unwatched(key, prefix, cgroup)
        self._start_waiting()

    def _never_started(self, key: str, prefix: str, cgroup: str | None) -> bool:
        """End an attempt a lost spawner was asked to start as never started, if the
        engine's claim proves it (see :meth:`_spawner_lost`), or if the claim could not be
        made for want of room (then it waits for room, the runtime NOT_READY)."""
        short_of_room = False
        try:
            claimed = _engine_claim(prefix)
        except OSError as exc:
            log.warning("%s: cannot claim %s after its spawner died: %s", self.name, key, exc)
            if not host_short(exc):
                return False
            # No room for the claim: none is left (the spawner's would have been there
            # first), and its spawner is gone: it never ran and never will. It waits for
            # room, as one whose spawner had no room to claim it (see _spawn_failed).
            reason = f"cannot claim attempt {key}: {spawn_error(exc, {})}"
            self._short_of = (os.path.dirname(prefix), reason)
            claimed = short_of_room = True
        else:
            reason = "its local spawner died before starting it"
        if not claimed:
            return False
        if cgroup is not None:
            self._release_cgroup(cgroup)
        outcome = Outcome(False, None, reason, never_started=True, short_of_room=short_of_room)
        assert self._loop is not None
        self._loop.call_soon(self.events.job_finished, key, outcome)
        return True

    def _finish_unwatched(self, key: str, prefix: str, cgroup: str | None) -> None:
        if cgroup is not None:
            self._release_cgroup(cgroup)
        _kill_attempt_processes(prefix)
        code = _read_record(prefix).code
        assert self._loop is not None
        self._loop.call_soon(self.events.job_finished, key, self._outcome(code, False, None, None))

    def _attempt_cgroup(self, prefix: str) -> str | None:
        """The attempt's cgroup (the spawner makes it), or None (no cgroups here)."""
        if self._cgroup_base is None:
            return None
        return cgroups.attempt_cgroup(self._cgroup_base, prefix)

    def _release_cgroup(self, path: str, tries: int = 0) -> None:
        """Kill what is left in an ended attempt's cgroup and remove it once empty."""
        if cgroups.remove(path):
            self._releasing.discard(path)
            return
        cgroups.kill(path)
        if tries >= CGROUP_RELEASE_TRIES or self._loop is None:
            self._releasing.discard(path)
            log.warning("%s: cgroup %s still has processes; left in place", self.name, path)
            return
        self._releasing.add(path)
        self._loop.call_later(CGROUP_RELEASE_DELAY, self._release_cgroup, path, tries + 1)

    def _track(self, key: str, pid: int, prefix: str, *, cgroup: str | None) -> _Tracked | None:
        """Follow a process that is not the spawner's (adopted after a restart) by its pidfd."""
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            return None
        tracked = _Tracked(key, pid, pidfd, prefix, cgroup)
        self._jobs[key] = tracked
        assert self._loop is not None, "LocalRuntime.start() was not awaited"
        self._loop.add_reader(pidfd, self._on_exit, tracked)
        return tracked

    def _on_exit(self, job: _Tracked) -> None:
        assert self._loop is not None
        self._loop.remove_reader(job.pidfd)
        os.close(job.pidfd)
        job.pidfd = -2  # ended; not the spawner's either
        self._collect_adopted(job)

    def _collect_adopted(self, job: _Tracked) -> None:
        assert self._loop is not None
        if self._jobs.get(job.key) is not job:
            return  # stopped meanwhile
        try:
            record = _read_record(job.prefix)
            if record.code is None and job.tries * RECORD_POLL < RECORD_WAIT:
                if _spawner_alive(record.recorder):
                    # Its spawner saw the end and is writing it down: read it once written.
                    job.tries += 1
                    self._loop.call_later(RECORD_POLL, self._collect_adopted, job)
                    return
                record = _written_before_leaving(job.prefix, record)
            del self._jobs[job.key]
            # Whatever the script left in the background goes with it: its living spawner
            # killed its group before reaping it; else the group's leader is gone and its
            # pid may be another's now: by its cgroup, and by the attempt in environments.
            if not _spawner_alive(record.recorder):
                _kill_attempt_processes(job.prefix)
            if job.cgroup is not None:
                self._release_cgroup(job.cgroup)
            # What an engine before this one asked of it is not known here: a success asked
            # to stop counts as stopped (see Outcome.ended_unstopped).
            outcome = self._outcome(record.code, job.cancelled, None, None, known=False)
        except Exception as exc:  # the end must reach the engine whatever went wrong here
            self._jobs.pop(job.key, None)
            log.exception("cannot collect the end of %s", job.key)
            outcome = Outcome(False, None, f"its end could not be collected: {exc}")
        self._start_waiting()
        self.events.job_finished(job.key, outcome)

    @staticmethod
    def _outcome(
        code: int | None,
        stopped: bool,
        cpu: float | None,
        rss: int | None,
        *,
        known: bool = True,
        ended_at: float | None = None,
        started_at: float | None = None,
    ) -> Outcome:
        """``stopped``: a stop of this runtime reached the process while it ran. One that had
        ended before it did (its end not read yet) ended on its own: its exit code stands,
        whatever the engine asked meanwhile (a success recorded cancelled was run again).
        ``known``: every stop ever sent to it went through this runtime (it started it).
        ``ended_at``: when it ended, as its spawner saw it; ``started_at``: when the spawner
        started it."""
        if code == 0 and not stopped:
            return Outcome(
                True,
                0,
                None,
                cpu,
                rss,
                ended_at=ended_at,
                ended_unstopped=known,
                started_at=started_at,
            )
        if code is None:
            reason = "the process ended but its exit code was lost"
        elif code < 0:
            code, reason = 128 - code, f"killed by {_signal_name(-code)}"
        elif 128 < code < 128 + signal.NSIG:
            # What a shell reports for a command killed by signal N (how the spawner records
            # it too), or the script's own `exit` with that number.
            reason = f"exit code {code} (a shell's code for {_signal_name(code - 128)})"
        else:
            reason = f"exit code {code}"
        return Outcome(False, code, reason, cpu, rss, ended_at=ended_at)

    # ------------------------------------------------------------------ cancel

    async def cancel(self, key: str, handle: Mapping[str, Any]) -> None:
        job = self._jobs.get(key)
        assert self._loop is not None
        if self.leave_line(key):  # never sent: it never runs now
            return
        if job is None:
            starting = self._starting.get(key)
            if starting is None:
                return
            # Asked, not started yet: the spawner reads this after the start (in order).
            self._cancelled_early.add(key)
            self._links[starting[2]].signal(key, signal.SIGTERM)
            self._loop.call_later(TERM_GRACE_SECONDS, self._force_kill_key, key)
            return
        job.cancelled = True
        self._signal(job, signal.SIGTERM)
        assert self._loop is not None
        self._loop.call_later(TERM_GRACE_SECONDS, self._force_kill, job)

    def _signal(self, job: _Tracked, number: int) -> None:
        # The spawner's children are signalled by the spawner: it alone knows whether the
        # pid is still the attempt's (not reaped, not reused), and whether it had ended.
        if job.pidfd == -1 and self._links and self._links[job.link].signal(job.key, number):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(job.pid, number)

    def _force_kill_key(self, key: str) -> None:
        job = self._jobs.get(key)
        if job is not None:
            self._force_kill(job)

    def _force_kill(self, job: _Tracked) -> None:
        if self._jobs.get(job.key) is job:
            self._signal(job, signal.SIGKILL)
            if job.cgroup is not None:
                cgroups.kill(job.cgroup)

    # ------------------------------------------------------------------ restart

    async def adopt(self, job: JobSpec, handle: Mapping[str, Any]) -> Adopted:
        prefix = str(job.attempt_prefix)
        derived = (
            None if self._cgroup_base is None else cgroups.attempt_cgroup(self._cgroup_base, prefix)
        )
        try:
            claimed = _engine_claim(prefix)
        except OSError as exc:
            raise _no_room_to_claim(job, exc) from exc
        if claimed:  # the process never ran its script and never will
            if derived is not None:
                self._release_cgroup(derived)
            return Adopted("never_started")
        record = _read_record(prefix)
        deadline = time.monotonic() + RECORD_WAIT
        # A spawner (of an engine that died) starting it right now: its claim says which, or
        # (no whole line yet: stopped or preempted right after its create) its open file.
        writer = record.recorder if record.spawning else None
        if not record.whole:
            writer = _claim_writer(prefix)
        while writer is not None and _spawner_alive(writer) and time.monotonic() < deadline:
            # Wait for its word.
            await asyncio.sleep(RECORD_POLL)
            record = _read_record(prefix)
            if record.spawning:
                writer = record.recorder
            elif record.whole:
                writer = None
        if writer is not None and _spawner_alive(writer):
            await _stop_stalled_spawner(writer)  # stopped, hung: it never starts it now
            record = _read_record(prefix)
        if record.text is None:
            return await self.adopt(job, handle)  # its spawner could not start it: unclaimed
        if record.engine:
            return Adopted("never_started")
        pid = record.pid
        # Followed only while something can record its end: its spawner (an older engine's
        # prelude recorded its own, "pid C" alone). Else it is stopped below and counts as
        # lost: its retry never runs beside it.
        recorded = record.recorder is None or _spawner_alive(record.recorder)
        if pid is not None and recorded and _is_attempt_process(pid, prefix, record.recorder):
            cgroup = _cgroup_of(pid, prefix) or derived
            if self._track(job.key, pid, prefix, cgroup=cgroup) is not None:
                # Once the engine has recorded the adoption (it goes on synchronously after
                # our return): processes older than this engine are known by their cgroup.
                asyncio.get_running_loop().call_soon(
                    functools.partial(self.announce_process, job.key, pid=pid, cgroup=cgroup)
                )
                return Adopted(
                    "running",
                    {"pid": pid, "prefix": prefix},
                    started_at=_mtime(prefix + self.script_suffix),
                )
            derived = cgroup
        elif pid is not None:
            derived = _cgroup_of(pid, prefix) or derived
        # Ended while no engine watched: its spawner may still be writing its end down.
        while record.code is None and _spawner_alive(record.recorder):
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(RECORD_POLL)
            record = _read_record(prefix)
        record = _written_before_leaving(prefix, record)
        # What it left in the background goes now (its cgroup, and anything still carrying
        # its attempt, which a cgroup-less host or a move to another cgroup would miss).
        if derived is not None:
            self._release_cgroup(derived)
        _kill_attempt_processes(prefix)
        # Its handle too: one that ended before its RUNNING record (which holds the handle)
        # was written has none stored, and its output is read from these files.
        outcome = self._outcome(record.code, False, None, None)
        if record.code is not None:
            outcome = dataclasses.replace(outcome, ended_at=_mtime(prefix + ".exit"))
        started = _mtime(prefix + self.script_suffix)
        return Adopted(
            "finished", {"prefix": prefix}, outcome, started_at=started, stored_start="earliest"
        )

    # ------------------------------------------------------------------ observe

    async def logs(
        self, key: str, handle: Mapping[str, Any], offsets: Mapping[str, int]
    ) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        prefix = str(handle.get("prefix", ""))
        for stream in STREAMS:
            path = f"{prefix}.{stream}"
            start = offsets.get(stream, 0)
            try:
                if os.stat(path).st_size <= start:
                    continue
                with open(path, "rb") as f:
                    f.seek(start)
                    out[stream] = f.read(LOG_READ_MAX)
            except FileNotFoundError:
                continue
        return out

    async def metrics(self, jobs: Mapping[str, Mapping[str, Any]]) -> dict[str, Metrics]:
        """CPU and RSS summed over each job's processes: its cgroup's (everything it started),
        else its process group's."""
        members: list[tuple[int, str]] = []
        by_group: dict[int, str] = {}
        for key in jobs:
            job = self._jobs.get(key)
            if job is None:
                continue
            if job.cgroup is not None:
                members.extend((pid, key) for pid in cgroups.members(job.cgroup))
            else:
                by_group[job.pid] = key
        if by_group:
            for pid in psutil.pids():
                try:
                    owner = by_group.get(os.getpgid(pid))
                except (ProcessLookupError, PermissionError):
                    continue
                if owner is not None:
                    members.append((pid, owner))
        totals: dict[str, list[float]] = {}
        seen: dict[int, psutil.Process] = {}
        for pid, key in members:
            try:
                proc = self._procs.get(pid) or psutil.Process(pid)
                cpu = proc.cpu_percent(None)
                rss = proc.memory_info().rss
            except psutil.Error:
                continue
            seen[pid] = proc
            acc = totals.setdefault(key, [0.0, 0.0])
            acc[0] += cpu
            acc[1] += rss
        self._procs = seen
        return {k: Metrics(v[0], int(v[1])) for k, v in totals.items()}

    async def health(self) -> Health:
        if self._bash is None:
            return Health(False, "bash not found on PATH")
        if self._short_of is not None:
            directory, reason = self._short_of
            if not has_room(directory, ROOM_PROBE_FILES, ROOM_PROBE_BYTES):
                return Health(False, f"{reason} (attempts wait until there is room)")
            self._short_of = None
        return Health(True)

    async def nodes(self) -> Sequence[NodeInfo]:
        vm = psutil.virtual_memory()
        return [
            NodeInfo(
                name=socket.gethostname(),
                ready=True,
                cpu_capacity=float(os.cpu_count() or 1),
                memory_capacity=vm.total,
                cpu_usage=psutil.cpu_percent(None) / 100 * (os.cpu_count() or 1),
                memory_usage=vm.total - vm.available,
            )
        ]


__all__ = ["LocalRuntime", "write_private_file"]
