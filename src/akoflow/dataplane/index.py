"""What the data plane knows of one run, kept up to date as it changes (issue 20): the end of a
remote attempt looks at what it may have touched, never at the whole run (which made a run of
N remote activities cost N^2).

:class:`Replicas` mirrors the store's replicas of the run (the data plane writes them all) with
the fresh ones by writer and, per location, by when they were recorded. :class:`Declarations`
tells whether any activity declares a path as an output without trying every activity's
patterns. :class:`Windows` finds the activities whose window at a runtime may cover a moment
without a pass over the run's activities. Each answers a superset of what the rules in
:mod:`akoflow.dataplane.plan` then decide exactly.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Callable, Collection, Container, Iterable, Mapping
from typing import TYPE_CHECKING

from akoflow.dataplane.plan import Window
from akoflow.provenance.declared import is_glob, literal_root, matches
from akoflow.store.repository import Replica

if TYPE_CHECKING:
    from akoflow.engine.model import ActivityRun, WorkflowRun

Key = tuple[str, str]  # (location, path)
COMPACT_AT = 64  # stale entries of a location's timeline before it may be rebuilt


class Replicas:
    """The replicas of one run by (location, path), as the store holds them."""

    def __init__(self, held: Mapping[Key, Replica]) -> None:
        self.held: dict[Key, Replica] = dict(held)
        self._by_writer: dict[int, set[Key]] = {}  # fresh ones, by the activity that wrote them
        # Per location, (recorded_at, path) of fresh ones, sorted; an entry whose replica was
        # replaced or dropped since is stale (skipped, and cleared out when they pile up).
        self._timeline: dict[str, list[tuple[float, str]]] = {}
        self._stale: dict[str, int] = {}
        self._fresh: dict[str, int] = {}  # fresh ones, by location
        for replica in sorted(self.held.values(), key=lambda r: r.recorded_at or 0.0):
            self._note(replica)

    def get(self, location: str, path: str) -> Replica | None:
        return self.held.get((location, path))

    def put(self, replica: Replica) -> None:
        key = (replica.location, replica.path)
        old = self.held.get(key)
        if old is not None:
            self._forget(old)
        self.held[key] = replica
        self._note(replica)

    def drop(self, location: str, path: str) -> None:
        old = self.held.pop((location, path), None)
        if old is not None:
            self._forget(old)

    def fresh_elsewhere(self, location: str) -> bool:
        """Whether a location other than ``location`` holds a fresh version."""
        return any(n for loc, n in self._fresh.items() if loc != location)

    def locations(self) -> dict[str, list[str]]:
        """The locations holding fresh versions recorded with their time, by runtime."""
        found: dict[str, list[str]] = {}
        for location in self._timeline:
            found.setdefault(location.split(":", 1)[0], []).append(location)
        return found

    def fresh_by(self, activity_id: int) -> list[Replica]:
        """The fresh replicas ``activity_id`` recorded (at any location)."""
        return [self.held[k] for k in self._by_writer.get(activity_id, ())]

    def fresh_since(self, location: str, start: float, end: float | None = None) -> list[Replica]:
        """The fresh replicas at ``location`` recorded from ``start`` on (to ``end``)."""
        line = self._timeline.get(location)
        if not line:
            return []
        found: dict[str, Replica] = {}
        for at, path in line[bisect_left(line, (start,)) :]:
            if end is not None and at > end:
                break
            replica = self.held.get((location, path))
            if replica is not None and replica.fresh and replica.recorded_at == at:
                found[path] = replica
        return list(found.values())

    def _note(self, replica: Replica) -> None:
        if not replica.fresh:
            return
        self._fresh[replica.location] = self._fresh.get(replica.location, 0) + 1
        key = (replica.location, replica.path)
        if replica.activity_id is not None:
            self._by_writer.setdefault(replica.activity_id, set()).add(key)
        at = replica.recorded_at
        if at is None:
            return
        line = self._timeline.setdefault(replica.location, [])
        entry = (at, replica.path)
        if not line or line[-1] <= entry:
            line.append(entry)  # the usual case: recorded now, after every other
        else:
            insort(line, entry)

    def _forget(self, old: Replica) -> None:
        if not old.fresh:
            return
        self._fresh[old.location] -= 1
        if old.activity_id is not None:
            keys = self._by_writer.get(old.activity_id)
            if keys is not None:
                keys.discard((old.location, old.path))
                if not keys:
                    del self._by_writer[old.activity_id]
        if old.recorded_at is None:
            return
        stale = self._stale.get(old.location, 0) + 1
        line = self._timeline.get(old.location, [])
        if stale >= COMPACT_AT and stale * 2 >= len(line):
            self._timeline[old.location] = sorted(
                {
                    (at, path)
                    for at, path in line
                    if (held := self.held.get((old.location, path))) is not None
                    and held is not old
                    and held.fresh
                    and held.recorded_at == at
                }
            )
            stale = 0
        self._stale[old.location] = stale

    def timeline_size(self, location: str) -> int:
        """Entries kept for ``location`` (stale ones included): what a test can bound."""
        return len(self._timeline.get(location, ()))


class Declarations:
    """The outputs the activities of a run declare: literal paths by name, globs by the
    directory their matches are under (a path is tried against those of its own directories
    only)."""

    def __init__(self, declared: Iterable[Collection[str]]) -> None:
        self._literal: set[str] = set()
        self._globs: dict[str, set[str]] = {}
        for outputs in declared:
            for pattern in outputs:
                if is_glob(pattern):
                    self._globs.setdefault(literal_root(pattern), set()).add(pattern)
                else:
                    self._literal.add(pattern)

    def any_declares(self, path: str) -> bool:
        """Whether some activity declares ``path`` as its output."""
        if path in self._literal:
            return True
        if not self._globs:
            return False
        parts = path.split("/")
        for depth in range(len(parts)):  # '', 'a', 'a/b' for 'a/b/c'
            patterns = self._globs.get("/".join(parts[:depth]))
            if patterns and any(matches(p, path) for p in patterns):
                return True
        return False


class Windows:
    """When the activities of a run ran at their runtime (:class:`~plan.Window`), found
    without a pass over the run: those that may still be running or whose end is not known
    (sighted at each dispatch), and those that ended, by when."""

    def __init__(
        self,
        by_id: Mapping[int, ActivityRun],
        remote: Callable[[str], bool],
        ended: set[tuple[int, int]],
    ) -> None:
        self._ended = ended  # attempts whose end was reported: they write nothing more
        self._open: dict[str, dict[int, ActivityRun]] = {}  # runtime -> id -> activity
        self._closed: dict[str, list[tuple[float, int]]] = {}  # runtime -> (end, id), sorted
        self._settled_at: dict[str, int] = {}  # runtime -> how many were open when last settled
        self._by_id = by_id
        for act in by_id.values():
            if (act.attempt >= 1 or act.state.is_live) and remote(act.runtime):
                self._open.setdefault(act.runtime, {})[act.id] = act
        for runtime in self._open:
            self._settle(runtime)

    def sight(self, act: ActivityRun) -> None:
        """``act`` is being dispatched, or runs (its window opens or moves)."""
        watched = self._open.setdefault(act.runtime, {})
        if len(watched) >= 2 * self._settled_at.get(act.runtime, 0) + 64:
            self._settle(act.runtime)  # those that ended since (a run that collects nothing)
        watched[act.id] = act

    def _settle(self, runtime: str) -> None:
        """The open windows of ``runtime`` that ended go by their end from now on (and an
        activity sighted that never ran goes: it is sighted again at its dispatch)."""
        watched = self._open.get(runtime, {})
        closed = self._closed.setdefault(runtime, [])
        for act in [a for a in watched.values() if not _open(a)]:
            del watched[act.id]
            self._ended.discard((act.id, act.attempt))  # its end is recorded: noted no more
            if act.attempt >= 1 and act.finished_at is not None:
                entry = (act.finished_at, act.id)
                if not closed or closed[-1] <= entry:
                    closed.append(entry)
                else:
                    insort(closed, entry)
        self._settled_at[runtime] = len(watched)

    def at(
        self,
        runtime: str,
        since: float | None,
        *,
        staging: Container[int],
    ) -> list[Window]:
        """The windows at ``runtime`` that may cover a moment from ``since`` on (``None``: only
        those not ended), as :meth:`DataPlane._windows` makes them: an attempt still copying
        what it needs (``staging``) or whose end was reported writes nothing."""
        found: dict[int, Window] = {}
        for act in self._open.get(runtime, {}).values():
            window = _window(act, staging, self._ended)
            if window is not None:
                found[act.id] = window
        self._settle(runtime)
        if since is not None:
            closed = self._closed[runtime]
            for _, activity_id in closed[bisect_left(closed, (since,)) :]:
                if activity_id not in found:
                    window = _window(self._by_id[activity_id], staging, self._ended)
                    if window is not None:
                        found[activity_id] = window
        return list(found.values())

    def of(self, act: ActivityRun, *, staging: Container[int]) -> Window | None:
        return _window(act, staging, self._ended)

    def watched(self, runtime: str) -> int:
        """Activities of ``runtime`` kept as possibly running (what a test can bound)."""
        return len(self._open.get(runtime, ()))


def _open(act: ActivityRun) -> bool:
    """Whether the window of ``act`` has no end yet: it runs, or its end is not known."""
    return act.state.is_live or (act.attempt >= 1 and act.finished_at is None)


def _window(
    act: ActivityRun, staging: Container[int], ended: set[tuple[int, int]]
) -> Window | None:
    live = act.state.is_live
    if not live:
        ended.discard((act.id, act.attempt))  # its end is recorded: noted no more
        if act.attempt < 1:
            return None
    end = None if live else act.finished_at
    writing = live and act.id not in staging and (act.id, act.attempt) not in ended
    return Window(act.id, act.dispatched_at, end, writing)


class RunIndex:
    """Everything above for one attached run (``wf``: a run attached again is a new object,
    its index is made again from the store); ``remote``: whether a runtime's files stay remote
    (only activities there have windows that matter); ``ended``: attempts whose end the
    runtime reported (the data plane's, shared by its runs)."""

    def __init__(
        self,
        wf: WorkflowRun,
        held: Mapping[Key, Replica],
        remote: Callable[[str], bool],
        ended: set[tuple[int, int]],
    ) -> None:
        self.wf = wf
        self.replicas = Replicas(held)
        self.by_id: dict[int, ActivityRun] = {a.id: a for a in wf.activities.values()}
        self.outputs = Declarations(a.spec.outputs for a in self.by_id.values())
        self.windows = Windows(self.by_id, remote, ended)
