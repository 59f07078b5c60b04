"""Local runtime: each activity is a detached process group running bash on its script.

- The script is a file of the attempt (``<attempt>.sh``, 0600), written whole under a temporary
  name and renamed before bash is started, so an engine killed at any instant can never leave
  a bash that reads a partial or empty script and "succeeds"; nothing from the workflow is ever
  put on a command line.
- ``bash <attempt>.sh`` reads the prelude (``local_prelude.sh``, through ``BASH_ENV``) first:
  it claims the attempt, sends output to the attempt's files, then runs the script in a fresh
  bash of its own (as ``bash script.sh`` would) and records how it ended. The names bash acts
  on before the prelude's first line (:data:`BASH_STARTUP_NAMES`, ``BASH_FUNC_*``) are removed
  from its environment, whatever the workflow or the engine's environment says.
- Each attempt runs in its own cgroup v2 where the engine may create one
  (:mod:`akoflow.runtimes.cgroups`): what it starts in a new session dies with it too.
- Exit is event-driven: a pidfd per process wakes the event loop when it ends; no polling.
- Crash safety: the process claims its attempt dir (exclusive create) before running and writes
  its exit code there, so an engine restarted after SIGKILL can adopt a process still running,
  collect the exit code of one that ended, or prove that one never started.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
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
from akoflow.runtimes import cgroups
from akoflow.runtimes.base import (
    Adopted,
    Health,
    JobSpec,
    Metrics,
    NodeInfo,
    Outcome,
    Runtime,
    SubmitError,
)

log = logging.getLogger(__name__)

PRELUDE = Path(__file__).with_name("local_prelude.sh")
CLAIM_LOST_EXIT = 213  # the prelude's exit code when the engine had claimed the attempt
ENGINE_CLAIM = "engine\n"
TERM_GRACE_SECONDS = 5.0
STREAMS = ("stdout", "stderr")
LOG_READ_MAX = 8 << 20  # bytes per stream and call: big outputs arrive in several reads
_DEFAULT_DISPOSITIONS = frozenset(signal.valid_signals()) - {signal.SIGKILL, signal.SIGSTOP}
ENV_ENTRY_MAX = 128 * 1024 - 2  # Linux: bytes of one NAME=value of exec's env (MAX_ARG_STRLEN)
CGROUP_RELEASE_TRIES = 250  # x CGROUP_RELEASE_DELAY: time for killed processes to be gone
CGROUP_RELEASE_DELAY = 0.02
_OFF = ("0", "false", "no", "off")  # {NAME}_CGROUPS: no cgroups, the session only
_ON = ("1", "true", "yes")
CGROUP_SWEEP_AGE = 600.0  # empty attempt cgroups older than this are removed at start
# Variables bash acts on at start-up, before the prelude's first line: they would replace the
# prelude (BASH_ENV; ENV in POSIX mode), make bash skip it (POSIXLY_CORRECT, SHELLOPTS=posix),
# run code before it (SHELLOPTS=xtrace with a PS4 of $(...)) or change its options
# (BASHOPTS). With these gone, PS4 and BASH_XTRACEFD are inert until the script's own set -x.
BASH_STARTUP_NAMES = frozenset({"BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "POSIXLY_CORRECT"})
# Exported functions (BASH_FUNC_name%%=...) would replace the prelude's builtins (printf,
# trap, exec, cd, ...).
BASH_FUNCTION_PREFIX = "BASH_FUNC_"


def without_bash_startup_names(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` without the variables that act on bash before the prelude runs."""
    return {
        k: v
        for k, v in env.items()
        if k not in BASH_STARTUP_NAMES and not k.startswith(BASH_FUNCTION_PREFIX)
    }


def _process_umask() -> str:
    """This process's umask in octal, read without changing it (os.umask would, for a moment,
    for every thread)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return line.split()[1]
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return f"{mask:04o}"


def write_private_file(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` (mode 0600) so that ``path`` never exists partly written:
    a temporary name, completely written, then renamed."""
    partial = path + ".part"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    os.replace(partial, path)


