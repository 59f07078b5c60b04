"""Local runtime: each activity is a detached process group running bash on its script.

- The script is a file; nothing from the workflow is ever put on a command line.
- Exit is event-driven: a pidfd per process wakes the event loop when it ends; no polling.
- Crash safety: the process claims its attempt dir (exclusive create) before running and writes
  its exit code there, so an engine restarted after SIGKILL can adopt a process still running,
  collect the exit code of one that ended, or prove that one never started.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

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


class _Tracked:
    __slots__ = ("child", "key", "pid", "pidfd", "attempt_dir", "cancelled")

    def __init__(self, key: str, pid: int, pidfd: int, attempt_dir: Path, child: bool) -> None:
        self.key = key
        self.pid = pid
        self.pidfd = pidfd
        self.attempt_dir = attempt_dir
        self.child = child  # our own child (reaped with wait4) or adopted after a restart
        self.cancelled = False


def _read_exit_code(attempt_dir: Path) -> int | None:
    try:
        text = (attempt_dir / "exitcode").read_text()
    except FileNotFoundError:
        return None
    text = text.strip()
    return int(text) if text.lstrip("-").isdigit() else None


def _is_attempt_process(pid: int, attempt_dir: Path) -> bool:
    """Guards against PID reuse: the process must carry this attempt's dir in its environment."""
    try:
        env = psutil.Process(pid).environ()
    except (psutil.Error, OSError):
        return False
    return env.get("AKOFLOW_ATTEMPT_DIR") == str(attempt_dir)


class LocalRuntime(Runtime):
    kind = "local"
    default_max_parallel = max(2, (os.cpu_count() or 1) * 2)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._jobs: dict[str, _Tracked] = {}
        self._bash = shutil.which("bash")
        self._loop: asyncio.AbstractEventLoop | None = None
        # psutil needs the same Process object between samples to compute CPU percent.
        self._procs: dict[int, psutil.Process] = {}

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()

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
        if self._bash is None:
            raise SubmitError("bash not found on PATH")
        existing = self._jobs.get(job.key)
        if existing is not None:
            return {"pid": existing.pid, "attempt_dir": str(existing.attempt_dir)}
        attempt_dir = job.attempt_dir
        attempt_dir.mkdir(parents=True, exist_ok=True)
        if (attempt_dir / "claim").exists():
            # Idempotent by key: this attempt was already launched (or claimed by the engine).
            raise SubmitError(f"attempt {job.key} was already launched once; not starting it again")
        script = attempt_dir / "script.sh"
        script.write_text(job.activity.run)
        env = dict(os.environ)
        env.update(job.env)
        env.update(job.activity.env)
        env["BASH_ENV"] = str(PRELUDE)
        env["AKOFLOW_ATTEMPT_DIR"] = str(attempt_dir)
        env["AKOFLOW_WORKDIR"] = str(job.data_dir)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        try:
            pid = os.posix_spawn(
                self._bash,
                ["bash", str(script)],
                env,
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_OPEN, 1, str(attempt_dir / "stdout"), flags, 0o644),
                    (os.POSIX_SPAWN_OPEN, 2, str(attempt_dir / "stderr"), flags, 0o644),
                ],
                setsid=True,
            )
        except OSError as exc:
            raise SubmitError(f"cannot start bash: {exc}") from exc
        self._track(job.key, pid, attempt_dir, child=True)
        return {"pid": pid, "attempt_dir": str(attempt_dir)}

    def _track(self, key: str, pid: int, attempt_dir: Path, *, child: bool) -> _Tracked | None:
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            return None
        tracked = _Tracked(key, pid, pidfd, attempt_dir, child)
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
            rss = usage.ru_maxrss * 1024
        else:
            code = _read_exit_code(job.attempt_dir)
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
        attempt_dir = job.attempt_dir
        claim = attempt_dir / "claim"
        try:
            attempt_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(claim, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            pass
        else:
            # We won the claim: the process never ran its script and never will.
            with os.fdopen(fd, "w") as f:
                f.write(ENGINE_CLAIM)
            return Adopted("never_started")
        owner = claim.read_text()
        if owner == ENGINE_CLAIM:
            return Adopted("never_started")
        code = _read_exit_code(attempt_dir)
        pid = int(owner) if owner.strip().isdigit() else None
        if code is None and pid is not None and _is_attempt_process(pid, attempt_dir):
            if self._track(job.key, pid, attempt_dir, child=False) is not None:
                return Adopted("running", {"pid": pid, "attempt_dir": str(attempt_dir)})
            code = _read_exit_code(attempt_dir)
        return Adopted("finished", outcome=self._outcome(code, False, None, None))

    # ------------------------------------------------------------------ observe

    async def status(self, jobs: Mapping[str, Mapping[str, Any]]) -> dict[str, JobStatus]:
        result: dict[str, JobStatus] = {}
        for key, handle in jobs.items():
            if key in self._jobs:
                result[key] = JobStatus("running", node=socket.gethostname())
                continue
            attempt_dir = Path(str(handle.get("attempt_dir", "")))
            code = _read_exit_code(attempt_dir)
            if code is not None:
                result[key] = JobStatus("finished", self._outcome(code, False, None, None))
            else:
                pid = handle.get("pid")
                alive = isinstance(pid, int) and _is_attempt_process(pid, attempt_dir)
                result[key] = JobStatus("running" if alive else "unknown")
        return result

    async def logs(
        self, key: str, handle: Mapping[str, Any], offsets: Mapping[str, int]
    ) -> dict[str, bytes]:
        attempt_dir = Path(str(handle.get("attempt_dir", "")))
        out: dict[str, bytes] = {}
        for stream in STREAMS:
            path = attempt_dir / stream
            start = offsets.get(stream, 0)
            try:
                if path.stat().st_size <= start:
                    continue
                with open(path, "rb") as f:
                    f.seek(start)
                    out[stream] = f.read()
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
