"""Data-dir changes that await attribution to the attempt that made them.

A change (a file's new size and time) is seen by a scan; each attempt that ends nominates
itself for the changes made while it ran (its run window); a change is decided once no attempt
that was running at its time is still running, by :func:`by_timing`. Timing says who ran when
a file changed, never who wrote it: the change is ambiguous between its nominees (one of them,
another one, or a process of no attempt, such as a shell writing into the data dir, may have
made it), unless exactly one of them declared the file as an output: the declaration is the
workflow's word on who writes it, as on HPC and Kubernetes (several declarers: ambiguous).
With thousands of activities and files, every step here
costs per change it touches, never a pass over every pending change or every activity: changes
are kept in time order, nominations are indexed by activity.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass

from akoflow.provenance.snapshot import FileState


@dataclass(frozen=True, slots=True)
class Nominee:
    """An ended attempt that may have written a version still undecided."""

    end: float  # when its run ended (engine clock)
    activity_id: int
    attempt: int
    activity: str


Decided = tuple[str, FileState, list[Nominee]]  # path, its version, who may have made it

SEVERAL_RAN = (
    "inferred from timing: changed while several activities ran, any of them may have written it"
)
ONE_RAN = (
    "inferred from timing: changed while only its candidate ran, which timing cannot tell "
    "from a write by another process"
)


@dataclass(frozen=True, slots=True)
class Verdict:
    """Who a change is attributed to by timing: ``generator``, or nobody (ambiguous between
    ``candidates``, for ``reason``)."""

    generator: Nominee | None
    candidates: list[tuple[int, int]]  # (activity id, attempt), sorted
    reason: str


def by_timing(nominees: list[Nominee], declaring: set[tuple[int, int]]) -> Verdict:
    """The verdict on a change whose run windows are those of ``nominees`` (each an attempt
    that ran when the file changed); ``declaring``: those that declared it as an output.

    Timing sees no writes, so where it alone speaks the workflow's declarations decide, as
    remote listings do (:mod:`akoflow.provenance.remote`): the one nominee that declared the
    file generated it; none or several: ambiguous between the nominees."""
    candidates = sorted({(n.activity_id, n.attempt) for n in nominees})
    declarers = [n for n in nominees if (n.activity_id, n.attempt) in declaring]
    if len({(n.activity_id, n.attempt) for n in declarers}) == 1:
        return Verdict(declarers[0], candidates, "")
    if len(candidates) == 1:
        return Verdict(None, candidates, ONE_RAN)
    reason = SEVERAL_RAN
    names = sorted({n.activity for n in declarers})
    if names:
        reason += f"; declared as an output by {', '.join(names)}"
    return Verdict(None, candidates, reason)


class PendingChanges:
    def __init__(self) -> None:
        self.states: dict[str, FileState] = {}
        # (mtime, path) in time order from index _first on (decided ones before it, dropped
        # in bulk); may hold superseded entries. New changes are mostly the latest: appends.
        self._by_time: list[tuple[float, str]] = []
        self._first = 0
        self._nominees: dict[str, list[Nominee]] = {}
        self._nominated: dict[str, set[str]] = {}  # activity -> paths it was nominated for
        self.seq = 0  # counts the changes seen: an attempt started after change N did not
        self._seen: dict[str, int] = {}  # make it (path -> number of its pending change)

    def __bool__(self) -> bool:
        return bool(self.states)

    def changed(self, path: str, state: FileState) -> None:
        self.seq += 1
        self._seen[path] = self.seq
        self.states[path] = state
        bisect.insort(self._by_time, (state.mtime, path), lo=self._first)

    def deleted(self, path: str) -> None:
        """Deleted again before anyone claimed it: nothing to attribute."""
        if self.states.pop(path, None) is not None:
            del self._seen[path]
            self._forget(path)

    def in_window(self, start: float, end: float, seen_after: int = 0) -> Iterator[str]:
        """Pending paths whose change time lies in [start, end] and that were seen after
        change number ``seen_after`` (one seen before an attempt started is not its)."""
        entries = self._by_time
        for i in range(bisect.bisect_left(entries, (start, ""), lo=self._first), len(entries)):
            mtime, path = entries[i]
            if mtime > end:
                return
            state = self.states.get(path)
            if state is not None and state.mtime == mtime and self._seen[path] > seen_after:
                yield path

    def nominate(self, path: str, nominee: Nominee) -> None:
        self._nominees.setdefault(path, []).append(nominee)
        self._nominated.setdefault(nominee.activity, set()).add(path)

    def nominated(self, activity: str) -> set[str]:
        """Pending paths ``activity`` may have written (not decided yet)."""
        return self._nominated.get(activity, set())

    def decide(self, before: float | None) -> Iterator[Decided]:
        """Decide every pending change made before ``before`` (``None``: all of them), with
        the attempts whose windows hold it. A change nobody was nominated for by then (no
        attempt ran at its time) is dropped: nobody can claim it any more."""
        entries = self._by_time
        while self._first < len(entries):
            mtime, path = entries[self._first]
            if before is not None and mtime >= before:
                break
            self._first += 1
            state = self.states.get(path)
            if state is None or state.mtime != mtime:
                continue  # superseded by a later change of the same file
            del self.states[path]
            del self._seen[path]
            nominees = self._forget(path)
            if nominees:
                yield path, state, nominees
        if self._first > 1024 and self._first * 2 > len(entries):
            del entries[: self._first]
            self._first = 0

    def _forget(self, path: str) -> list[Nominee]:
        nominees = self._nominees.pop(path, [])
        for nominee in nominees:
            paths = self._nominated.get(nominee.activity)
            if paths is not None:
                paths.discard(path)
                if not paths:
                    del self._nominated[nominee.activity]
        return nominees
