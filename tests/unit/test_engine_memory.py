"""What the engine keeps per activity stays small at scale (issue 20: 100,000 activities)."""

from __future__ import annotations

from pathlib import Path

import pytest

from akoflow.config import RuntimeConfig
from akoflow.dataplane import DataPlane
from akoflow.engine.model import ActivityRun, RuntimeSlot, WorkflowRun
from akoflow.runtimes.base import Outcome
from akoflow.runtimes.local import LocalRuntime
from akoflow.spec import WorkflowValidationError, load_workflow
from akoflow.states import ActivityState, WorkflowState

WORKFLOW = load_workflow("name: w\nspec:\n  activities:\n    - name: a\n      run: 'true'\n")


def one_activity() -> ActivityRun:
    wf = WorkflowRun(
        1, "w", WORKFLOW, Path("/nonexistent"), Path("/nonexistent"), WorkflowState.RUNNING
    )
    act = ActivityRun(1, "a", WORKFLOW.activities[0], "local", ActivityState.RUNNING, 1, 1, wf)
    wf.activities["a"] = act
    return act


def test_the_in_memory_model_has_slots_not_a_dict_per_object() -> None:
    # With 30 attributes an instance dict is not key-shared: 1.6 KB an activity.
    act = one_activity()
    for obj in (act, act.wf):
        assert not hasattr(obj, "__dict__")
    assert "__dict__" not in RuntimeSlot.__dict__


def test_an_attempt_ended_in_the_data_dir_leaves_nothing_in_the_data_plane() -> None:
    act = one_activity()
    plane = DataPlane(None, lambda name: None, lambda a: None)  # type: ignore[arg-type]
    runtime = LocalRuntime("local", RuntimeConfig("local"), None)  # type: ignore[arg-type]
    assert not plane.wants_collect(act, runtime, Outcome(succeeded=True, exit_code=0))
    assert not plane._ended  # what a 100,000-activity run would accumulate


WIDE = "name: w\nspec:\n  runtime: local\n  activities:\n" + "".join(
    f"    - name: t{i}\n      run: 'true'\n" for i in range(50)
)


def test_a_workflow_loaded_again_while_held_is_the_same_object() -> None:
    # The server validates a submission, then its engine loads it again from the store.
    held = load_workflow(WIDE)
    assert load_workflow("".join(list(WIDE))) is held
    assert load_workflow(WIDE, default_runtime="docker") is not held
    # A repeated script is one string across the activities.
    assert len({id(a.run) for a in held.activities}) == 1


def test_a_runtime_check_is_never_skipped_for_a_loaded_workflow() -> None:
    held = load_workflow(WIDE)
    asked: list[str] = []

    def refuse(name: str) -> str:
        asked.append(name)
        return "no such runtime"

    with pytest.raises(WorkflowValidationError, match="no such runtime"):
        load_workflow(WIDE, runtime_check=refuse)
    assert asked == ["local"]
    assert load_workflow(WIDE) is held


def test_an_activity_is_found_by_its_store_id_also_once_more_were_added() -> None:
    act = one_activity()
    wf = act.wf
    assert wf.activity(1) is act
    assert wf.activity(2) is None
    spec = WORKFLOW.activities[0]
    later = ActivityRun(2, "b", spec, "local", ActivityState.PENDING, 0, 1, wf)
    wf.activities["b"] = later
    assert wf.activity(2) is later and wf.activity(1) is act
