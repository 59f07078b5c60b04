from __future__ import annotations

import pytest

from akoflow.states import (
    ACTIVITY_TRANSITIONS,
    ActivityState,
    InvalidTransition,
    WorkflowState,
    check_activity_transition,
    check_workflow_transition,
    workflow_outcome,
)

A = ActivityState


def test_every_state_has_a_row_in_the_table() -> None:
    assert set(ACTIVITY_TRANSITIONS) == set(ActivityState)


def test_succeeded_is_terminal_forever() -> None:
    for new in ActivityState:
        with pytest.raises(InvalidTransition):
            check_activity_transition("x", A.SUCCEEDED, new)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (A.PENDING, A.RUNNING),
        (A.PENDING, A.SUBMITTED),
        (A.READY, A.SUCCEEDED),
        (A.SKIPPED, A.RUNNING),
        (A.FAILED, A.SUCCEEDED),
    ],
)
def test_impossible_moves_are_refused(old: ActivityState, new: ActivityState) -> None:
    with pytest.raises(InvalidTransition, match=f"{old} -> {new}"):
        check_activity_transition("act", old, new)


def test_normal_life_and_retry_path() -> None:
    path = [
        A.PENDING,
        A.READY,
        A.SUBMITTED,
        A.RUNNING,
        A.READY,
        A.SUBMITTED,
        A.RUNNING,
        A.SUCCEEDED,
    ]
    for old, new in zip(path, path[1:], strict=False):
        check_activity_transition("act", old, new)


def test_workflow_transitions() -> None:
    check_workflow_transition("w", WorkflowState.PENDING, WorkflowState.RUNNING)
    check_workflow_transition("w", WorkflowState.FAILED, WorkflowState.RUNNING)  # retry
    with pytest.raises(InvalidTransition):
        check_workflow_transition("w", WorkflowState.SUCCEEDED, WorkflowState.RUNNING)


def test_workflow_outcome() -> None:
    assert workflow_outcome([A.SUCCEEDED, A.SUCCEEDED]) is WorkflowState.SUCCEEDED
    assert workflow_outcome([A.SUCCEEDED, A.FAILED, A.SKIPPED]) is WorkflowState.FAILED
    assert workflow_outcome([A.CANCELLED, A.SUCCEEDED]) is WorkflowState.CANCELLED
    assert workflow_outcome([A.FAILED, A.CANCELLED]) is WorkflowState.FAILED
    assert A.SKIPPED.is_final and not A.RUNNING.is_final and A.SUBMITTED.is_live


def test_attempt_end_decides_the_activity_and_the_attempt_record() -> None:
    from akoflow.states import AttemptState, attempt_end

    A, T = ActivityState, AttemptState

    def end(**kw: bool) -> tuple[ActivityState, AttemptState]:
        base = {"succeeded": False, "timed_out": False, "cancelled": False, "attempts_left": False}
        return attempt_end(**(base | kw))

    assert end(succeeded=True) == (A.SUCCEEDED, T.SUCCEEDED)
    assert end(succeeded=True, cancelled=True) == (A.SUCCEEDED, T.SUCCEEDED)  # it did finish
    # A timed-out attempt is never a success, even if the script exited 0 while stopping.
    assert end(succeeded=True, timed_out=True) == (A.FAILED, T.FAILED)
    assert end(succeeded=True, timed_out=True, attempts_left=True) == (A.READY, T.FAILED)
    assert end(cancelled=True, attempts_left=True) == (A.CANCELLED, T.CANCELLED)  # no retry
    assert end(attempts_left=True) == (A.READY, T.FAILED)
    assert end() == (A.FAILED, T.FAILED)
    for new, _ in (end(), end(attempts_left=True), end(cancelled=True), end(succeeded=True)):
        assert new in ACTIVITY_TRANSITIONS[A.RUNNING]
