"""Store records (and live engine state) -> API models. No SQL here: it asks the repository."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime

from akoflow.config import REDACTED, is_secret_key
from akoflow.engine import WorkflowRun
from akoflow.server.context import ServerContext
from akoflow.server.schemas import (
    ActivityDetail,
    ActivityOut,
    AttemptOut,
    HoldOut,
    NodeOut,
    StoragePolicyOut,
    Times,
    UpstreamActivity,
    UpstreamRuntime,
    UpstreamWorkflow,
    UpstreamWorkflowSpec,
    WorkflowStateOut,
)
from akoflow.server.summary import live_ready_by_runtime
from akoflow.spec import Activity, Workflow
from akoflow.spec.quantities import parse_memory
from akoflow.states import UPSTREAM_ACTIVITY_STATUS, ActivityState, WorkflowState
from akoflow.store import ActivityRecord, AttemptRecord, NodeRecord, RuntimeRecord, WorkflowRecord

UPSTREAM_WORKFLOW_STATUS: dict[WorkflowState, int] = {
    WorkflowState.PENDING: 0,
    WorkflowState.RUNNING: 1,
    WorkflowState.SUCCEEDED: 2,
    WorkflowState.FAILED: 2,
    WorkflowState.CANCELLED: 2,
}


def now() -> int:
    return int(time.time())


def iso(ts: float | None) -> str:
    """Upstream's timestamps are strings; empty when unset (Go's zero value)."""
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def seconds_text(seconds: float | None) -> str:
    return "" if seconds is None else f"{round(max(0.0, seconds), 3):g}"


def _live(ctx: ServerContext, wf_id: int) -> WorkflowRun | None:
    return ctx.engine.workflows.get(wf_id)


def live_state(
    run: WorkflowRun | None, rec: ActivityRecord
) -> tuple[ActivityState, int, str | None]:
    """State, attempt and node, from the engine when it runs the workflow (the store writes
    RUNNING up to a second late), else from the store."""
    if run is not None:
        act = run.activities.get(rec.name)
        if act is not None:
            return act.state, act.attempt, act.node or rec.node
    return rec.state, rec.attempt, rec.node


def workflow_state(ctx: ServerContext, rec: WorkflowRecord) -> WorkflowState:
    run = _live(ctx, rec.id)
    return run.state if run is not None else rec.state


def workflow_state_out(ctx: ServerContext, rec: WorkflowRecord) -> WorkflowStateOut:
    state = workflow_state(ctx, rec)
    run = _live(ctx, rec.id)
    return WorkflowStateOut(
        id=rec.id,
        name=rec.name,
        state=state.value,
        status=UPSTREAM_WORKFLOW_STATUS[state],
        cancelRequested=rec.cancel_requested or bool(run and run.cancelling),
    )


def _node_selector(spec: Activity | None) -> str:
    if spec is None or not spec.node_selector:
        return ""
    return ",".join(f"{k}={v}" for k, v in spec.node_selector.items())


def _spec_at(workflow: Workflow | None, rec: ActivityRecord) -> Activity | None:
    if workflow is None:
        return None
    if 0 <= rec.position < len(workflow.activities):
        spec = workflow.activities[rec.position]
        if spec.name == rec.name:
            return spec
    return None


def upstream_activity(
    rec: ActivityRecord, spec: Activity | None, run: WorkflowRun | None
) -> UpstreamActivity:
    state, attempt, node = live_state(run, rec)
    duration = (
        rec.finished_at - rec.started_at
        if rec.finished_at is not None and rec.started_at is not None
        else None
    )
    return UpstreamActivity(
        id=rec.id,
        workflowId=rec.workflow_id,
        status=UPSTREAM_ACTIVITY_STATUS[state],
        runtime=rec.runtime,
        name=rec.name,
        run=spec.run if spec else "",
        memoryLimit=(spec.memory_limit or "") if spec else "",
        cpuLimit=(spec.cpu_limit or "") if spec else "",
        dependsOn=list(spec.depends_on) if spec else [],
        nodeSelector=_node_selector(spec),
        keepDisk=spec.keep_disk if spec else False,
        createdAt=iso(rec.created_at),
        startedAt=iso(rec.started_at),
        finishedAt=iso(rec.finished_at),
        executionTime=seconds_text(duration),
        state=state.value,
        position=rec.position,
        image=rec.image or "",
        attempt=attempt,
        maxAttempts=rec.max_attempts,
        exitCode=rec.exit_code,
        reason=rec.reason,
        node=node,
    )


def _fmt_bytes(n: int) -> str:
    for unit, power in (("Ti", 4), ("Gi", 3), ("Mi", 2), ("Ki", 1)):
        if n >= 1024**power:
            return f"{round(n / 1024**power, 2):g}{unit}"
    return str(n)


def _disk_usage(workflow: Workflow | None, n_activities: int) -> str:
    """Upstream's estimate: the storage size, once per activity in standalone mode (each
    activity gets its own volume there)."""
    if workflow is None or not workflow.storage_policy.storage_size:
        return ""
    try:
        size = parse_memory(workflow.storage_policy.storage_size)
    except ValueError:
        return ""
    if workflow.storage_policy.type != "distributed":
        size *= n_activities
    return _fmt_bytes(size)


def upstream_workflow(
    ctx: ServerContext, rec: WorkflowRecord, workflow: Workflow | None, *, with_activities: bool
) -> UpstreamWorkflow:
    """Upstream's ApiWorkflowType, with its computed metrics. ``workflow`` is its parsed spec
    (``ctx.spec``); without activities, no pass over them is made: counts from the engine's
    states in one counting pass (live) or one GROUP BY (stored)."""
    repo = ctx.repo
    run = _live(ctx, rec.id)
    state = run.state if run is not None else rec.state
    if run is not None:  # live counts, consistent with the live states shown
        by_state = Counter(a.state for a in run.activities.values())
    else:
        by_state = Counter(repo.activity_counts(rec.id))
    states = {s.value: c for s, c in by_state.items()}
    n = sum(by_state.values())
    activities: list[UpstreamActivity] = []
    if with_activities:
        activities = [
            upstream_activity(a, _spec_at(workflow, a), run) for a in repo.list_activities(rec.id)
        ]
    longest = ctx.longest(repo, rec)
    started = rec.started_at if run is None else run.started_at or rec.started_at
    finished = rec.finished_at if run is None else run.finished_at
    span = None
    if started is not None:
        span = (finished if finished is not None else time.time()) - started
    policy = workflow.storage_policy if workflow else None
    spec = UpstreamWorkflowSpec(
        image=(workflow.image or "") if workflow else "",
        namespace=rec.namespace,
        storageClassName=(policy.storage_class_name or "") if policy else "",
        storageSize=(policy.storage_size or "") if policy else "",
        storagePolicy=StoragePolicyOut(type=policy.type if policy else "standalone"),
        mountPath=(workflow.mount_path or "") if workflow else "",
        activities=activities,
        createdAt=iso(rec.created_at),
        startExecution=iso(started),
        endExecution=iso(finished),
        executionTime=seconds_text(span),
        longestActivity=longest or "",
        diskUsage=_disk_usage(workflow, n),
    )
    return UpstreamWorkflow(
        name=rec.name,
        status=UPSTREAM_WORKFLOW_STATUS[state],
        id=rec.id,
        spec=spec,
        state=state.value,
        activityCount=n,
        activityStates=states,
        cancelRequested=rec.cancel_requested or bool(run and run.cancelling),
        dataDir=rec.data_dir,
        times=Times(createdAt=rec.created_at, startedAt=started, finishedAt=finished),
        holds=workflow_holds(ctx, rec, run, by_state[ActivityState.READY]),
    )


def workflow_holds(
    ctx: ServerContext, rec: WorkflowRecord, run: WorkflowRun | None, ready: int
) -> list[HoldOut]:
    """The NOT_READY runtimes that hold READY activities of an unfinished run: the engine's
    view of its runtimes, else the store's (status changed at ``updated_at``). ``ready``:
    its READY activities; they are counted per runtime only when some runtime is down."""
    state = run.state if run is not None else rec.state
    if state.is_final or not ready:
        return []
    down: dict[str, tuple[str | None, float | None]] = {}
    slots = ctx.engine.runtimes.slots
    now = time.monotonic()
    for name, slot in slots.items():
        if not slot.ready:
            since = slot.not_ready_since
            down[name] = (slot.reason, None if since is None else max(0.0, now - since))
    for r in ctx.repo.list_runtimes():
        if r.status != "READY" and r.name not in slots:
            down[r.name] = (r.reason, max(0.0, time.time() - r.updated_at))
    if not down:
        return []
    waiting = (
        live_ready_by_runtime(run.activities.values())
        if run is not None
        else ctx.repo.ready_by_runtime(rec.id)
    )
    return [
        HoldOut(runtime=name, reason=down[name][0], notReadyFor=down[name][1], activities=n)
        for name, n in sorted(waiting.items())
        if name in down
    ]


def activity_out(rec: ActivityRecord, run: WorkflowRun | None) -> ActivityOut:
    state, attempt, node = live_state(run, rec)
    return ActivityOut(
        id=rec.id,
        workflowId=rec.workflow_id,
        position=rec.position,
        name=rec.name,
        runtime=rec.runtime,
        image=rec.image,
        state=state.value,
        status=UPSTREAM_ACTIVITY_STATUS[state],
        attempt=attempt,
        maxAttempts=rec.max_attempts,
        exitCode=rec.exit_code,
        reason=rec.reason,
        node=node,
        createdAt=rec.created_at,
        startedAt=rec.started_at,
        finishedAt=rec.finished_at,
    )


def activities_out(
    ctx: ServerContext, wf_id: int, records: Iterable[ActivityRecord]
) -> list[ActivityOut]:
    run = _live(ctx, wf_id)
    return [activity_out(r, run) for r in records]


def attempt_out(a: AttemptRecord) -> AttemptOut:
    return AttemptOut(
        number=a.number,
        state=a.state,
        runtime=a.runtime,
        node=a.node,
        submittedAt=a.submitted_at,
        startedAt=a.started_at,
        finishedAt=a.finished_at,
        exitCode=a.exit_code,
        reason=a.reason,
        cpuSeconds=a.cpu_seconds,
        maxRssBytes=a.max_rss_bytes,
    )


def activity_detail(
    ctx: ServerContext, wf: WorkflowRecord, workflow: Workflow | None, rec: ActivityRecord
) -> ActivityDetail:
    base = activity_out(rec, _live(ctx, wf.id))
    spec = _spec_at(workflow, rec)
    return ActivityDetail(
        **base.model_dump(),
        run=spec.run if spec else "",
        dependsOn=list(spec.depends_on) if spec else [],
        memoryLimit=spec.memory_limit if spec else None,
        cpuLimit=spec.cpu_limit if spec else None,
        retries=spec.retries if spec else 0,
        timeoutSeconds=spec.timeout_seconds if spec else None,
        attempts=[attempt_out(a) for a in ctx.repo.list_attempts(rec.id)],
    )


def redact(config: dict[str, str]) -> dict[str, str]:
    """Stored configs are already redacted; redact again so no path can leak a secret."""
    return {k: (REDACTED if is_secret_key(k) else v) for k, v in config.items()}


def upstream_runtime(rec: RuntimeRecord) -> UpstreamRuntime:
    return UpstreamRuntime(
        name=rec.name,
        status=1 if rec.status == "READY" else 0,
        metadata=redact(rec.config),
        createdAt=iso(rec.checked_at or rec.updated_at),
        updatedAt=iso(rec.updated_at),
        deletedAt="",
        kind=rec.kind,
        state=rec.status,
        reason=rec.reason,
    )


def node_out(rec: NodeRecord) -> NodeOut:
    return NodeOut(
        runtime=rec.runtime,
        name=rec.name,
        status=rec.status,
        cpuCapacity=rec.cpu_capacity,
        memoryCapacity=rec.memory_capacity,
        cpuUsage=rec.cpu_usage,
        memoryUsage=rec.memory_usage,
        updatedAt=rec.updated_at,
    )
