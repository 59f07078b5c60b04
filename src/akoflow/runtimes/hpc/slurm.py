"""SLURM command lines and the parsing of their output (pure functions).

Monitoring costs one ``squeue`` per cycle for every job of the runtime (``-t all`` also lists
jobs that ended less than ``MinJobAge`` ago, with their final state); jobs that already left
the queue are looked up with one ``sacct`` (or ``sacct -c``, which reads the jobcomp log on
clusters without slurmdbd) for all of them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from akoflow.runtimes.base import NodeInfo, Outcome

SEP = "|"
# %A last: each array element's own job id (``%i`` is ``ARRAYID_INDEX``, which sstat and
# sacct -c do not take); pending elements share the array's.
SQUEUE_FORMAT = "%i|%j|%T|%N|%r|%A"
SACCT_FIELDS = "JobID,JobName,State,ExitCode"
SINFO_NODE_FORMAT = "%N|%c|%m|%e|%t|%C"

LIVE_STATES = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "SUSPENDED",
        "REQUEUED",
        "REQUEUE_FED",
        "REQUEUE_HOLD",
        "RESIZING",
        "SIGNALING",
        "STAGE_OUT",
        "STOPPED",
        "RESV_DEL_HOLD",
    }
)
_REASONS = {
    "TIMEOUT": "SLURM time limit reached (TIMEOUT)",
    "CANCELLED": "cancelled in SLURM (scancel)",
    "OUT_OF_MEMORY": "out of memory (SLURM OUT_OF_MEMORY)",
    "NODE_FAIL": "the node failed (SLURM NODE_FAIL)",
    "BOOT_FAIL": "the node failed to boot (SLURM BOOT_FAIL)",
    "DEADLINE": "SLURM deadline reached (DEADLINE)",
    "PREEMPTED": "preempted by SLURM (PREEMPTED)",
    "REVOKED": "revoked by SLURM (REVOKED)",
    "SPECIAL_EXIT": "SLURM special exit (SPECIAL_EXIT)",
}


@dataclass(frozen=True, slots=True)
class QueueRow:
    job_id: str
    name: str
    state: str  # long form: PENDING, RUNNING, COMPLETED, ...
    node: str | None
    reason: str | None
    own_id: str | None = None
    """The job's own SLURM job id (``%A``): an element's differs from ``ARRAYID_INDEX``
    once it runs."""

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES

    @property
    def index(self) -> int | None:
        """The array index of an element (``123_4``: 4); None for a plain job."""
        return array_index(self.job_id)


def array_index(job_id: str) -> int | None:
    base, sep, index = job_id.partition("_")
    return int(index) if sep and base.isdigit() and index.isdigit() else None


@dataclass(frozen=True, slots=True)
class AcctRow:
    job_id: str
    name: str
    state: str
    exit_code: int | None
    signal: int | None


def squeue_argv(user: str) -> list[str]:
    """``--array``: one line per array element, pending ones too (``123_4``)."""
    return [
        "squeue",
        "--noheader",
        "--array",
        "--states=all",
        f"--user={user}",
        f"--format={SQUEUE_FORMAT}",
    ]


def squeue_by_name_argv(user: str, name: str) -> list[str]:
    return [*squeue_argv(user), f"--name={name}"]


def scancel_targets(job_ids: Iterable[str]) -> list[str]:
    """What one ``scancel`` is given to cancel ``job_ids``: plain ids as they are, elements
    (``ARRAYID_INDEX``) grouped by array as ``ARRAYID_[0-3,7]``. scancel sends one RPC per
    argument: a cancelled array of any size costs one."""
    plain: list[str] = []
    arrays: dict[str, set[int]] = {}
    for job_id in job_ids:
        index = array_index(job_id)
        if index is None:
            plain.append(job_id)
        else:
            arrays.setdefault(job_id.partition("_")[0], set()).add(index)
    targets = list(dict.fromkeys(plain))
    for base, indexes in arrays.items():
        targets.append(f"{base}_[{_ranges(sorted(indexes))}]")
    return targets


def _ranges(indexes: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``0-2,5``."""
    parts: list[str] = []
    start = prev = indexes[0]
    for i in (*indexes[1:], None):
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ",".join(parts)


def array_refused(stderr: str) -> bool:
    """sbatch's own refusal of the ``--array`` request (more elements than MaxArraySize, or
    a range it cannot take): not any message that merely says "array"."""
    return "Invalid job array specification" in stderr or "MaxArraySize" in stderr


def sacct_argv(
    job_ids: Sequence[str] = (), name: str | None = None, jobcomp: bool = False
) -> list[str]:
    argv = ["sacct", "--noheader", "--parsable2", "--allocations", f"--format={SACCT_FIELDS}"]
    if jobcomp:
        argv.append("--completion")
    if job_ids:
        argv.append("--jobs=" + ",".join(job_ids))
    if name is not None:
        argv += ["--name=" + name, "--starttime=2000-01-01"]
    return argv


def sinfo_argv(partition: str | None) -> list[str]:
    argv = ["sinfo", "--noheader", "--Node", f"--format={SINFO_NODE_FORMAT}"]
    if partition:
        argv.append(f"--partition={partition}")
    return argv


def sstat_argv(job_ids: Iterable[str]) -> list[str]:
    steps = ",".join(f"{j}.batch" for j in job_ids)
    return [
        "sstat",
        "--noheader",
        "--parsable2",
        f"--jobs={steps}",
        "--format=JobID,TRESUsageInTot",
    ]