def _spawn_error(exc: OSError | ValueError, env: Mapping[str, str]) -> str:
    """Why a process could not be started, in the user's terms."""
    if isinstance(exc, ValueError) or exc.errno == errno.E2BIG:
        unfit = sorted(k for k, v in env.items() if "\0" in k or "\0" in v or "=" in k or not k)
        if unfit:
            return (
                f"environment variable(s) {', '.join(map(repr, unfit))} contain a NUL byte "
                "or an invalid name, which no process environment can hold"
            )
        if isinstance(exc, ValueError):
            return str(exc)
        big = sorted(
            k for k, v in env.items() if len((k + v).encode(errors="surrogatepass")) > ENV_ENTRY_MAX
        )
        detail = f" ({', '.join(big)}: over 128 KiB each)" if big else ""
        return f"the environment is too big for the kernel to start a process{detail}"
    return exc.strerror or str(exc)


class _Tracked:
    __slots__ = ("cancelled", "cgroup", "child", "key", "pid", "pidfd", "prefix")

    def __init__(
        self, key: str, pid: int, pidfd: int, prefix: str, child: bool, cgroup: str | None
    ) -> None:
        self.key = key
        self.pid = pid
        self.pidfd = pidfd
        self.prefix = prefix  # attempt files are prefix + ".stdout", ".stderr", ".exit"
        self.child = child  # our own child (reaped with wait4) or adopted after a restart
        self.cgroup = cgroup  # the attempt's cgroup directory, None: its session only
        self.cancelled = False


def _read_exit_file(prefix: str) -> str | None:
    """Content of the attempt's exit file: ``pid N`` (claimed, running), ``exit N``, or
    ``engine`` (claimed by the engine); None when absent."""
    try:
        with open(prefix + ".exit", "rb") as f:
            raw = f.read(256)
    except FileNotFoundError:
        return None
    except OSError:  # made a directory, say, by a hostile script: unreadable, not absent
        return "unreadable\n"
    # Anything but the prelude's own ASCII lines reads as no exit code at all (lost).
    return raw.decode("ascii", "replace")


def _kill_attempt_processes(prefix: str) -> None:
    """SIGKILL every process still carrying this attempt in its start-up environment (an
    attempt's processes inherit ``AKOFLOW_ATTEMPT_FILES``): found by the attempt, not by a
    PID that may have been reused since."""
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("AKOFLOW_ATTEMPT_FILES") == prefix:
                proc.kill()
        except (psutil.Error, OSError):
            continue


def _signal_name(number: int) -> str:
    """``SIGTERM``, ``SIGRTMIN+3``...: every number the kernel may report has a name here
    (Python's Signals enum lacks the real-time ones between SIGRTMIN and SIGRTMAX)."""
    try:
        return signal.Signals(number).name
    except ValueError:
        if signal.SIGRTMIN < number < signal.SIGRTMAX:
            return f"SIGRTMIN+{number - signal.SIGRTMIN}"
        return f"signal {number}"


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


