"""Pure readers of what the daemon says (``inspect``, ``ps``, events, stats, info, as the
SDK's plain dicts) and the decisions taken on them: is a container ours, has it ended, how
did it end, what does the engine hear."""

from __future__ import annotations

import contextlib
import json
import re
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from akoflow.runtimes.base import JobSpec, NodeInfo, Outcome
from akoflow.runtimes.docker.container import LABEL_KEY, LABEL_SCOPE
from akoflow.runtimes.docker.gate import NOT_RELEASED
from akoflow.runtimes.instants import instant

# Not running yet or paused, but alive: adopting such a container tracks it.
_LIVE_STATES = ("created", "paused", "restarting")
_EXIT_CODE = re.compile(r"-?[0-9]+")
REMOVED = "the container was removed before AkôFlow collected it"


@dataclass(frozen=True, slots=True)
class End:
    """How a container ended, as recorded: ``code`` None when it was lost."""

    code: int | None
    oom: bool
    note: str | None = None
    read_at: float | None = None  # when the runtime read it (time.time()): no earlier than it was


@dataclass(frozen=True, slots=True)
class DieEvent:
    key: str | None  # the container's key label
    cid: str | None
    time: int | None  # seconds since the epoch: where a reconnected stream resumes
    exit_code: int | None  # as the event tells it (all there is once the container is gone)


def _state(info: Mapping[str, Any]) -> Mapping[str, Any]:
    state: Mapping[str, Any] = info["State"]
    return state


def is_running(info: Mapping[str, Any]) -> bool:
    return bool(_state(info).get("Running"))


def is_created(info: Mapping[str, Any]) -> bool:
    """Created but never started (the engine died between create and start)."""
    return _state(info).get("Status") == "created"


def is_live(info: Mapping[str, Any]) -> bool:
    """Running, or about to (created, paused, restarting): not ended."""
    return is_running(info) or _state(info).get("Status") in _LIVE_STATES


def pid_of(info: Mapping[str, Any] | None) -> int:
    """The host pid of the container's first process; 0 when it has none (not running)."""
    raw = ((info or {}).get("State") or {}).get("Pid")
    return raw if isinstance(raw, int) and not isinstance(raw, bool) and raw > 0 else 0


def exit_of(info: Mapping[str, Any]) -> tuple[int, bool]:
    """(exit code, OOM-killed) of an inspected container that is not running."""
    state = _state(info)
    return int(state.get("ExitCode", -1)), bool(state.get("OOMKilled"))


