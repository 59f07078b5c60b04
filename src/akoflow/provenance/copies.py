"""The data plane's copies as provenance (pure): which recorded file version each copy read,
which one it wrote, and which attempt it was made for.

The data plane (:mod:`akoflow.dataplane`) records every verified copy of a file from one
location to another (``''``: the engine host's data dir; ``<runtime>:<dir>``: a cluster's),
with its size, SHA-256 and times. The versions the activities used and generated are recorded
apart (the host's with their SHA-256; a cluster's from its listings: size and time, no
checksum). A copy is joined to them here:

- a version with the copy's SHA-256 and size at that place is the one (host files);
- else, from a listing, one of the copy's size: for what the copy read, the latest made before
  it started; for what it wrote, the first one listed from its start on (a cluster's clock may
  be a little off the engine's: :data:`CLOCK_SLACK`), else the only one of that size;
- else no record names it: the copy's own knowledge of it (:func:`copy_version`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from akoflow.store import AttemptRecord, FileRecord
from akoflow.store.repository import AmbiguousFile, DataCopy, InitialFile

HOST = ""  # the engine host's data dir, as a location
CLOCK_SLACK = 2.0  # s: how far a cluster's file times may be off the engine host's clock

Version = FileRecord | InitialFile | AmbiguousFile
Places = dict[tuple[str, str], list[Version]]


def places(versions: Iterable[Version]) -> Places:
    """The recorded versions by (location, path)."""
    found: Places = {}
    for version in versions:
        found.setdefault((version.location, version.path), []).append(version)
    return found


def copy_version(copy: DataCopy, location: str, *, written: bool) -> InitialFile:
    """A version no record names, as the copy knows it (its digest identifies it)."""
    when = copy.ended_at if written else copy.started_at
    return InitialFile(copy.path, copy.bytes, when, copy.sha256, location)


def _pick(copy: DataCopy, location: str, known: Places, *, written: bool) -> Version:
    same = [v for v in known.get((location, copy.path), []) if v.size == copy.bytes]
    for version in same:
        if version.sha256 == copy.sha256:
            return version
    listed = [v for v in same if v.sha256 is None]  # known by size and time only
    if written:
        after = [v for v in listed if v.mtime >= copy.started_at - CLOCK_SLACK]
        if after:
            return min(after, key=lambda v: v.mtime)
    else:
        before = [v for v in listed if v.mtime <= copy.started_at + CLOCK_SLACK]
        if before:
            return max(before, key=lambda v: v.mtime)
    if len({(v.size, v.mtime) for v in listed}) == 1:
        return listed[0]  # the one version of that size: a copy may keep the file's time
    return copy_version(copy, location, written=written)


def source_of(copy: DataCopy, known: Places) -> Version:
    """The version the copy read, at its source."""
    return _pick(copy, copy.source, known, written=False)


def destination_of(copy: DataCopy, known: Places) -> Version:
    """The version the copy wrote, at its destination."""
    return _pick(copy, copy.destination, known, written=True)


def found_in_place(
    initial: Sequence[InitialFile], data_copies: Sequence[DataCopy], known: Places
) -> list[InitialFile]:
    """The files a run found in place, but those a copy put there: a cluster's first listing
    is taken when its first job starts, after the files it needs were copied there."""
    if not data_copies:
        return list(initial)
    copied = {id(destination_of(c, known)) for c in data_copies if c.destination}
    return [f for f in initial if id(f) not in copied]


def made_for(
    copy: DataCopy, attempts: Sequence[AttemptRecord], files: Iterable[FileRecord]
) -> tuple[AttemptRecord | None, bool]:
    """The attempt of ``copy.activity_id`` the copy was made for, of ``attempts`` (those that
    ran, by number), and whether the copy brings back what that attempt wrote (``True``: it
    came after the attempt) rather than what it needs (``False``: before it)."""
    if not attempts:
        return None, False
    wrote = [
        f.attempt
        for f in files
        if f.activity_id == copy.activity_id
        and f.role == "generated"
        and f.location == copy.source
        and f.path == copy.path
        and f.mtime <= copy.started_at + CLOCK_SLACK
    ]
    if wrote:
        number = max(wrote)
        return next((a for a in attempts if a.number == number), attempts[-1]), True
    for attempt in attempts:  # the one running or about to when the copy was made
        if attempt.finished_at is None or attempt.finished_at >= copy.started_at:
            return attempt, False
    return attempts[-1], False


def place_name(location: str) -> str:
    """A location for people."""
    return location or "engine host"