def _attempt_environ(pid: int, prefix: str) -> dict[str, str] | None:
    """The initial environment of the attempt's process; None when ``pid`` is not it (guards
    against PID reuse: the process must carry this attempt in its environment)."""
    try:
        env: dict[str, str] = psutil.Process(pid).environ()
    except (psutil.Error, OSError):
        return None
    return env if env.get("AKOFLOW_ATTEMPT_FILES") == prefix else None


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
        self._cgroup_base: str | None = None
        self._releasing: set[str] = set()  # ended attempts' cgroups, killed, not yet empty
        self._umask = "0022"

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._base_env = without_bash_startup_names(activity_environ())
        self._umask = _process_umask()
        wanted = self.config.get_choice("CGROUPS", ("auto", "on", *_ON, *_OFF), "auto")
        self._cgroup_base = None if wanted in _OFF else cgroups.usable_base()
        if self._cgroup_base is None:
            log.debug("%s: no writable cgroup v2 here; attempts are killed by session", self.name)
        else:
            cgroups.sweep(self._cgroup_base, CGROUP_SWEEP_AGE)

    async def stop(self) -> None:
        # Running processes stay alive on purpose: a restarted engine adopts them.
        loop = self._loop
        for job in list(self._jobs.values()):
            if loop is not None:
                loop.remove_reader(job.pidfd)
            os.close(job.pidfd)
        self._jobs.clear()
        # Ended attempts' cgroups go with this engine: their killed processes are gone soon.
        for _ in range(CGROUP_RELEASE_TRIES):
            if not self._releasing:
                break
            await asyncio.sleep(CGROUP_RELEASE_DELAY)
            self._releasing = {path for path in self._releasing if not cgroups.remove(path)}

    # ------------------------------------------------------------------ submit

    async def submit(self, job: JobSpec) -> dict[str, Any]:
        return self._spawn(job, {**job.env, **job.activity.env}, job.activity.run.encode())

    def _spawn(
        self,
        job: JobSpec,
        env_vars: Mapping[str, str],
        script: bytes,
        args: Sequence[str] = (),
        script_suffix: str = ".sh",
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
        env = {**self._base_env, **without_bash_startup_names(env_vars)}
        env["BASH_ENV"] = str(PRELUDE)
        env["AKOFLOW_ATTEMPT_FILES"] = prefix
        env["AKOFLOW_WORKDIR"] = os.path.abspath(job.data_dir)  # absolute: CDPATH is moot
        env["AKOFLOW_UMASK"] = self._umask
        cgroup = self._attempt_cgroup(prefix)
        if cgroup is not None:
            env["AKOFLOW_CGROUP"] = cgroup
        else:
            env.pop("AKOFLOW_CGROUP", None)
        # The prelude sends stdout and stderr to the attempt's files; until then (bash's own
        # errors before it, if any) stderr is the engine's.
        actions: list[tuple[Any, ...]] = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
        ]
        try:
            # The whole script is in place before bash exists (written whole, then renamed):
            # an engine killed at any instant leaves either no bash or a bash with its complete
            # script. A file, not a pipe: `$0` is then a script the script itself can read or
            # run again (`exec bash "$0"` re-read an exhausted pipe: an empty script, exit 0).
            script_path = prefix + script_suffix
            write_private_file(script_path, script)
            pid = os.posix_spawn(
                self._bash,
                ["bash", script_path, *args],
                env,
                file_actions=actions,
                setsid=True,
                # Default dispositions, as any shell's child gets: the engine's interpreter
                # ignores SIGPIPE and SIGXFSZ, which bash could not undo.
                setsigdef=_DEFAULT_DISPOSITIONS,
                setsigmask=(),
            )
        except (OSError, ValueError) as exc:
            # ValueError: a NUL byte or "=" where the environment cannot hold it.
            if cgroup is not None:
                cgroups.remove(cgroup)
            raise SubmitError(
                f"cannot start bash for {job.key}: {_spawn_error(exc, env)}"
            ) from None
        try:
            self._track(job.key, pid, prefix, child=True, cgroup=cgroup)
        except OSError as exc:
            # Not watchable (e.g. no fd left for its pidfd): better not run than run unseen.
            self._kill(pid, cgroup)
            os.waitpid(pid, 0)
            if cgroup is not None:
                cgroups.remove(cgroup)
            raise SubmitError(f"cannot watch the process of {job.key}: {exc}") from None
        self.announce_process(job.key, pid=pid)  # same loop turn: nothing it did is missed
        return {"pid": pid, "prefix": prefix}

    def _attempt_cgroup(self, prefix: str) -> str | None:
        """The attempt's new cgroup, or None (no cgroups here, or this one failed)."""
        if self._cgroup_base is None:
            return None
        path = cgroups.attempt_cgroup(self._cgroup_base, prefix)
        return path if cgroups.create(path) else None

    @staticmethod
    def _kill(pid: int, cgroup: str | None) -> None:
        """SIGKILL the attempt's session, and its cgroup (what left the session too)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        if cgroup is not None:
            cgroups.kill(cgroup)

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

    def _track(
        self, key: str, pid: int, prefix: str, *, child: bool, cgroup: str | None
    ) -> _Tracked | None:
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            return None
        tracked = _Tracked(key, pid, pidfd, prefix, child, cgroup)
        self._jobs[key] = tracked
        assert self._loop is not None, "LocalRuntime.start() was not awaited"
        self._loop.add_reader(pidfd, self._on_exit, tracked)
        return tracked

    def _on_exit(self, job: _Tracked) -> None:
        assert self._loop is not None
        self._loop.remove_reader(job.pidfd)
        os.close(job.pidfd)
        self._jobs.pop(job.key, None)
        try:
            outcome = self._collect(job)
        except Exception as exc:  # the end must reach the engine whatever went wrong here
            log.exception("cannot collect the end of %s", job.key)
            outcome = Outcome(False, None, f"its end could not be collected: {exc}")
        self.events.job_finished(job.key, outcome)

    def _collect(self, job: _Tracked) -> Outcome:
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
        if job.cgroup is not None:
            self._release_cgroup(job.cgroup)
        if code == CLAIM_LOST_EXIT and _read_exit_file(job.prefix) == ENGINE_CLAIM:
            # The prelude's refusal to run: the engine had claimed the attempt first. (A
            # script's own `exit 213` leaves its "exit 213" record instead.)
            return Outcome(False, None, "attempt was claimed by the engine; it did not run")
        return self._outcome(code, job.cancelled, cpu, rss)

    @staticmethod
    def _outcome(code: int | None, cancelled: bool, cpu: float | None, rss: int | None) -> Outcome:
        if code is None:
            return Outcome(False, None, "the process ended but its exit code was lost", cpu, rss)
        if code == 0 and not cancelled:
            return Outcome(True, 0, None, cpu, rss)
        if code < 0:
            return Outcome(False, 128 - code, f"killed by {_signal_name(-code)}", cpu, rss)
        if 128 < code < 128 + signal.NSIG:
            # What a shell reports for a command killed by signal N (the script's bash, under
            # the prelude's shell), or the script's own `exit` with that number.
            name = _signal_name(code - 128)
            return Outcome(False, code, f"exit code {code} (a shell's code for {name})", cpu, rss)
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
            self._kill(job.pid, job.cgroup)

    # ------------------------------------------------------------------ restart

    async def adopt(self, job: JobSpec, handle: Mapping[str, Any]) -> Adopted:
        prefix = str(job.attempt_prefix)
        job.attempt_dir.mkdir(parents=True, exist_ok=True)
        derived = (
            None if self._cgroup_base is None else cgroups.attempt_cgroup(self._cgroup_base, prefix)
        )
        try:
            fd = os.open(prefix + ".exit", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            # We won the claim: the process never ran its script and never will.
            with os.fdopen(fd, "w") as f:
                f.write(ENGINE_CLAIM)
            if derived is not None:
                self._release_cgroup(derived)
            return Adopted("never_started")
        content = _read_exit_file(prefix)
        if content == ENGINE_CLAIM:
            return Adopted("never_started")
        pid = _claimed_pid(content)
        env = None if pid is None else _attempt_environ(pid, prefix)
        if pid is not None and env is not None:
            # The cgroup it was given (this engine may run in another cgroup than the last).
            cgroup = env.get("AKOFLOW_CGROUP") or None
            if self._track(job.key, pid, prefix, child=False, cgroup=cgroup) is not None:
                # Once the engine has recorded the adoption (it goes on synchronously after
                # our return): processes older than this engine are known by their cgroup.
                asyncio.get_running_loop().call_soon(
                    functools.partial(self.announce_process, job.key, pid=pid, cgroup=cgroup)
                )
                return Adopted("running", {"pid": pid, "prefix": prefix})
            content = _read_exit_file(prefix)
            derived = cgroup or derived
        # Ended while no engine watched: what it left in the background goes now (its cgroup,
        # and anything still carrying its attempt: the script itself if only the prelude's
        # shell died, which a cgroup-less host or a move to another cgroup would miss).
        if derived is not None:
            self._release_cgroup(derived)
        _kill_attempt_processes(prefix)
        code = _exit_code(content)
        return Adopted("finished", outcome=self._outcome(code, False, None, None))

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
