"""Pure builders of what the daemon is asked for: the container's name, labels, environment,
mounts and limits for an attempt, and the label filters that find the run's containers.

The script never reaches a command line: it is a file of the attempt, bind-mounted read-only
at :data:`SCRIPT_PATH` and run by a constant wrapper (:data:`WRAPPER`, ``$0`` being the
configured shell, ``$1`` the go timeout) whose output goes to files of the attempt under
:data:`OUT_DIR`. When the attempt's control dir holds a gate (:mod:`.gate`), the wrapper
first waits for the engine's go.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from docker.types import Mount

from akoflow.runtimes.base import JobSpec, SubmitError
from akoflow.runtimes.docker.gate import NOT_RELEASED
from akoflow.runtimes.docker.settings import Settings
from akoflow.runtimes.scope import scope_of

CONTROL_DIR = "/.akoflow"  # reserved in the container: the script, output and gate dirs
SCRIPT_PATH = f"{CONTROL_DIR}/script.sh"
OUT_DIR = f"{CONTROL_DIR}/out"
GATE_DIR = f"{CONTROL_DIR}/ctl"
GATE = f"{GATE_DIR}/gate"
USAGE = f"{OUT_DIR}/usage"
# Made once the command has ended (reaped) if the wrapper never passed it a signal: a stop
# that came after (the wrapper copying its counters) reached the wrapper only.
UNSIGNALLED = f"{OUT_DIR}/unsignalled"
# The container's own cgroup files (cgroup v1 as docker mounts them, v2 in a cgroup namespace)
# and which cgroup the wrapper is in (v2: "0::/" when namespaced), copied to USAGE once the
# command has ended: the daemon removes the cgroup before it reports the end.
USAGE_SOURCES = (
    "/proc/self/cgroup",
    "/sys/fs/cgroup/cpuacct/cpuacct.usage",
    "/sys/fs/cgroup/memory/memory.max_usage_in_bytes",
    "/sys/fs/cgroup/cpu.stat",
    "/sys/fs/cgroup/memory.peak",
)
# With a gate: a `sleep $1` holds its write end (when it ends with no go written, `read` gets
# end-of-file), the go is read, the sleep is stopped. Then the command runs as the wrapper's
# child: the wrapper passes on the signals a stop sends (`i` tells an interrupted `wait` from
# the command's end; a second `wait` of an ended child may say 127, the status is the first's;
# `k`: a signal came before it was reaped (an init that signals the whole group may have
# reached it directly); without, the wrapper makes UNSIGNALLED once it reaped it),
# copies the cgroup's CPU and memory counters (builtins only), and exits with the command's
# status. Shell variables, not exported: the command never sees them.
WRAPPER = (
    f"if [ -p {GATE} ]; then"
    f' w=; if command -v sleep >/dev/null; then sleep "$1" >{GATE} & w=$!; fi;'
    f" go=; read -r go <{GATE};"
    ' if [ -n "$w" ]; then kill "$w" 2>/dev/null; wait "$w" 2>/dev/null; fi;'
    ' if [ "$go" != go ]; then'
    ' echo "akoflow: no go from the engine within $1 s: the command did not run" >&2;'
    f" exit {NOT_RELEASED}; fi;"
    " fi;"
    f' "$0" {SCRIPT_PATH} >{OUT_DIR}/stdout 2>{OUT_DIR}/stderr & c=$!;'
    ' k=; for s in TERM INT HUP USR1 USR2; do trap "i=1; k=1; kill -$s $c 2>/dev/null" $s; done;'
    " i=1; r=; while [ $i = 1 ]; do i=0; wait $c; x=$?;"
    ' if [ $x != 127 ] || [ -z "$r" ]; then r=$x; fi; done;'
    f' if [ -z "$k" ]; then : >{UNSIGNALLED}; fi;'
    f" for f in {' '.join(USAGE_SOURCES)}; do"
    ' if [ -r "$f" ]; then while read -r l; do echo "$f $l"; done <"$f"; fi;'
    f" done >{USAGE} 2>/dev/null;"
    " exit $r"
)
DEFAULT_MOUNT = "/data"
LABEL_KEY = "akoflow.key"
LABEL_SCOPE = "akoflow.scope"
LABEL_WORKFLOW = "akoflow.workflow"
_BAD_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_.-]")


def container_name(job: JobSpec) -> str:
    """``akoflow-<scope>-<key>``: the run's scope tells apart state dirs (users, test runs, a
    state dir made again at the same path) that share one daemon: same key, other run. A job
    without a scope gets its run's (made on first use)."""
    scope = job.scope or scope_of(job.attempt_dir)
    return _BAD_NAME_CHARS.sub("-", f"akoflow-{scope}-{job.key}")


