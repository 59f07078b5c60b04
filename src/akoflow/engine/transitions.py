"""The one writer of activity and workflow states, in memory and in the store.

Every change goes through the transition table of :mod:`akoflow.states`; a change the table
does not allow is a loud error instead of a silently corrupted run. Activity states are
buffered within a transaction and written by one statement per kind (a failure can skip
100,000 dependents), so every write happens inside :meth:`Transitions.txn`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping

from akoflow.engine.model import ActivityRun, RuntimeSlot, WorkflowRun
from akoflow.provenance.recorder import ProvenanceRecorder
from akoflow.states import (
    ActivityState,
    WorkflowState,
    check_activity_transition,
    check_workflow_transition,
    workflow_outcome,
)
from akoflow.store import Repository

A = ActivityState


class Transitions:
    def __init__(
        self,
        repo: Repository,
        slots: Mapping[str, RuntimeSlot],
        provenance: ProvenanceRecorder,
        *,
        wake: Callable[[], None],
        owner_pid: int,
    ) -> None:
        self.repo = repo
        self._slots = slots
        self._provenance = provenance
        self._wake = wake
        self._owner_pid = owner_pid
        self._state_writes: dict[tuple[ActivityState, str | None, float | None], list[int]] = {}
        self.unfinished: set[WorkflowRun] = set()  # ended outside an attempt, check the end
        # Where a READY activity goes: its runtime's line, or first the cache stage's.
        self.enqueue: Callable[[ActivityRun], None] = self._to_runtime
        # Called once every activity is final and released, before the run's end is
        # recorded; True: the end waits (maybe_finish is called again when it may go on).
        self.before_end: Callable[[WorkflowRun], bool] = lambda wf: False

    def _to_runtime(self, act: ActivityRun) -> None:
        self._slots[act.runtime].queue.append(act)

    # ------------------------------------------------------------------ activities

    @staticmethod
    def move(act: ActivityRun, new: ActivityState) -> None:
        """Every in-memory state change of an activity."""
        check_activity_transition(act.name, act.state, new)
        act.state = new

    def set_state(self, act: ActivityRun, new: ActivityState, reason: str | None = None) -> None:
        """Move ``act`` and record it (buffered until the transaction ends)."""
        self.move(act, new)
        now = time.time()
        final = new.is_final
        if final:
            act.finished_at = now
            act.wf.remaining -= 1
            if reason:
                act.reason = reason
            self.level_done(act)
        self._state_writes.setdefault((new, reason, now if final else None), []).append(act.id)

    def make_ready(self, act: ActivityRun) -> None:
        self.set_state(act, A.READY)
        self.enqueue(act)

    def fail(self, act: ActivityRun, reason: str) -> None:
        """Fail an activity that never got an attempt (e.g. no node could ever hold it)."""
        self.set_state(act, A.FAILED, reason)
        for child in act.dependents:
            self.skip_downstream(child)
        self.unfinished.add(act.wf)

    def attempt_lost(self, act: ActivityRun, number: int, reason: str) -> None:
        """Attempt ``number`` provably never started: recorded lost, the activity is READY
        again, and the attempt does not count against its retries."""
        self.repo.attempt_lost(act.id, number, reason=reason)
        self.move(act, A.READY)
        act.max_attempts += 1

    def ended(self, act: ActivityRun, new: ActivityState, at: float) -> None:
        """An attempt ended ``act`` in the final state ``new`` (already recorded with the
        attempt): count it and release or skip what depends on it."""
        act.finished_at = at
        act.wf.remaining -= 1
        self.level_done(act)
        if new.is_success:
            for child in act.dependents:
                child.deps_left -= 1
                if child.deps_left == 0 and child.state is A.PENDING and not act.wf.cancelling:
                    self.make_ready(child)
        else:
            for child in act.dependents:
                self.skip_downstream(child)

    def skip_downstream(self, start: ActivityRun) -> None:
        """Mark ``start`` and everything depending on it SKIPPED (iteratively: DAGs are deep)."""
        stack = [start]
        while stack:
            act = stack.pop()
            if act.state not in (A.PENDING, A.READY):
                continue
            failed = next(
                (d.name for d in act.deps if not d.state.is_success and d.state.is_final), None
            )
            self.set_state(
                act,
                A.SKIPPED,
                f"dependency {failed} did not succeed"
                if failed
                else "a dependency did not succeed",
            )
            stack.extend(act.dependents)

    def cancel_waiting(self, act: ActivityRun) -> None:
        self.set_state(act, A.CANCELLED, "cancelled")
        for child in act.dependents:
            self.skip_downstream(child)

    def requeue(self, act: ActivityRun) -> None:
        """Put a READY activity back in its runtime's line (after a retry's back-off)."""
        if act.state is A.READY and not act.wf.cancelling:
            self._slots[act.runtime].queue.append(act)
            self._wake()

    # ------------------------------------------------------------------ store writes

    def flush(self) -> None:
        """Write the buffered activity states (before any other write that could follow them
        for the same activity, and at the end of every transaction)."""
        writes, self._state_writes = self._state_writes, {}
        for (state, reason, finished_at), ids in writes.items():
            self.repo.set_activity_states(
                ((i, state) for i in ids), reason=reason, finished_at=finished_at
            )

    @contextlib.contextmanager
    def txn(self) -> Iterator[None]:
        """A repository transaction that also writes the buffered activity states."""
        with self.repo.transaction():
            yield
            self.flush()

    # ------------------------------------------------------------------ execution strategy

    def level_done(self, act: ActivityRun) -> None:
        wf = act.wf
        if wf.levels_left is None:
            return
        wf.levels_left[act.level] -= 1
        self.open_levels(wf)

    def open_levels(self, wf: WorkflowRun) -> None:
        """First-activity-first: open the next DAG level once every activity of the current
        one is final, and put its held READY activities in line."""
        assert wf.levels_left is not None
        last = len(wf.levels_left) - 1
        while wf.open_level < last and wf.levels_left[wf.open_level] == 0:
            wf.open_level += 1
        if wf.held:
            held, wf.held = wf.held, []
            for act in held:
                if act.level <= wf.open_level:
                    self.requeue(act)
                else:
                    wf.held.append(act)

    # ------------------------------------------------------------------ workflows

    def start_workflow(self, wf: WorkflowRun) -> None:
        now = time.time()
        check_workflow_transition(wf.name, wf.state, WorkflowState.RUNNING)
        wf.state = WorkflowState.RUNNING
        wf.started_at = now
        self.repo.set_workflow_state(wf.id, wf.state, started_at=now)

    def maybe_finish(self, wf: WorkflowRun) -> None:
        """Record the workflow's end once every activity is final and every ended attempt's
        backend objects are released."""
        if wf.remaining > 0 or wf.state.is_final or wf.releasing or self.before_end(wf):
            return
        outcome = workflow_outcome([a.state for a in wf.activities.values()])
        if wf.cancelling and outcome is not WorkflowState.FAILED:
            outcome = WorkflowState.CANCELLED
        now = time.time()
        check_workflow_transition(wf.name, wf.state, outcome)
        wf.state = outcome
        wf.finished_at = now
        self._provenance.close(wf)
        self.repo.set_workflow_state(wf.id, outcome, finished_at=now)
        self.repo.release_workflow(wf.id, pid=self._owner_pid)
        if wf.done is not None and not wf.done.done():
            wf.done.set_result(outcome)

    def finish_unfinished(self) -> None:
        unfinished, self.unfinished = self.unfinished, set()
        for wf in unfinished:
            self.maybe_finish(wf)


__all__ = ["Transitions"]
