"""Singularity/Apptainer runtime: each attempt is ``BINARY exec … IMAGE /bin/sh SCRIPT`` on the
engine host, run and watched by the local runtime's process machinery.

- The launcher runs under the local runtime's detached bash (a fixed ``"$@"`` script): the
  attempt is claimed in its exit file before the container starts and its exit code is written
  there after, so the crash safety is the local runtime's (adopt by verified PID after an
  engine SIGKILL, never run an attempt twice). Ends arrive by pidfd, CPU and memory are summed
  with psutil over the process group (launcher, container and everything they started), logs
  are the attempt's files read by byte offset, cancel kills the whole group.
- Nothing from the workflow reaches a command line: the script is a file of the attempt,
  bound read-only into the container; variables travel as ``APPTAINERENV_*`` (see
  :mod:`akoflow.runtimes.apptainer`, the argv builder shared with the HPC runtime).
- Images: a SIF file or sandbox directory is used in place; a reference (``docker://``,
  ``oras://``, ``library://``, …) is pulled once into a cache under a file lock
  (:mod:`akoflow.runtimes.sif_cache`).

Settings (``{NAME}_{KEY}``): ``BINARY`` (default: ``apptainer``, else ``singularity``, on
PATH), ``CACHE_DIR``, ``PULL_POLICY`` (never | if-missing | always), ``PULL_TIMEOUT``,
``SHELL``, ``LIMITS`` (auto | apply | ignore), ``CLEANENV``, ``OPTIONS`` (extra exec flags).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from akoflow.config import RuntimeConfig, activity_environ, state_dir
from akoflow.errors import SettingError
from akoflow.runtimes.apptainer import exec_command
from akoflow.runtimes.base import Health, JobSpec, RuntimeUnavailable, SubmitError
from akoflow.runtimes.local import LocalRuntime, write_private_file
from akoflow.runtimes.sif_cache import PULL_POLICIES, PullError, classify, pull_locked

log = logging.getLogger(__name__)

BINARIES = ("apptainer", "singularity")
CONTROL_DIR = "/.akoflow"  # reserved in the container, as in the docker runtime
SCRIPT_PATH = f"{CONTROL_DIR}/script.sh"
DEFAULT_MOUNT = "/data"
LAUNCH_SCRIPT = b'"$@"\n'  # the host bash runs the launcher's argv, given as its arguments
LIMIT_MODES = ("auto", "apply", "ignore")
VERSION_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class _Settings:
    binary: str | None = None  # as configured (a name or a path); None: search BINARIES
    cache_dir: Path | None = None
    pull_policy: str = "if-missing"
    pull_timeout: int = 600
    shell: str = "/bin/sh"
    limits: str = "auto"
    cleanenv: bool = True
    options: tuple[str, ...] = ()


def _read_settings(config: RuntimeConfig) -> _Settings:
    text = config.get_text
    try:
        options = tuple(shlex.split(text("OPTIONS") or ""))  # split into argv, never a shell
    except ValueError as exc:
        raise config.invalid("OPTIONS", f"cannot be split into arguments: {exc}") from None
    cache = text("CACHE_DIR")
    return _Settings(
        binary=text("BINARY"),
        cache_dir=Path(cache).expanduser().resolve() if cache else None,
        pull_policy=config.get_choice("PULL_POLICY", PULL_POLICIES, "if-missing"),
        pull_timeout=config.get_int("PULL_TIMEOUT", 600, minimum=1),
        shell=text("SHELL") or "/bin/sh",
        limits=config.get_choice("LIMITS", LIMIT_MODES, "auto"),
        cleanenv=config.get_bool("CLEANENV", True),
        options=options,
    )


def find_binary(configured: str | None) -> str | None:
    """Absolute path of the launcher: the configured one, else the first of BINARIES."""
    for candidate in (configured,) if configured else BINARIES:
        found = shutil.which(candidate)
        if found is not None:
            return os.path.abspath(found)
    return None


def limits_allowed(mode: str) -> bool:
    """``auto``: the launcher can enforce limits as root, or with a cgroup v2 hierarchy."""
    if mode != "auto":
        return mode == "apply"
    return os.geteuid() == 0 or os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def _version_health(binary: str) -> Health:
    """``BINARY version`` succeeds: the launcher is present and runnable."""
    try:
        proc = subprocess.run(
            [binary, "version"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=VERSION_TIMEOUT,
            env=activity_environ(),  # the launcher needs none of the engine's secrets
        )
    except subprocess.TimeoutExpired:
        return Health(False, f"{binary} version did not answer in {VERSION_TIMEOUT:g}s")
    except OSError as exc:
        return Health(False, f"cannot run {binary}: {exc.strerror or exc}")
    if proc.returncode != 0:
        tail = proc.stdout.decode(errors="replace").strip()[-300:]
        return Health(False, f"{binary} version failed (exit {proc.returncode}): {tail}")
    return Health(True)


class SingularityRuntime(LocalRuntime):
    kind = "singularity"
    instant_submit = False  # a submit may pull an image first
    # Bash runs the launcher's script; the activity's (``.sh``, bound into the container) is
    # written at the submit, before any wait in the line: not the attempt's start.
    script_suffix = ".launch.sh"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._config_error: str | None = None
        try:
            self._s = _read_settings(self.config)
        except SettingError as exc:
            self._s, self._config_error = _Settings(), str(exc)
        self._binary = find_binary(self._s.binary)
        self._limits = limits_allowed(self._s.limits)
        self._images: dict[str, str] = {}  # reference -> cached SIF, known good this process
        self._pulls: dict[str, asyncio.Future[str]] = {}

    @property
    def _cache_dir(self) -> Path:
        return self._s.cache_dir or state_dir() / "cache" / "sif"

    def _missing(self) -> str:
        wanted = self._s.binary or " or ".join(BINARIES)
        return f"{wanted} not found (set {self.config.variable('BINARY')} or PATH)"

    # ------------------------------------------------------------------ submit

    async def submit(self, job: JobSpec) -> dict[str, Any]:
        if self._config_error:
            raise SubmitError(self._config_error)
        binary = self._binary
        if binary is None or not os.access(binary, os.X_OK):
            binary = self._binary = find_binary(self._s.binary)
            if binary is None:
                raise RuntimeUnavailable(self._missing())
        if self.launched(job.key):  # asked twice: the running attempt's handle, nothing launched
            return await self._spawn(job, {}, LAUNCH_SCRIPT)
        act = job.activity
        if not act.image:
            raise SubmitError(
                f"activity {act.name!r} runs on {self.name} and needs an image: set "
                "spec.image or the activity's image (a SIF path or a reference such as "
                "docker://alpine:3.20)"
            )
        image = classify(act.image)
        if image.local:
            if not os.path.exists(image.ref):
                raise SubmitError(f"image {image.ref} does not exist")
            path = image.ref
        else:
            path = await self._pulled(binary, image.ref)
        prefix = str(job.attempt_prefix)
        mount = act.mount_path or DEFAULT_MOUNT
        env = {**job.env, "ACTIVITY_MOUNT_PATH": mount, "AKOFLOW_DATA_DIR": mount, **act.env}
        try:
            cmd = exec_command(
                binary,
                path,
                SCRIPT_PATH,
                binds=[(os.path.abspath(job.data_dir), mount)],
                read_only_binds=[(os.path.abspath(prefix + ".sh"), SCRIPT_PATH)],
                pwd=mount,
                env=env,
                cpus=act.cpu_cores if self._limits else None,
                memory_bytes=act.memory_bytes if self._limits else None,
                shell=self._s.shell,
                cleanenv=self._s.cleanenv,
                options=self._s.options,
            )
        except ValueError as exc:
            raise SubmitError(str(exc)) from exc
        try:
            write_private_file(prefix + ".sh", act.run.encode())  # whole and 0600, or absent
        except OSError as exc:
            raise SubmitError(f"cannot write the script of {job.key}: {exc}") from None
        # The launcher's own constant script beside the activity's (which the container runs).
        return await self._spawn(job, cmd.env, LAUNCH_SCRIPT, cmd.argv)

    async def _pulled(self, binary: str, ref: str) -> str:
        """The cached SIF of ``ref``: one pull at a time per reference in this runtime (and,
        through the lock file, across runtimes and engines)."""
        known = self._images.get(ref)
        if known is not None and os.path.exists(known):
            return known
        pending = self._pulls.get(ref)
        if pending is None:
            s = self._s
            pending = asyncio.ensure_future(
                asyncio.to_thread(
                    lambda: str(
                        pull_locked(
                            binary,
                            ref,
                            self._cache_dir,
                            policy=s.pull_policy,
                            timeout=s.pull_timeout,
                        )
                    )
                )
            )
            self._pulls[ref] = pending
            pending.add_done_callback(lambda _: self._pulls.pop(ref, None))
        try:
            path = await asyncio.shield(pending)
        except PullError as exc:
            raise SubmitError(str(exc)) from None
        self._images[ref] = path
        return path

    # ------------------------------------------------------------------ health

    async def health(self) -> Health:
        if self._config_error:
            return Health(False, self._config_error)
        local = await super().health()
        if not local.ready:
            return local
        binary = self._binary = find_binary(self._s.binary)
        if binary is None:
            return Health(False, self._missing())
        # A thread, not an asyncio subprocess: an engine stopping mid-check leaves no
        # half-closed transport behind; the thread ends with the command or its timeout.
        return await asyncio.to_thread(_version_health, binary)


__all__ = ["SingularityRuntime", "find_binary", "limits_allowed"]
