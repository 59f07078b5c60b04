"""What to copy where (pure): the files an activity needs that its location lacks."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from akoflow.dataplane.mover import Digest
from akoflow.provenance.declared import declares
from akoflow.provenance.snapshot import FileState
from akoflow.store.repository import Replica

if TYPE_CHECKING:
    from akoflow.provenance.remote import RemoteFiles

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


@dataclass(frozen=True, slots=True)
class Window:
    """When an activity ran at a location, on the engine's clock: from its (last) attempt's
    dispatch to its end (``None``: not ended, or not known after a restart)."""

    activity_id: int
    start: float
    end: float | None
    live: bool  # an attempt of it runs now (submitted to the runtime)


def candidates(held: Replica, windows: Iterable[Window], *, declared: bool = False) -> set[int]:
    """The activities that may have written ``held`` (a version an attempt's listings show):
    the one that recorded it and every one running at that location when it was recorded.
    A listing cannot tell which of them wrote it, unless the recorder ``declared`` it as an
    output: then it is the recorder's."""
    found = {held.activity_id} if held.activity_id is not None else set()
    at = held.recorded_at
    if at is None or declared:
        return found
    return found | {w.activity_id for w in windows if covers(w, at)}


def unsettled(
    held: Replica, windows: Iterable[Window], ending: int | None = None, *, declared: bool = False
) -> bool:
    """Whether an attempt that may still be writing ``held`` runs at its location (one that
    was running when it was recorded; ``ending``: the activity whose end is being handled).
    Such a version may be a half-written file: it is brought back once they all ended. One
    its recorder ``declared`` as an output is that activity's, complete at its end."""
    at = held.recorded_at
    if at is None or not held.fresh or declared:
        return False
    return any(w.live and w.activity_id != ending and w.start <= at for w in windows)


def fetches(
    replicas: Mapping[tuple[str, str], Replica],
    *,
    target: str,
    writers: Collection[int],
    inputs: Collection[str],
    windows: Mapping[str, Sequence[Window]] | None = None,
    host_changed: Mapping[str, float] | None = None,
    declared: Callable[[Replica], bool] = lambda r: False,
) -> list[Fetch]:
    """Files newer at another location than on the host, that one of ``writers`` (the
    activity's ancestors) may have written there (:func:`candidates`, from the ``windows`` of
    the activities of each location), that an activity at ``target`` needs. The one that
    recorded a version is not always its writer: another that ran there at the same time may
    be, and its dependents need the file too. ``host_changed``: when each host file last
    changed (engine clock): one an activity rewrote on the host after the remote write was
    recorded is newer there, and is not overwritten."""
    near = windows or {}
    return sorted(
        (
            Fetch(r.location, r.path)
            for r in replicas.values()
            if r.fresh
            and r.location != target
            and wanted(inputs, r.path)
            and not candidates(r, near.get(r.location, ()), declared=declared(r)).isdisjoint(
                writers
            )
            and not host_newer(r, host_changed)
        ),
        key=lambda f: (f.location, f.path),
    )


def collectable(
    replicas: Mapping[tuple[str, str], Replica],
    *,
    location: str,
    ending: int,
    windows: Sequence[Window],
    collected: Callable[[int], bool],
    declared: Callable[[Replica], bool] = lambda r: False,
) -> list[str]:
    """What comes back to the host at the end of an attempt of ``ending`` at ``location``:
    each version there not brought back yet that it may have written, that no other attempt
    still running there may be writing, and that one of its possible writers has to bring
    back (``collected``: the workflow's ``collect`` policy for that activity). A version
    recorded at the end of one attempt while another ran there comes back at the end of the
    last of them, whichever order they end in."""
    mine = [w for w in windows if w.activity_id == ending]
    # A version recorded once another attempt there was writing may be half-written by it
    # (:func:`unsettled`, for every version at once).
    busy_since = min((w.start for w in windows if w.live and w.activity_id != ending), default=None)
    ending_collected = collected(ending)
    found = []
    for r in replicas.values():
        if not r.fresh or r.location != location:
            continue
        # When it was recorded tells who else may have written it (:func:`candidates`),
        # unless its recorder declared it (or that moment is not known): then it alone.
        at = r.recorded_at if r.recorded_at is not None and not declared(r) else None
        if r.activity_id != ending and not any(covers(w, at) for w in mine):
            continue  # not ``ending``'s to bring back
        if at is not None and busy_since is not None and busy_since <= at:
            continue
        if (
            ending_collected
            or (r.activity_id is not None and collected(r.activity_id))
            or (at is not None and any(collected(w.activity_id) for w in windows if covers(w, at)))
        ):
            found.append(r.path)
    return sorted(found)


def covers(window: Window, at: float | None) -> bool:
    """Whether the activity of ``window`` ran at that location at ``at``."""
    return at is not None and window.start <= at and (window.end is None or window.end >= at)


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
