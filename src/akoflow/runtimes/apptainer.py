"""The ``apptainer exec`` / ``singularity exec`` command line, as a pure function.

Shared by the singularity runtime (which runs it on the engine host) and the HPC runtime
(which writes it into sbatch scripts), so both run containers the same way.

Variables never go through ``--env`` (a comma-separated list that breaks on values with commas)
or an env file (parsed as shell): they are returned as ``APPTAINERENV_<NAME>`` (or
``SINGULARITYENV_<NAME>``) variables for the launcher's own environment, which the container
runtime copies into the container even with ``--cleanenv``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ExecCommand:
    argv: list[str]
    env: dict[str, str]
    """Variables to add to the launcher's environment (the container's variables)."""


def env_prefix_for(binary: str) -> str:
    """``SINGULARITYENV_`` for a ``singularity`` binary, ``APPTAINERENV_`` otherwise."""
    return (
        "SINGULARITYENV_"
        if os.path.basename(binary).startswith("singularity")
        else ("APPTAINERENV_")
    )


def memory_flag(memory_bytes: int) -> str:
    """Apptainer's ``--memory`` takes a size with a unit suffix; bytes are exact."""
    return f"{memory_bytes}b" if memory_bytes % (1 << 20) else f"{memory_bytes >> 20}M"


def exec_command(
    binary: str,
    image: str,
    script_path: str,
    *,
    binds: Sequence[tuple[str, str]] = (),
    pwd: str | None = None,
    env: Mapping[str, str] | None = None,
    cpus: float | None = None,
    memory_bytes: int | None = None,
    shell: str = "/bin/sh",
    cleanenv: bool = True,
    read_only_binds: Sequence[tuple[str, str]] = (),
    options: Sequence[str] = (),
) -> ExecCommand:
    """``BINARY exec [flags] IMAGE SHELL SCRIPT``: runs a script file that is inside a bind.

    The script is a path, never a command string, so nothing in it is interpreted by the
    launcher's shell. ``options`` are extra ``exec`` flags from the runtime's settings
    (e.g. ``--nv``), each one argv element.
    """
    argv = [binary, "exec", *options]
    if cleanenv:
        argv.append("--cleanenv")
    for (source, target), suffix in [(b, "") for b in binds] + [
        (b, ":ro") for b in read_only_binds
    ]:
        if ":" in source or ":" in target or "," in source or "," in target:
            # --bind splits on ':' and ','; such a path cannot be expressed safely.
            raise ValueError(f"bind path {source!r}:{target!r} contains ':' or ','")
        argv += ["--bind", f"{source}:{target}{suffix}"]
    if pwd is not None:
        argv += ["--pwd", pwd]
    if cpus is not None:
        argv += ["--cpus", f"{cpus:g}"]
    if memory_bytes is not None:
        argv += ["--memory", memory_flag(memory_bytes)]
    argv += [image, shell, script_path]
    prefix = env_prefix_for(binary)
    return ExecCommand(argv, {prefix + name: value for name, value in (env or {}).items()})
