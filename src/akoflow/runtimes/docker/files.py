"""The attempt's files on the engine host: ``<prefix>.sh`` (the script), ``<prefix>.out/``
(stdout and stderr, then its cgroup's counters once the command has ended: written only by
the container's wrapper), ``<prefix>.ctl/`` (the gate, see :mod:`.gate`) and
``<prefix>.exit`` (how it ended, written before an end is reported).
The logs are read from them by byte offset, so they survive the container's removal and do
not depend on the daemon's log driver."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from akoflow.runtimes.docker.status import Usage, exit_record, parse_exit_record, usage_of

STREAMS = ("stdout", "stderr")
LOG_READ_MAX = 8 << 20  # bytes per stream and call, as the local runtime
USAGE_READ_MAX = 64 << 10  # a few lines of cgroup counters; the rest is not the wrapper's


def ran(prefix: str) -> bool:
    """Only the container's wrapper creates the output files: they exist iff it has run."""
    return any(os.path.exists(f"{prefix}.out/{s}") for s in STREAMS)


def command_ran(prefix: str) -> bool:
    """Whether the wrapper ran the command: its redirection creates stdout right before
    (stderr may also be the wrapper's own messages, appended after a failure)."""
    return os.path.exists(f"{prefix}.out/stdout")


def unsignalled(prefix: str) -> bool:
    """Whether the wrapper reaped its command without ever passing it a signal (a stop's):
    any stop that reached the container came after the command's own end."""
    return os.path.exists(f"{prefix}.out/unsignalled")


def prepare(prefix: str, script: str) -> None:
    """The output dir (empty: the wrapper makes its files), the control dir and the script,
    before create."""
    Path(prefix + ".out").mkdir(exist_ok=True)
    Path(prefix + ".ctl").mkdir(exist_ok=True)
    Path(prefix + ".sh").write_bytes(script.encode())


def write_exit_record(prefix: str, code: int | None, oom: bool) -> None:
    tmp = f"{prefix}.exit.tmp"
    with open(tmp, "w") as f:
        f.write(exit_record(code, oom))
    os.replace(tmp, f"{prefix}.exit")  # never a torn record


def read_exit_record(prefix: str) -> tuple[int | None, bool] | None:
    try:
        with open(f"{prefix}.exit", "rb") as f:
            return parse_exit_record(f.read())
    except OSError:
        return None


def read_usage(prefix: str) -> Usage:
    """The CPU and memory the attempt's container used (none recorded: unknown)."""
    try:
        with open(f"{prefix}.out/usage", "rb") as f:
            return usage_of(f.read(USAGE_READ_MAX))
    except OSError:
        return Usage()


def append_stderr(prefix: str, data: bytes) -> None:
    with open(f"{prefix}.out/stderr", "ab") as f:
        f.write(data)


def read_logs(prefix: str, offsets: Mapping[str, int]) -> dict[str, bytes]:
    """What each stream has past its offset (at most :data:`LOG_READ_MAX` bytes)."""
    out: dict[str, bytes] = {}
    for stream in STREAMS:
        start = offsets.get(stream, 0)
        try:
            with open(f"{prefix}.out/{stream}", "rb") as f:
                if os.fstat(f.fileno()).st_size <= start:
                    continue
                f.seek(start)
                out[stream] = f.read(LOG_READ_MAX)
        except FileNotFoundError:
            continue
    return out