def labels(job: JobSpec) -> dict[str, str]:
    """What the container says it is: the key and scope labels decide ownership (adoption,
    leftovers), the others are for people reading ``docker ps``."""
    return {
        LABEL_WORKFLOW: str(job.workflow_id),
        "akoflow.workflow-name": job.workflow_name,
        "akoflow.activity": job.activity.name,
        "akoflow.attempt": str(job.attempt),
        LABEL_KEY: job.key,
        LABEL_SCOPE: job.scope,
    }


def mount_path(job: JobSpec) -> str:
    """Where the workflow's data dir is in the container (also its working dir)."""
    return job.activity.mount_path or DEFAULT_MOUNT


def environment(job: JobSpec) -> dict[str, str]:
    """AkôFlow's variables, the mount path under both names, then the activity's own (which
    win)."""
    mount = mount_path(job)
    return {**job.env, "ACTIVITY_MOUNT_PATH": mount, "AKOFLOW_DATA_DIR": mount, **job.activity.env}


@dataclass(frozen=True, slots=True)
class ContainerRequest:
    """One ``create_container`` call: its keyword arguments (``container``) and those of the
    ``create_host_config`` that goes with them (``host``), which the SDK checks against the
    daemon's API version."""

    image: str
    name: str
    container: dict[str, Any]
    host: dict[str, Any]


def container_request(job: JobSpec, image: str, name: str, settings: Settings) -> ContainerRequest:
    """The container of ``job`` (scoped): the data dir, the script and the control dir
    (read-only) and the output dir bind-mounted, the activity's limits, no network unless
    configured, the wrapper as the entrypoint and no command."""
    act, prefix = job.activity, str(job.attempt_prefix)
    mount, mem = mount_path(job), act.memory_bytes
    host = {
        "mounts": [
            Mount(mount, host_path(job.data_dir), type="bind"),
            Mount(SCRIPT_PATH, host_path(prefix + ".sh"), type="bind", read_only=True),
            Mount(OUT_DIR, host_path(prefix + ".out"), type="bind"),
            Mount(GATE_DIR, host_path(prefix + ".ctl"), type="bind", read_only=True),
        ],
        "nano_cpus": round(act.cpu_cores * 1e9) if act.cpu_cores else None,
        "mem_limit": mem,
        "memswap_limit": mem,  # no swap beyond the limit: over it is out of memory
        "network_mode": settings.network,
        "init": settings.init,  # tini as PID 1: SIGTERM reaches the script's shell
    }
    container = {
        "command": [],
        "entrypoint": [settings.shell, "-c", WRAPPER, settings.shell, str(settings.go_timeout)],
        "name": name,
        "labels": labels(job),
        "environment": environment(job),
        "working_dir": mount,
    }
    return ContainerRequest(image, name, container, host)


def host_path(path: str | os.PathLike[str]) -> str:
    """An absolute host path for the daemon. Its API is JSON: a path whose bytes are not
    UTF-8 would reach dockerd with U+FFFD in place of those bytes, i.e. bind another path."""
    absolute = os.path.abspath(path)
    try:
        os.fsencode(absolute).decode("utf-8")
    except UnicodeDecodeError:
        raise SubmitError(
            f"the path {os.fsencode(absolute)!r} is not valid UTF-8, so the docker API cannot "
            "name it: use a state directory whose path is UTF-8"
        ) from None
    return absolute


def die_events_filter() -> dict[str, Any]:
    """The events that end attempts: ``die`` of containers carrying a key label."""
    return {"type": "container", "event": ["die"], "label": [LABEL_KEY]}


def run_filter(scope: str, workflow_id: int) -> dict[str, Any]:
    """The containers of one run: its scope and workflow id (another state dir's containers
    on the same daemon never match)."""
    return {"label": [f"{LABEL_SCOPE}={scope}", f"{LABEL_WORKFLOW}={workflow_id}"]}
