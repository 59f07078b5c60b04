"""From stored records to an in-memory run, and from an activity to a runtime's job."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from akoflow.engine.model import ActivityRun, WorkflowRun, attempt_key, run_dir
from akoflow.runtimes.base import JobSpec
from akoflow.spec import load_workflow
from akoflow.spec.dag import levels
from akoflow.spec.workflow import Volume
from akoflow.states import ActivityState
from akoflow.store import ActivityRecord, Repository, WorkflowRecord

A = ActivityState


def build_run(repo: Repository, state_dir: Path, rec: WorkflowRecord) -> WorkflowRun:
    """The in-memory run of a stored workflow: its activities, their dependencies, and the
    placement and execution-strategy state (the caller opens the first levels)."""
    workflow = load_workflow(rec.spec_yaml, source=rec.source or f"workflow {rec.id}")
    specs = {a.name: a for a in workflow.activities}
    wf = WorkflowRun(
        id=rec.id,
        name=rec.name,
        workflow=workflow,
        data_dir=Path(rec.data_dir),
        run_dir=run_dir(state_dir, rec.id, rec.name),
        state=rec.state,
        started_at=rec.started_at,
        finished_at=rec.finished_at,
    )
    by_id: dict[int, ActivityRun] = {}
    records: list[ActivityRecord] = repo.list_activities(rec.id)
    runtimes: dict[str, str] = {}
    for r in records:
        spec = specs[r.name]
        act = ActivityRun(
            id=r.id,
            name=spec.name,  # the spec's string (and one of each runtime name), not the row's
            spec=spec,
            runtime=runtimes.setdefault(r.runtime, r.runtime),
            state=r.state,
            attempt=r.attempt,
            max_attempts=r.max_attempts,
            wf=wf,
            exit_code=r.exit_code,
            reason=r.reason,
            node=r.node,
            started_at=r.started_at,
            finished_at=r.finished_at,
        )
        wf.activities[r.name] = act
        by_id[r.id] = act
        if not r.state.is_final:
            wf.remaining += 1
    for act_id, dep_id in repo.list_dependencies(rec.id):
        act, dep = by_id[act_id], by_id[dep_id]
        act.deps.append(dep)
        dep.dependents.append(act)
        if not dep.state.is_success:
            act.deps_left += 1
    if workflow.schedule:
        from akoflow.placement import load_policy  # only a run with a policy needs placement

        wf.placement = load_policy(workflow.schedule)
        wf.history = repo.duration_history(wf.name)
    if workflow.strategy == "first-activity-first":
        depth = levels({a.name: a.depends_on for a in workflow.activities})
        wf.levels_left = [0] * (max(depth.values()) + 1)
        for act in wf.activities.values():
            act.level = depth[act.name]
            if not act.state.is_final:
                wf.levels_left[act.level] += 1
    return wf


def in_volumes(declared: Sequence[str], volumes: Sequence[Volume]) -> bool:
    """Whether a declared path (relative to the data dir) lies in a volume's local side."""
    roots = [v.local.rstrip("/") for v in volumes if not v.local.startswith("/")]
    return any(p == r or p.startswith(r + "/") for p in declared for r in roots if r)


def job_spec(
    act: ActivityRun, attempt: int, node: str | None = None, *, record_files: bool
) -> JobSpec:
    """What a runtime needs to start attempt ``attempt`` of ``act``."""
    wf = act.wf
    key = attempt_key(wf.id, act.name, attempt)
    env = {
        "AKOFLOW_WORKFLOW_ID": str(wf.id),
        "AKOFLOW_WORKFLOW_NAME": wf.name,
        "AKOFLOW_ACTIVITY_ID": str(act.id),
        "AKOFLOW_ACTIVITY_NAME": act.name,
        "AKOFLOW_ATTEMPT": str(attempt),
        "AKOFLOW_DATA_DIR": str(wf.data_dir),
        # Upstream's names, so existing scripts keep working.
        "WORKFLOW_ID": str(wf.id),
        "WORKFLOW_NAME": wf.name,
        "ACTIVITY_ID": str(act.id),
        "ACTIVITY_NAME": act.name,
        "ACTIVITY_MOUNT_PATH": act.spec.mount_path or str(wf.data_dir),
    }
    return JobSpec(
        key=key,
        workflow_id=wf.id,
        workflow_name=wf.name,
        activity_id=act.id,
        activity=act.spec,
        attempt=attempt,
        data_dir=wf.data_dir,
        attempt_dir=wf.run_dir / "attempts",
        env=env,
        namespace=wf.workflow.namespace,
        volumes=wf.workflow.volumes,
        volumes_in=not act.deps
        or any(d.runtime != act.runtime for d in act.deps)
        or in_volumes(act.spec.inputs, wf.workflow.volumes),
        volumes_out=not act.dependents
        or any(d.runtime != act.runtime for d in act.dependents)
        or in_volumes(act.spec.outputs, wf.workflow.volumes),
        storage_policy=wf.workflow.storage_policy,
        node=node,
        record_files=record_files,
    )


__all__ = ["build_run", "job_spec"]
