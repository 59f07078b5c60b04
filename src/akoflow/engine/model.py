"""The engine's in-memory model of attached runs: activities, workflows, runtime slots.

Each object mirrors rows of the store (which stays the truth after any crash) plus what only
a live engine knows: queues, timers, the live attempt's handle and log offsets.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from akoflow.runtimes.base import NodeInfo, Runtime
from akoflow.spec import Activity, Workflow
from akoflow.states import ActivityState, WorkflowState

if TYPE_CHECKING:  # placement is imported when a run has a policy (spec.schedule)
    from akoflow.placement import PlacementPolicy, Reserved


@dataclass(eq=False, slots=True)
class ActivityRun:
    """In-memory state of one activity of an attached workflow (mirrors its DB row)."""

    id: int
    name: str
    spec: Activity
    runtime: str
    state: ActivityState
    attempt: int
    max_attempts: int
    wf: WorkflowRun
    deps: list[ActivityRun] = field(default_factory=list)
    dependents: list[ActivityRun] = field(default_factory=list)
    deps_left: int = 0
    exit_code: int | None = None
    reason: str | None = None
    node: str | None = None
    started_at: float | None = None  # first attempt's submission (wall clock)
    finished_at: float | None = None
    attempt_started: float | None = None
    key: str | None = None  # key of the live attempt
    handle: dict[str, Any] = field(default_factory=dict)
    log_offsets: dict[str, int] = field(default_factory=dict)
    cancel_requested: bool = False
    timed_out: bool = False
    # How long the live attempt ran when it outlived its timeout while no engine watched
    # (judged when collected, by the runtime's clock): said in its reason.
    ran_unwatched: float | None = None
    stop_reason: str | None = None  # why the live attempt was asked to stop (stored first)
    timer: asyncio.TimerHandle | None = None
    level: int = 0  # DAG depth (first-activity-first)
    dispatched_at: float = 0.0  # start of the window in which its writes are attributed to it
    adopted: bool = False  # the live attempt was taken over after a restart
    exited_at: float | None = None  # when the runtime reported the end (before batching)
    # The key of the live attempt whose end the runtime reported, not recorded yet (it waits
    # for the next batch): a stop (cancel, timeout) asked meanwhile comes too late, and the
    # end stands as it came.
    ended_key: str | None = None
    placed: tuple[str, Reserved] | None = None  # node and resources reserved there
    observed: bool = False  # the live attempt's processes are observed (provenance)


@dataclass(eq=False, slots=True)
class WorkflowRun:
    """A run the engine attached: its workflow, where its data is, its activities' states."""

    id: int
    name: str
    workflow: Workflow
    data_dir: Path
    run_dir: Path
    state: WorkflowState
    activities: dict[str, ActivityRun] = field(default_factory=dict)
    remaining: int = 0  # activities not in a final state
    cancelling: bool = False
    started_at: float | None = None
    finished_at: float | None = None
    done: asyncio.Future[WorkflowState] | None = None
    placement: PlacementPolicy | None = None  # spec.schedule
    history: dict[str, list[tuple[str | None, float]]] = field(default_factory=dict)
    levels_left: list[int] | None = None  # first-activity-first: live activities per level
    open_level: int = 0
    held: list[ActivityRun] = field(default_factory=list)  # READY but of a later level
    releasing: int = 0  # ended attempts whose backend objects are being removed
    runtimes_told: bool = False  # of its end, before it is recorded (Runtime.run_ended)
    _by_id: dict[int, ActivityRun] = field(default_factory=dict, init=False, repr=False)

    def activity(self, act_id: int) -> ActivityRun | None:
        """The activity with store id ``act_id`` (an index built at the first look, again
        when activities were added since): a look through them all per file an attempt
        wrote made a 100,000-activity run quadratic."""
        found = self._by_id.get(act_id)
        if found is None and len(self._by_id) != len(self.activities):
            self._by_id = {act.id: act for act in self.activities.values()}
            found = self._by_id.get(act_id)
        return found


@dataclass(eq=False, slots=True)
class RuntimeSlot:
    """A runtime in use and the queue of its READY activities."""

    runtime: Runtime
    limit: int
    ready: bool = False
    reason: str | None = None
    queue: deque[ActivityRun] = field(default_factory=deque)
    running: int = 0
    started: bool = False
    failing: str | None = None  # held work fails with this (misconfigured, READY_TIMEOUT)
    not_ready_since: float | None = None
    nodes: list[NodeInfo] | None = None  # as last reported (placement)
    reserved: dict[str, Reserved] = field(default_factory=dict)


def taken_apart(wf: WorkflowRun, chunk: int) -> Iterator[None]:
    """Drop what ``wf`` and its activities hold of each other, ``chunk`` activities at a time
    (it yields between chunks): each activity is in cycles (its run holds it, it holds its
    run, its dependencies and dependents hold it), so only a full collection freed a run's
    activities, 0.23 s for 40,000 with the event loop standing still. Taken apart, they are
    freed by reference counting as it goes. Only for a run nothing uses any more."""
    acts = list(wf.activities.values())
    wf.activities = {}
    wf._by_id = {}
    wf.held = []
    while acts:
        part = acts[-chunk:]
        del acts[-chunk:]
        for act in part:
            act.deps.clear()
            act.dependents.clear()
        del part
        yield


def attempt_key(wf_id: int, activity: str, attempt: int) -> str:
    return f"wf{wf_id}-{activity}-a{attempt}"


def run_dir(state_dir: Path, wf_id: int, name: str) -> Path:
    return state_dir / "runs" / f"{wf_id}-{name}"


RELEASE_TIMEOUT = 60.0  # s; removing a backend object, or listing what a crash left

__all__ = [
    "RELEASE_TIMEOUT",
    "ActivityRun",
    "RuntimeSlot",
    "WorkflowRun",
    "attempt_key",
    "run_dir",
]
