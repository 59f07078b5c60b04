"""A workflow's figures that would otherwise cost a pass over all its activities on every
poll (the UI asks every 1.5 s, on the engine's event loop): the longest activity remembered,
live READY activities per runtime counted only when asked."""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Iterable

from akoflow.engine import ActivityRun
from akoflow.states import ActivityState
from akoflow.store import Repository, WorkflowRecord

LONGEST_EVERY = 5.0  # s; an unfinished run's longest activity is looked up at most this often
LONGEST_KEPT = 1024  # workflows


def live_ready_by_runtime(activities: Iterable[ActivityRun]) -> dict[str, int]:
    return Counter(a.runtime for a in activities if a.state is ActivityState.READY)


class LongestActivity:
    """Upstream's longestActivity metric: a scan of the run's activities (no index orders by
    duration), 20 ms at 50,000. A finished run's answer never changes (until a retry, which
    changes its finish); an unfinished one's is looked up again after LONGEST_EVERY."""

    def __init__(self) -> None:
        # wf id -> (finished_at it was read at, or None: unfinished; when; name)
        self._known: OrderedDict[int, tuple[float | None, float, str | None]] = OrderedDict()

    def __call__(self, repo: Repository, rec: WorkflowRecord) -> str | None:
        # The stored state, not the engine's: a run is recorded final after its activities.
        finished = rec.finished_at if rec.state.is_final else None
        now = time.monotonic()
        known = self._known.get(rec.id)
        if known is not None:
            at_finish, at, name = known
            fresh = at_finish == finished and (finished is not None or now - at < LONGEST_EVERY)
            if fresh:
                self._known.move_to_end(rec.id)
                return name
        name = repo.longest_activity(rec.id)
        self._known[rec.id] = (finished, now, name)
        self._known.move_to_end(rec.id)
        while len(self._known) > LONGEST_KEPT:
            self._known.popitem(last=False)
        return name

    def forget(self, wf_id: int) -> None:
        self._known.pop(wf_id, None)
