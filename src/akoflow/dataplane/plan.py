"""What to copy where (pure): the files an activity needs that its location lacks."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from akoflow.dataplane.mover import Digest
from akoflow.provenance.declared import declares
from akoflow.provenance.remote import RemoteFiles
from akoflow.provenance.snapshot import FileState
from akoflow.store.repository import Replica

HOST = ""  # the engine host's data dir, as a location


@dataclass(frozen=True, slots=True)
class Fetch:
    """Bring ``path`` from ``location`` (where an activity wrote it) to the engine host."""

    location: str
    path: str


def recorded(held: Replica | None, state: FileState) -> bool:
    """Whether ``held`` is already this listed version (recorded when the attempt that wrote
    it ended, or fetched since): not a new version to record or bring back."""
    return held is not None and held.size == state.size and held.mtime == state.mtime


def claims(declared: Collection[str], others: Iterable[Collection[str]], path: str) -> bool:
    """Whether a file an attempt's listings show written is its to bring back: one of its
    declared outputs, or any file no other activity declares as its output (a listing also
    shows what others at that location wrote while it ran)."""
    if declared and declares(declared, path):
        return True
    return not any(o and declares(o, path) for o in others)


def wanted(inputs: Collection[str], path: str) -> bool:
    """Declared inputs narrow what an activity needs; none declared: every file of the run."""
    return not inputs or declares(inputs, path)


def fetches(
    replicas: Mapping[tuple[str, str], Replica],
    *,
    target: str,
    writers: Collection[int],
    inputs: Collection[str],
    host_changed: Mapping[str, float] | None = None,
) -> list[Fetch]:
    """Files newer at another location than on the host, written there by one of ``writers``
    (the activity's ancestors), that an activity at ``target`` needs. ``host_changed``: when
    each host file last changed (engine clock): one an activity rewrote on the host after the
    remote write was recorded is newer there, and is not overwritten."""
    return sorted(
        (
            Fetch(r.location, r.path)
            for r in replicas.values()
            if r.fresh
            and r.location != target
            and r.activity_id in writers
            and wanted(inputs, r.path)
            and not host_newer(r, host_changed)
        ),
        key=lambda f: (f.location, f.path),
    )


def host_newer(held: Replica, host_changed: Mapping[str, float] | None) -> bool:
    """Whether the host's file changed after ``held`` (a fresh remote version) was recorded."""
    if host_changed is None or held.recorded_at is None:
        return False
    changed = host_changed.get(held.path)
    return changed is not None and changed > held.recorded_at


def puts(
    host: Mapping[str, Digest],
    replicas: Mapping[tuple[str, str], Replica],
    *,
    target: str,
    current: Mapping[str, tuple[int, int]] | None = None,
    host_changed: Mapping[str, float] | None = None,
) -> list[str]:
    """Host files ``target`` does not hold at that content. Never over a file an activity
    wrote there since (fresh): that one is newer than the host's. ``current``: what the
    location has now (size, stamp), when it can tell: a copy recorded there that was replaced
    since (another run sharing the directory) is copied again."""
    needed = []
    for path, digest in host.items():
        held = replicas.get((target, path))
        if held is not None and held.fresh and not host_newer(held, host_changed):
            continue  # an activity wrote it there since the host's version: keep it
        if held is not None and held.sha256 == digest.sha256 and still_there(held, current):
            continue
        needed.append(path)
    return sorted(needed)


def still_there(held: Replica, current: Mapping[str, tuple[int, int]] | None) -> bool:
    if current is None or held.stamp is None:
        return True  # the location cannot tell, or no copy of ours put it there: trusted
    return current.get(held.path) == (held.size, held.stamp)


def changed(files: RemoteFiles) -> tuple[dict[str, FileState], list[str]]:
    """What an attempt's listings say changed while it ran (by it, or by another attempt at
    the same location): ``({path: version} written, [deleted])``."""
    written = {
        path: state for path, state in files.after.items() if files.before.get(path) != state
    }
    deleted = sorted(path for path in files.before if path not in files.after)
    return written, deleted