def parse_squeue(text: str) -> list[QueueRow]:
    rows = []
    for line in text.splitlines():
        parts = line.strip().split(SEP)
        if len(parts) not in (5, 6) or not parts[0]:
            continue
        job_id, name, state, node, reason = parts[:5]
        own_id = parts[5] if len(parts) == 6 and parts[5].isdigit() else None
        rows.append(
            QueueRow(
                job_id=job_id,
                name=name,
                state=state.split()[0].rstrip("+") if state else "UNKNOWN",
                node=node if node and node != "(null)" else None,
                reason=reason if reason and reason not in ("None", "(null)") else None,
                own_id=own_id,
            )
        )
    return rows


def parse_sacct(text: str) -> list[AcctRow]:
    rows = []
    for line in text.splitlines():
        parts = line.strip().split(SEP)
        if len(parts) != 4 or "." in parts[0] or not parts[0]:
            continue  # steps (123.batch) carry no extra information here
        job_id, name, state, exit_code = parts
        code, sig = parse_exit_code(exit_code)
        # "CANCELLED by 0" -> CANCELLED
        rows.append(AcctRow(job_id, name, state.split()[0].rstrip("+"), code, sig))
    return rows


def parse_exit_code(text: str) -> tuple[int | None, int | None]:
    """SLURM's ``code:signal``."""
    code, _, sig = text.partition(":")
    return (int(code) if code.isdigit() else None, int(sig) if sig.isdigit() else None)


def parse_exit_file(text: str | None) -> int | None:
    """The exit code a job recorded (``CODE [BEGAN ENDED]``; older jobs wrote the code only)."""
    if text is None:
        return None
    words = text.split()
    value = words[0] if words else ""
    return int(value) if value.lstrip("-").isdigit() else None


def parse_exit_times(text: str | None) -> tuple[float | None, float | None]:
    """When the command began and ended, by the node's clock (seconds since the epoch), as
    the job recorded them after its exit code; None for each it could not tell (a shell
    without ``EPOCHREALTIME``, an older job)."""
    words = (text or "").split()
    if len(words) != 3:
        return None, None
    try:
        # (the locale's radix: a comma in some)
        began, ended = float(words[1].replace(",", ".")), float(words[2].replace(",", "."))
    except ValueError:
        return None, None
    if not (math.isfinite(began) and math.isfinite(ended)) or began <= 0 or ended <= 0:
        return None, None
    return began, ended


def outcome_of(
    state: str,
    exit_code: int | None,
    *,
    slurm_code: int | None = None,
    signal: int | None = None,
    claim_lost: bool = False,
) -> Outcome:
    """How an attempt ended, from SLURM's final state and the job's own exit file.

    ``exit_code`` (from the exit file) is the activity's real code; SLURM's ``slurm_code`` is
    used only when that file is missing.
    """
    code = exit_code if exit_code is not None else slurm_code
    if claim_lost:
        return Outcome(False, None, "the attempt was claimed elsewhere; its script did not run")
    if state == "COMPLETED" and (code is None or code == 0):
        return Outcome(True, 0)
    if state in _REASONS:
        return Outcome(False, code if state != "CANCELLED" else exit_code, _REASONS[state])
    if signal:
        return Outcome(False, code, f"killed by signal {signal}")
    if code is not None:
        return Outcome(False, code, f"exit code {code}")
    return Outcome(False, None, f"the job ended as {state} without an exit code")


_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int | None:
    """``66120K`` -> bytes (SLURM sizes are binary)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)", text.strip())
    if not m:
        return None
    return int(float(m.group(1)) * _UNITS.get(m.group(2), 1))


def parse_duration(text: str) -> float | None:
    """``[D-]HH:MM:SS[.mmm]`` or ``MM:SS.mmm`` -> seconds."""
    days = 0
    value = text.strip()
    if "-" in value:
        d, _, value = value.partition("-")
        if not d.isdigit():
            return None
        days = int(d)
    parts = value.split(":")
    try:
        nums = [float(p) for p in parts]
    except ValueError:
        return None
    seconds = 0.0
    for n in nums:
        seconds = seconds * 60 + n
    return days * 86400 + seconds


def parse_sstat(text: str) -> dict[str, tuple[float | None, int | None]]:
    """job id -> (CPU seconds, memory bytes) from ``TRESUsageInTot`` of the batch steps."""
    result: dict[str, tuple[float | None, int | None]] = {}
    for line in text.splitlines():
        step, sep, tres = line.strip().partition(SEP)
        if not sep or not step.endswith(".batch"):
            continue
        fields = dict(part.partition("=")[::2] for part in tres.split(","))
        cpu = parse_duration(fields["cpu"]) if "cpu" in fields else None
        mem = parse_size(fields["mem"]) if "mem" in fields else None
        result[step.removesuffix(".batch")] = (cpu, mem)
    return result


def parse_sinfo_nodes(text: str) -> list[NodeInfo]:
    nodes: dict[str, NodeInfo] = {}
    for line in text.splitlines():
        parts = line.strip().split(SEP)
        if len(parts) != 6:
            continue
        name, cpus, mem_mb, free_mb, state, cpu_states = parts
        alloc = cpu_states.split("/")[0]
        total = _int(mem_mb)
        free = _int(free_mb)
        nodes[name] = NodeInfo(
            name=name,
            ready=state.rstrip("*~#!%$@^-") in ("idle", "mix", "alloc", "comp", "completing"),
            cpu_capacity=float(cpus) if cpus.isdigit() else None,
            memory_capacity=total << 20 if total is not None else None,
            cpu_usage=float(alloc) if alloc.isdigit() else None,
            memory_usage=(total - free) << 20 if total is not None and free is not None else None,
        )
    return list(nodes.values())


def _int(text: str) -> int | None:
    return int(text) if text.strip().isdigit() else None
