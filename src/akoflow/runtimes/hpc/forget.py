"""A deleted run's directories on the cluster go: its attempts' control dirs
(``MOUNT_PATH/.akoflow/<scope>/wf<id>-*``: scripts, sbatch files, logs, exit files) and its
own working dir (``MOUNT_PATH/runs/<scope>-wf<id>``, with ``{NAME}_RUN_DIRS``).

Only paths made from MOUNT_PATH, the run's scope (12 hex digits) and its workflow id are ever
named, each checked to lie beneath MOUNT_PATH; the cluster's ``find`` says which exist (its
``-name`` patterns hold no character a user chose), and ``du``/``rm`` get them as separate
arguments (argv lists: no shell parses a value). Files of a run that worked in MOUNT_PATH
itself (without RUN_DIRS) are shared with every other run there and stay.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Awaitable, Callable, Sequence

from akoflow.runtimes.base import Forgotten, RunTrace, SubmitError
from akoflow.runtimes.hpc.sbatch import CONTROL_DIR
from akoflow.runtimes.hpc.transport import Transport

_SCOPE = re.compile(r"[0-9a-f]{12}")
ARGS_PER_COMMAND = 200  # paths per du/rm: a remote command line stays far below ARG_MAX


def run_places(mount_path: str, run: RunTrace) -> tuple[str, str, str, str]:
    """(control dir of the run's scope, the name pattern of its attempts' dirs there, the
    parent of run dirs, its run dir's name): pure; ValueError for a scope that could make
    them name anything else."""
    if not _SCOPE.fullmatch(run.scope) or run.workflow_id < 1:
        raise ValueError(f"not a run's scope and id: {run.scope!r}, {run.workflow_id!r}")
    mount = mount_path.rstrip("/")
    if not mount.startswith("/") or posixpath.normpath(mount) != mount:
        raise ValueError(f"MOUNT_PATH {mount_path!r} is not a normalised absolute path")
    return (
        f"{mount}/{CONTROL_DIR}/{run.scope}",
        f"wf{run.workflow_id}-*",
        f"{mount}/runs",
        f"{run.scope}-wf{run.workflow_id}",
    )


def beneath(mount_path: str, path: str) -> bool:
    """``path`` is a normalised path strictly inside MOUNT_PATH."""
    mount = mount_path.rstrip("/")
    return path.startswith(mount + "/") and posixpath.normpath(path) == path and ".." not in path


def found_paths(listing: str, parent: str, mount_path: str) -> list[str]:
    """The paths ``find`` printed (one per line) that are direct children of ``parent``
    beneath MOUNT_PATH; anything else is ignored."""
    found = []
    for line in listing.splitlines():
        if posixpath.dirname(line) == parent and beneath(mount_path, line):
            found.append(line)
    return found


def du_total(output: str) -> int | None:
    """The sum of ``du -sb`` lines (``<bytes>\\t<path>``); None when it printed none."""
    sizes = [int(n) for line in output.splitlines() if (n := line.split("\t", 1)[0]).isdigit()]
    return sum(sizes) if sizes else None


def _chunks(paths: Sequence[str]) -> list[Sequence[str]]:
    return [paths[i : i + ARGS_PER_COMMAND] for i in range(0, len(paths), ARGS_PER_COMMAND)]


async def forget_remote(
    mount_path: str, run: RunTrace, transport: Callable[[], Awaitable[Transport]]
) -> Forgotten:
    """Remove the run's directories on the cluster; what was removed and its size. Raises
    the transport's RuntimeUnavailable when the cluster cannot be reached."""
    control, pattern, runs, run_dir_name = run_places(mount_path, run)
    link = await transport()
    paths: list[str] = []
    for parent, name in ((control, pattern), (runs, run_dir_name)):
        # A parent that does not exist is no error: nothing of the run is there.
        res = await link.run(["find", parent, "-mindepth", "1", "-maxdepth", "1", "-name", name])
        paths += found_paths(res.stdout, parent, mount_path)
    if not paths:
        return Forgotten()
    total: int | None = 0
    for chunk in _chunks(paths):
        size = du_total((await link.run(["du", "-sb", "--", *chunk])).stdout)
        total = None if total is None or size is None else total + size
    for chunk in _chunks(paths):
        res = await link.run(["rm", "-rf", "--", *chunk])
        if res.exit_status != 0:
            raise SubmitError(f"rm on {link.where} failed: {res.stderr.strip()[-500:]}")
    # The scope's dir goes once empty (a run's scope is its own: nothing else is in it).
    await link.run(["rmdir", "--ignore-fail-on-non-empty", "--", control])
    return Forgotten(removed=tuple(paths), bytes=total)


__all__ = ["beneath", "du_total", "forget_remote", "found_paths", "run_places"]
