"""Local runtime: each activity is a detached process group running bash on its script.

- The script reaches bash through a pipe on fd 3 (``bash /dev/fd/3``; a file when it is too big
  for the pipe); nothing from the workflow is ever put on a command line.
- Exit is event-driven: a pidfd per process wakes the event loop when it ends; no polling.
- Crash safety: the process claims its attempt dir (exclusive create) before running and writes
  its exit code there, so an engine restarted after SIGKILL can adopt a process still running,
  collect the exit code of one that ended, or prove that one never started.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import shutil
import signal
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

from akoflow.config import activity_environ
from akoflow.runtimes.base import (
    Adopted,
    Health,
    JobSpec,
    JobStatus,
    Metrics,
    NodeInfo,
    Outcome,
    Runtime,
    SubmitError,
)

PRELUDE = Path(__file__).with_name("local_prelude.sh")
CLAIM_LOST_EXIT = 213  # the prelude's exit code when the engine had claimed the attempt
ENGINE_CLAIM = "engine\n"
TERM_GRACE_SECONDS = 5.0
STREAMS = ("stdout", "stderr")
LOG_READ_MAX = 8 << 20  # bytes per stream and call: big outputs arrive in several reads
PIPE_SCRIPT_MAX = 60_000  # below the 64 KiB pipe buffer: the write never blocks


class _Tracked:
    __slots__ = ("cancelled", "child", "key", "pid", "pidfd", "prefix")

    def __init__(self, key: str, pid: int, pidfd: int, prefix: str, child: bool) -> None:
        self.key = key
        self.pid = pid
        self.pidfd = pidfd
        self.prefix = prefix  # attempt files are prefix + ".stdout", ".stderr", ".exit"
        self.child = child  # our own child (reaped with wait4) or adopted after a restart
        self.cancelled = False


def _read_exit_file(prefix: str) -> str | None:
    """Content of the attempt's exit file: ``pid N`` (claimed, running), ``exit N``, or
    ``engine`` (claimed by the engine); None when absent."""
    try:
        with open(prefix + ".exit") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _exit_code(content: str | None) -> int | None:
    if content and content.startswith("exit "):
        value = content[5:].strip()
        if value.lstrip("-").isdigit():
            return int(value)
    return None


def _claimed_pid(content: str | None) -> int | None:
    if content and content.startswith("pid "):
        value = content[4:].strip()
        if value.isdigit():
            return int(value)
    return None


def _is_attempt_process(pid: int, prefix: str) -> bool:
    """Guards against PID reuse: the process must carry this attempt in its environment."""
    try:
        env = psutil.Process(pid).environ()
    except (psutil.Error, OSError):
        return False
    return env.get("AKOFLOW_ATTEMPT_FILES") == prefix


class LocalRuntime(Runtime):
    kind = "local"
    instant_submit = True  # posix_spawn returns at once; no network round trip
    default_max_parallel = max(2, (os.cpu_count() or 1) * 2)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._jobs: dict[str, _Tracked] = {}
        self._bash = shutil.which("bash")
        self._loop: asyncio.AbstractEventLoop | None = None
        # psutil needs the same Process object between samples to compute CPU percent.
        self._procs: dict[int, psutil.Process] = {}
        self._base_env: dict[str, str] = {}

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._base_env = activity_environ()
        self._base_env["BASH_ENV"] = str(PRELUDE)

    async def stop(self) -> None:
        # Running processes stay alive on purpose: a restarted engine adopts them.
        loop = self._loop
        for job in list(self._jobs.values()):
            if loop is not None:
                loop.remove_reader(job.pidfd)
            os.close(job.pidfd)
        self._jobs.clear()

    # ------------------------------------------------------------------ submit

    async def submit(self, job: JobSpec) -> dict[str, Any]:
        return self._spawn(job, {**job.env, **job.activity.env}, job.activity.run.encode())

    def _spawn(
        self, job: JobSpec, env_vars: Mapping[str, str], script: bytes, args: Sequence[str] = ()
    ) -> dict[str, Any]:
        """Start ``bash SCRIPT ARGS...`` for the attempt: detached, claimed, tracked.

        The local runtime's script is the activity's; another adapter (singularity) passes a
        fixed script such as ``"$@"`` and its launcher's argv as ``args``, and so gets the
        same exit-claim, adoption, pidfd end events, metrics and log files.
        """
        if self._bash is None:
            raise SubmitError("bash not found on PATH")
        prefix = str(job.attempt_prefix)
        existing = self._jobs.get(job.key)
        if existing is not None:
            return {"pid": existing.pid, "prefix": prefix}
        if os.path.lexists(prefix + ".exit"):
            # Idempotent by key: the attempt was launched once (or claimed by the engine).
            # The process's exclusive claim of this file is what really guards it.
            raise SubmitError(f"attempt {job.key} was already launched once; not starting it again")
        env = {**self._base_env, **env_vars}
        env["AKOFLOW_ATTEMPT_FILES"] = prefix
        env["AKOFLOW_WORKDIR"] = str(job.data_dir)
        # The prelude sends stdout and stderr to the attempt's files; until then (bash's own
        # errors before it, if any) stderr is the engine's.
        actions: list[tuple[Any, ...]] = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
        ]
        read_fd = write_fd = -1
        if len(script) <= PIPE_SCRIPT_MAX:
            read_fd, write_fd = os.pipe()
            actions.append((os.POSIX_SPAWN_DUP2, read_fd, 3))
            script_path = "/dev/fd/3"
        else:
            script_path = prefix + ".sh"
            with open(script_path, "wb") as f:
                f.write(script)
        try:
            pid = os.posix_spawn(
                self._bash, ["bash", script_path, *args], env, file_actions=actions, setsid=True
            )
        except OSError as exc:
            raise SubmitError(f"cannot start bash: {exc}") from exc
        finally:
            if read_fd >= 0:
                os.close(read_fd)
        if write_fd >= 0:
            try:
                os.write(write_fd, script)
            except BrokenPipeError:
                pass  # bash already gone; its exit status tells what happened
            finally:
                os.close(write_fd)
        self._track(job.key, pid, prefix, child=True)
        return {"pid": pid, "prefix": prefix}

    def _track(self, key: str, pid: int, prefix: str, *, child: bool) -> _Tracked | None:
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            return None
        tracked = _Tracked(key, pid, pidfd, prefix, child)
        self._jobs[key] = tracked
        assert self._loop is not None, "LocalRuntime.start() was not awaited"
        self._loop.add_reader(pidfd, self._on_exit, tracked)
        return tracked

    def _on_exit(self, job: _Tracked) -> None:
        assert self._loop is not None
        self._loop.remove_reader(job.pidfd)
        os.close(job.pidfd)
        self._jobs.pop(job.key, None)
        cpu: float | None = None
        rss: int | None = None
        if job.child:
            _, status, usage = os.wait4(job.pid, 0)
            code: int | None = os.waitstatus_to_exitcode(status)
            cpu = usage.ru_utime + usage.ru_stime
            # Linux counts the spawning process's pages in a child's max RSS (exec records
            # the old, shared mm's high-water mark), so a peak below the engine's own is ours,
            # not the activity's: unknown then (the sampled metrics still show its memory).
            if usage.ru_maxrss > resource.getrusage(resource.RUSAGE_SELF).ru_maxrss:
                rss = usage.ru_maxrss * 1024
        else:
            code = _exit_code(_read_exit_file(job.prefix))
        # Whatever the script left in the background goes with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(job.pid, signal.SIGKILL)
        self.events.job_finished(job.key, self._outcome(code, job.cancelled, cpu, rss))

    @staticmethod
    def _outcome(code: int | None, cancelled: bool, cpu: float | None, rss: int | None) -> Outcome:
        if code is None:
            return Outcome(False, None, "the process ended but its exit code was lost", cpu, rss)
        if code == 0 and not cancelled:
            return Outcome(True, 0, None, cpu, rss)
        if code == CLAIM_LOST_EXIT:
            return Outcome(False, None, "attempt was claimed by the engine; it did not run")
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            return Outcome(False, 128 - code, f"killed by {name}", cpu, rss)
        return Outcome(False, code, f"exit code {code}", cpu, rss)

    # ------------------------------------------------------------------ cancel

    async def cancel(self, key: str, handle: Mapping[str, Any]) -> None:
        job = self._jobs.get(key)
        if job is None:
            return
        job.cancelled = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(job.pid, signal.SIGTERM)
        assert self._loop is not None
        self._loop.call_later(TERM_GRACE_SECONDS, self._force_kill, job)

    def _force_kill(self, job: _Tracked) -> None:
        if self._jobs.get(job.key) is job:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(job.pid, signal.SIGKILL)

    # ------------------------------------------------------------------ restart

    async def adopt(self, job: JobSpec, handle: Mapping[str, Any]) -> Adopted:
        prefix = str(job.attempt_prefix)
        job.attempt_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(prefix + ".exit", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            pass
        else:
            # We won the claim: the process never ran its script and never will.
            with os.fdopen(fd, "w") as f:
                f.write(ENGINE_CLAIM)
            return Adopted("never_started")
        content = _read_exit_file(prefix)
        if content == ENGINE_CLAIM:
            return Adopted("never_started")
        pid = _claimed_pid(content)
        if pid is not None and _is_attempt_process(pid, prefix):
            if self._track(job.key, pid, prefix, child=False) is not None:
                return Adopted("running", {"pid": pid, "prefix": prefix})
            content = _read_exit_file(prefix)
        code = _exit_code(content)
        return Adopted("finished", outcome=self._outcome(code, False, None, None))

    # ------------------------------------------------------------------ observe

    async def status(self, jobs: Mapping[str, Mapping[str, Any]]) -> dict[str, JobStatus]:
        result: dict[str, JobStatus] = {}
        for key, handle in jobs.items():
            if key in self._jobs:
                result[key] = JobStatus("running", node=socket.gethostname())
                continue
            prefix = str(handle.get("prefix", ""))
            content = _read_exit_file(prefix)
            code = _exit_code(content)
            if code is not None:
                result[key] = JobStatus("finished", self._outcome(code, False, None, None))
            else:
                pid = _claimed_pid(content)
                alive = pid is not None and _is_attempt_process(pid, prefix)
                result[key] = JobStatus("running" if alive else "unknown")
        return result

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
        """CPU and RSS summed over each job's process group (its whole process tree)."""
        wanted = {self._jobs[k].pid: k for k in jobs if k in self._jobs}
        if not wanted:
            return {}
        totals: dict[str, list[float]] = {}
        seen: dict[int, psutil.Process] = {}
        for pid in psutil.pids():
            try:
                key = wanted.get(os.getpgid(pid))
            except (ProcessLookupError, PermissionError):
                continue
            if key is None:
                continue
            proc = self._procs.get(pid) or psutil.Process(pid)
            try:
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


__all__ = ["LocalRuntime"]
