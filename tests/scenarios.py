"""Scenarios every runtime must pass, shared by the runtime suites (local, docker, singularity,
hpc). Each suite brings its own engine and workflow header; the checks are the same."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from akoflow.runtimes.base import JobSpec
from akoflow.spec import Activity
from akoflow.states import ActivityState, WorkflowState


def busy_activity(seconds: int = 3) -> str:
    """YAML of one activity ``burn``: prints, keeps a CPU busy for ``seconds``, prints again
    (busybox sh and bash alike)."""
    return (
        "    - name: burn\n      run: |\n        echo started\n"
        f"        end=$(( $(date +%s) + {seconds} ))\n"
        "        while [ $(date +%s) -lt $end ]; do i=0; while [ $i -lt 2000 ]; do"
        " i=$((i+1)); done; done\n"
        "        echo finished\n"
    )


async def follow_busy_activity(repo: Any, engine: Any, wf_id: int) -> Any:
    """Run the workflow of :func:`busy_activity` to its end and check what every runtime owes:
    output stored while the activity runs, all of it at the end, CPU and memory samples.
    Returns the activity for runtime-specific checks."""
    wf = await engine.attach(wf_id)
    act = wf.activities["burn"]
    seen_live = False
    while not wf.state.is_final:
        await asyncio.sleep(0.1)
        if act.state is ActivityState.RUNNING:
            stored = "".join(c.data for _, c in repo.read_logs(act.id))
            seen_live = seen_live or stored == "started\n"
    assert wf.state is WorkflowState.SUCCEEDED, {a.name: a.reason for a in wf.activities.values()}
    assert seen_live, "output was not stored while the activity ran"
    assert "".join(c.data for _, c in repo.read_logs(act.id)) == "started\nfinished\n"
    samples = repo.read_metrics(act.id)
    assert samples, "no metrics sample"
    # A busy loop uses CPU: even a loaded 2-core machine gives it a visible share.
    assert max(s[2] or 0 for s in samples) > 5
    assert any((s[3] or 0) > 0 for s in samples)
    return act


async def run_busy_workflow(tmp_path: Path, text: str) -> tuple[Any, Any]:
    """:func:`follow_busy_activity` on a fresh engine (logs read every 0.2 s, metrics sampled
    every 0.5 s); the runtime is READY at the end. Returns the repository and the activity."""
    from tests.e2e.test_engine_inprocess import engine_with

    async with engine_with(tmp_path, text, log_interval=0.2, metrics_interval=0.5) as (
        repo,
        engine,
        wf_id,
    ):
        act = await follow_busy_activity(repo, engine, wf_id)
        (rt,) = [r for r in repo.list_runtimes() if r.name == act.runtime]
        assert rt.status == "READY", rt.reason
    return repo, act


def direct_job(
    tmp_path: Path,
    name: str,
    run: str,
    runtime: str,
    image: str | None,
    attempt: int = 1,
    env: Mapping[str, str] | None = None,
) -> JobSpec:
    """A JobSpec for driving a runtime directly (no engine): data and attempt dirs under
    ``tmp_path``, workflow 1, activity 1."""
    attempts = tmp_path / "attempts"
    attempts.mkdir(exist_ok=True)
    (tmp_path / "data").mkdir(exist_ok=True)
    act = Activity(name=name, run=run, runtime=runtime, image=image, env=dict(env or {}))
    return JobSpec(
        key=f"wf1-{name}-a{attempt}",
        workflow_id=1,
        workflow_name="direct",
        activity_id=1,
        activity=act,
        attempt=attempt,
        data_dir=tmp_path / "data",
        attempt_dir=attempts,
    )
