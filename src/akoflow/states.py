"""The one state model of workflows and activities, and its one transition table.

Every state change in the engine goes through :func:`check_activity_transition` or
:func:`check_workflow_transition`, so an impossible move (a finished activity starting again)
fails loudly instead of silently corrupting a run. Values are stable strings: they are stored in
the database and shown by the API.
"""

from __future__ import annotations

from enum import StrEnum

from akoflow.errors import AkoflowError


class ActivityState(StrEnum):
    PENDING = "pending"
    """Waiting for its dependencies."""
    READY = "ready"
    """Every dependency succeeded; waiting for a free slot on a READY runtime."""
    SUBMITTED = "submitted"
    """The intent to start an attempt is recorded; the runtime is starting it."""
    RUNNING = "running"
    """The runtime reported the attempt running (a PID, a job id, a pod)."""
    SUCCEEDED = "succeeded"
    """The last attempt exited with code 0."""
    FAILED = "failed"
    """The last attempt failed and no retry is left."""
    CANCELLED = "cancelled"
    """Stopped by a user (or Ctrl-C) before it could finish."""
    SKIPPED = "skipped"
    """Never run because a dependency failed, was cancelled or was skipped."""
    CACHED = "cached"
    """Not run: the result of an earlier run with the same fingerprint was reused (its outputs
    restored into this run's data dir; see :mod:`akoflow.cache`). A success."""

    @property
    def is_final(self) -> bool:
        return self in _FINAL_ACTIVITY

    @property
    def is_success(self) -> bool:
        """Succeeded, or its earlier result reused: its dependents may start."""
        return self in (ActivityState.SUCCEEDED, ActivityState.CACHED)

    @property
    def is_live(self) -> bool:
        """Something may be running on a backend for this activity."""
        return self in (ActivityState.SUBMITTED, ActivityState.RUNNING)


class AttemptState(StrEnum):
    """One attempt of an activity (its row in the store's attempts table)."""

    SUBMITTED = "submitted"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"
    """Provably never started (the engine stopped first, or the backend refused it as
    unavailable): it does not count against the activity's retries."""
    CACHED = "cached"
    """Never run: an earlier run's attempt with the same fingerprint was reused."""


class WorkflowState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (WorkflowState.SUCCEEDED, WorkflowState.FAILED, WorkflowState.CANCELLED)


_FINAL_ACTIVITY = frozenset(
    {
        ActivityState.SUCCEEDED,
        ActivityState.FAILED,
        ActivityState.CANCELLED,
        ActivityState.SKIPPED,
        ActivityState.CACHED,
    }
)

_A = ActivityState
ACTIVITY_TRANSITIONS: dict[ActivityState, frozenset[ActivityState]] = {
    _A.PENDING: frozenset({_A.READY, _A.SKIPPED, _A.CANCELLED}),
    # READY -> FAILED: no node of its runtime could ever hold it (placement).
    # READY -> CACHED: an earlier run's result was reused instead of running it.
    _A.READY: frozenset({_A.SUBMITTED, _A.CANCELLED, _A.SKIPPED, _A.FAILED, _A.CACHED}),
    # SUBMITTED -> READY: the attempt provably never started (lost before launch) or a retry.
    _A.SUBMITTED: frozenset({_A.RUNNING, _A.SUCCEEDED, _A.FAILED, _A.CANCELLED, _A.READY}),
    # RUNNING -> READY: the attempt failed and a retry is left.
    _A.RUNNING: frozenset({_A.SUCCEEDED, _A.FAILED, _A.CANCELLED, _A.READY}),
    # `akoflow retry` puts failed, cancelled and skipped work back in line.
    _A.FAILED: frozenset({_A.PENDING, _A.READY}),
    _A.CANCELLED: frozenset({_A.PENDING, _A.READY}),
    _A.SKIPPED: frozenset({_A.PENDING, _A.READY}),
    _A.SUCCEEDED: frozenset(),
    _A.CACHED: frozenset(),
}

_W = WorkflowState
WORKFLOW_TRANSITIONS: dict[WorkflowState, frozenset[WorkflowState]] = {
    _W.PENDING: frozenset({_W.RUNNING, _W.CANCELLED, _W.FAILED, _W.SUCCEEDED}),
    _W.RUNNING: frozenset({_W.SUCCEEDED, _W.FAILED, _W.CANCELLED}),
    _W.FAILED: frozenset({_W.RUNNING}),
    _W.CANCELLED: frozenset({_W.RUNNING}),
    _W.SUCCEEDED: frozenset(),
}


class InvalidTransition(AkoflowError, RuntimeError):
    def __init__(self, kind: str, name: str, old: str, new: str) -> None:
        super().__init__(f"{kind} {name!r}: invalid transition {old} -> {new}")


def check_activity_transition(name: str, old: ActivityState, new: ActivityState) -> None:
    if new not in ACTIVITY_TRANSITIONS[old]:
        raise InvalidTransition("activity", name, old, new)


def check_workflow_transition(name: str, old: WorkflowState, new: WorkflowState) -> None:
    if new not in WORKFLOW_TRANSITIONS[old]:
        raise InvalidTransition("workflow", name, old, new)


def attempt_end(
    *, succeeded: bool, timed_out: bool, cancelled: bool, attempts_left: bool
) -> tuple[ActivityState, AttemptState]:
    """Where an activity goes when its live attempt ends, and how the attempt is recorded: a
    timed-out attempt never counts as a success, a cancelled one is not retried."""
    if succeeded and not timed_out:
        return ActivityState.SUCCEEDED, AttemptState.SUCCEEDED
    if cancelled:
        return ActivityState.CANCELLED, AttemptState.CANCELLED
    if attempts_left:
        return ActivityState.READY, AttemptState.FAILED
    return ActivityState.FAILED, AttemptState.FAILED


def ran_over(timeout: float | None, started_at: float | None, ended_at: float | None) -> bool:
    """Whether an attempt that ran from ``started_at`` to ``ended_at`` outlived its
    ``timeout`` (seconds). Asked of an end no engine saw (it ended during a crash or a hold):
    a live engine stops an attempt at its deadline, and one collected later is judged by the
    same rule, not by its exit code alone. Unknown times judge nothing."""
    if timeout is None or started_at is None or ended_at is None:
        return False
    return ended_at - started_at > timeout


def workflow_outcome(states: list[ActivityState] | tuple[ActivityState, ...]) -> WorkflowState:
    """The final state of a workflow whose activities are all final."""
    if any(s is ActivityState.FAILED for s in states):
        return WorkflowState.FAILED
    if any(s is ActivityState.CANCELLED for s in states):
        return WorkflowState.CANCELLED
    if any(s is ActivityState.SKIPPED for s in states):
        return WorkflowState.FAILED
    return WorkflowState.SUCCEEDED


# Upstream's integer codes (0 created, 1 running, 2 finished), for the compatible REST API.
UPSTREAM_ACTIVITY_STATUS: dict[ActivityState, int] = {
    _A.PENDING: 0,
    _A.READY: 0,
    _A.SUBMITTED: 1,
    _A.RUNNING: 1,
    _A.SUCCEEDED: 2,
    _A.FAILED: 2,
    _A.CANCELLED: 2,
    _A.SKIPPED: 2,
    _A.CACHED: 2,
}
