"""Checks of the runtimes that run on this host: ``local`` (bash, cgroups) and
``singularity`` (those, and the Apptainer/Singularity launcher)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess

from akoflow.config import RuntimeConfig, activity_environ
from akoflow.runtimes import cgroups
from akoflow.runtimes.base import Outcome
from akoflow.runtimes.checks import Checklist, StepFailed

OFF = ("0", "false", "no", "off")
ON = ("1", "true", "yes", "on")
COMMAND_TIMEOUT = 10.0


class _NoEvents:
    """The checks submit nothing: no event ever comes."""

    def job_running(self, key: str, node: str | None) -> None:
        return None

    def job_started(self, key: str) -> None:
        return None

    def job_finished(self, key: str, outcome: Outcome) -> None:
        return None


def _output(argv: list[str]) -> tuple[int, str]:
    """Exit status and output of a short command (no shell; none of the engine's secrets)."""
    proc = subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=COMMAND_TIMEOUT,
        env=activity_environ(),
    )
    return proc.returncode, proc.stdout.decode(errors="replace").strip()


async def check(config: RuntimeConfig, checks: Checklist, *, singularity: bool) -> None:
    async def settings() -> str:
        from akoflow.runtimes.registry import create_runtime

        runtime = create_runtime(config.name, _NoEvents(), config)
        parallel = runtime.max_parallel  # a bad MAX_PARALLEL raises its SettingError here
        problem = getattr(runtime, "_config_error", None)  # singularity's own settings
        if problem:
            raise StepFailed(str(problem), "fix the setting the message names")
        config.get_choice("CGROUPS", ("auto", *ON, *OFF), "auto")
        return f"MAX_PARALLEL {parallel}"

    await checks.run("settings", settings, fix="fix the setting the message names", required=True)
    await checks.run("bash", _bash)
    await checks.run("cgroups", lambda: _cgroups(config))
    if singularity:
        await checks.run("launcher", lambda: _launcher(config))


async def _bash() -> str:
    bash = shutil.which("bash")
    if bash is None:
        raise StepFailed(
            "bash not found on PATH", "install bash, or start AkôFlow with a PATH that has it"
        )
    code, out = await asyncio.to_thread(_output, [bash, "-c", 'printf %s "$BASH_VERSION"'])
    if code != 0:
        raise StepFailed(f"{bash} does not run (exit {code}): {out[-200:]}", "reinstall bash")
    return f"bash {out} at {bash}"


async def _cgroups(config: RuntimeConfig) -> str:
    wanted = config.get_choice("CGROUPS", ("auto", *ON, *OFF), "auto").lower()
    variable = config.variable("CGROUPS")
    if wanted in OFF:
        return f"off ({variable}={wanted}): an attempt is stopped with its session"
    base = await asyncio.to_thread(cgroups.usable_base)
    if base is not None:
        return f"each attempt gets a cgroup under {base} (stopped whole, measured)"
    if wanted in ON:
        raise StepFailed(
            f"{variable}={wanted} but this process cannot create cgroups (no writable cgroup v2 "
            "directory of its own)",
            "run the engine in a delegated cgroup (e.g. `systemd-run --user --scope -p "
            f"Delegate=yes akoflow ...`), or set {variable}=auto",
        )
    return "not available here (auto): an attempt is stopped with its session"


async def _launcher(config: RuntimeConfig) -> str:
    from akoflow.runtimes.singularity import BINARIES, find_binary

    configured = config.get_text("BINARY")
    binary = find_binary(configured)
    if binary is None:
        wanted = configured or " or ".join(BINARIES)
        raise StepFailed(
            f"{wanted} not found on PATH",
            f"install Apptainer (or SingularityCE), or set {config.variable('BINARY')} to the "
            "launcher's path",
        )
    try:
        code, out = await asyncio.to_thread(_output, [binary, "version"])
    except OSError as exc:
        raise StepFailed(
            f"cannot run {binary}: {exc.strerror or exc}", "check its permissions"
        ) from None
    if code != 0:
        raise StepFailed(
            f"{binary} version failed (exit {code}): {out[-200:]}",
            "run it by hand to see why (a broken install, a missing setuid helper)",
        )
    return f"{os.path.basename(binary)} {out.splitlines()[-1] if out else ''} at {binary}"