def run_times(info: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """(started, finished) of an inspected container that ended, in seconds since the epoch
    by the daemon's clock; None for a time the daemon does not have (its zero time)."""
    state = _state(info)
    return instant(state.get("StartedAt")), instant(state.get("FinishedAt"))


def belongs_to(info: Mapping[str, Any], job: JobSpec, recorded: str = "") -> bool:
    """The container is ``job``'s (scoped): its key label is the attempt's and its scope label
    the run's (the same key of another run, e.g. of an old state dir at the same path, is not
    ours), or it is the very container the submission recorded (``recorded``: its id; older
    versions labelled another scope)."""
    labels = (info.get("Config") or {}).get("Labels") or {}
    ours = labels.get(LABEL_SCOPE) == job.scope or bool(recorded and info.get("Id") == recorded)
    return labels.get(LABEL_KEY) == job.key and ours


def event_exit_code(raw: object) -> int | None:
    """An event's ``exitCode`` attribute (a decimal string), None if it is not one."""
    text = str(raw) if isinstance(raw, int | str) else ""
    return int(text) if _EXIT_CODE.fullmatch(text) else None


def die_event(event: Mapping[str, Any]) -> DieEvent:
    attrs = (event.get("Actor") or {}).get("Attributes") or {}
    key, cid, when = attrs.get(LABEL_KEY), event.get("id"), event.get("time")
    return DieEvent(
        key=key if isinstance(key, str) else None,
        cid=cid if isinstance(cid, str) else None,
        time=when if isinstance(when, int) and not isinstance(when, bool) else None,
        exit_code=event_exit_code(attrs.get("exitCode")),
    )


def ended(info: Mapping[str, Any] | None, event: DieEvent | None, note: str | None) -> End | None:
    """How a tracked container ended: from its inspection, else (removed behind our back)
    from its die event; None while it still runs."""
    if info is not None:
        if is_running(info):
            return None
        code, oom = exit_of(info)
        return End(code, oom, note)
    return End(event.exit_code if event is not None else None, False, note or REMOVED)


def succeeded_at_die(event: DieEvent) -> End | None:
    """The end of a container whose die event says exit code 0: a success whatever else
    an inspect would tell (an OOM-killed child the command outlived does not fail it), so
    none is needed; None otherwise."""
    return End(0, False) if event.exit_code == 0 else None


def outcome(
    code: int | None,
    oom: bool,
    *,
    cancelled: bool = False,
    note: str | None = None,
    command_ran: bool = True,
    go_timeout: str = "GO_TIMEOUT",
    unstopped: bool = False,
) -> Outcome:
    """How an attempt ended; ``command_ran``: the wrapper ran the activity's command (else it
    waited in vain for the engine's go, :mod:`.gate`, for the ``go_timeout`` setting).
    ``cancelled``: a stop may have reached it; ``unstopped``: none did
    (:attr:`Outcome.ended_unstopped`)."""
    if code == 0 and not cancelled:
        # A child OOM-killed while the script went on is not a failure.
        return Outcome(True, 0, ended_unstopped=unstopped)
    if cancelled:
        reason = "cancelled"
    elif code == NOT_RELEASED and not command_ran:
        reason = (
            "the container waited for the engine's go and none came (the engine was gone "
            f"longer than {go_timeout}): the command did not run"
        )
        return Outcome(False, None, f"{reason}; {note}" if note else reason)
    elif code is None:
        reason = "the container ended but its exit code was lost"
    elif oom:
        reason = "out of memory"
    else:
        reason = f"exit code {code}"
        if 128 < code < 128 + signal.NSIG:
            with contextlib.suppress(ValueError):  # real-time signals have no name
                reason += f" (killed by {signal.Signals(code - 128).name})"
    return Outcome(False, code, f"{reason}; {note}" if note else reason)


def exit_record(code: int | None, oom: bool) -> str:
    """The attempt's ``.exit`` file: written before an end is reported, read on adoption."""
    return json.dumps({"exit_code": code, "oom": oom})


def parse_exit_record(text: str | bytes) -> tuple[int | None, bool] | None:
    """(exit code, OOM-killed) of an ``.exit`` file; None if it is not one."""
    try:
        record = json.loads(text)
    except ValueError:  # a torn or foreign file: as if there were none
        return None
    if not isinstance(record, dict):
        return None
    code = record.get("exit_code")
    return (code if isinstance(code, int) and not isinstance(code, bool) else None), bool(
        record.get("oom")
    )


def memory_used(stats: Mapping[str, Any]) -> int | None:
    """Memory without the page cache (what the OOM killer looks at, about); None for the
    empty sample of a container that stopped meanwhile."""
    mem = stats.get("memory_stats") or {}
    usage = mem.get("usage")
    if not isinstance(usage, int):
        return None
    inner = mem.get("stats") or {}  # cgroup v1 names the cache total_inactive_file
    cache = inner.get("total_inactive_file", inner.get("inactive_file", 0))
    return max(0, usage - int(cache))


def cpu_time_ns(stats: Mapping[str, Any]) -> int | None:
    total = ((stats.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage")
    return total if isinstance(total, int) else None


def cpu_percent(previous: tuple[int, float] | None, cpu_ns: int, now: float) -> float | None:
    """% of one core between two samples of (CPU ns, monotonic seconds); None without an
    earlier one."""
    if previous is None or now <= previous[1]:
        return None
    return max(0.0, (cpu_ns - previous[0]) / 1e9 / (now - previous[1]) * 100)


@dataclass(frozen=True, slots=True)
class Usage:
    """What an attempt's container used, from its cgroup's counters at the command's end:
    CPU time of all its processes, and its peak memory as its memory limit counts it (page
    cache included; the local runtime's peak RSS counts one process's pages)."""

    cpu_seconds: float | None = None
    max_bytes: int | None = None


def usage_of(text: bytes) -> Usage:
    """The wrapper's copy of its cgroup files (``<path> <line>`` per line, see
    :data:`akoflow.runtimes.docker.container.USAGE_SOURCES`). cgroup v1 files are the
    container's own as docker mounts them; v2 files count only when the container has its
    own cgroup namespace (``0::/``): else they are the host's root's."""
    lines: dict[str, list[str]] = {}
    for raw in text.decode("ascii", "replace").splitlines():
        path, _, line = raw.partition(" ")
        lines.setdefault(path, []).append(line.strip())

    def number(path: str, key: str | None = None) -> int | None:
        for line in lines.get(path, []):
            name, _, value = line.rpartition(" ") if key else ("", "", line)
            if name == (key or "") and value.isdigit():
                return int(value)
        return None

    own_v2 = "0::/" in lines.get("/proc/self/cgroup", [])
    cpu_ns = number("/sys/fs/cgroup/cpuacct/cpuacct.usage")
    if cpu_ns is None and own_v2:
        usec = number("/sys/fs/cgroup/cpu.stat", "usage_usec")
        cpu_ns = usec * 1000 if usec is not None else None
    peak = number("/sys/fs/cgroup/memory/memory.max_usage_in_bytes")
    if peak is None and own_v2:
        peak = number("/sys/fs/cgroup/memory.peak")
    return Usage(cpu_ns / 1e9 if cpu_ns is not None else None, peak)


def node_info(info: Mapping[str, Any], where: str) -> NodeInfo:
    """The daemon's host as the one node (``docker info``)."""
    ncpu, mem = info.get("NCPU"), info.get("MemTotal")
    return NodeInfo(
        name=str(info.get("Name") or where),
        ready=True,
        cpu_capacity=float(ncpu) if isinstance(ncpu, int) else None,
        memory_capacity=mem if isinstance(mem, int) else None,
    )


def handles_by_key(listing: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """``docker ps`` entries by their key label: the handles of the attempts they run."""
    found: dict[str, dict[str, Any]] = {}
    for info in listing:
        key = (info.get("Labels") or {}).get(LABEL_KEY)
        if key:
            found[key] = {"id": info["Id"]}
    return found
