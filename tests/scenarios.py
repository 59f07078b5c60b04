"""Scenarios every runtime must pass, shared by the runtime suites (local, docker, singularity,
hpc). Each suite brings its own engine and workflow header; the checks are the same."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sqlite3
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from akoflow import service
from akoflow.runtimes.base import JobSpec
from akoflow.runtimes.local_spawner import Spawner
from akoflow.spec import Activity
from akoflow.states import ActivityState, WorkflowState
from akoflow.store import ActivityRecord


def attempt_rows(state_dir: Path, activity: str) -> list[tuple[int, str, str | None]]:
    """(number, state, reason) of each attempt of ``activity`` in the state dir's store (read
    only, beside a live engine's writes)."""
    uri = f"file:{state_dir / 'akoflow.db'}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        db.execute("PRAGMA busy_timeout = 10000")
        rows = db.execute(
            "SELECT t.number, t.state, t.reason FROM attempts t "
            "JOIN activities a ON a.id = t.activity_id WHERE a.name = ? ORDER BY t.number",
            (activity,),
        ).fetchall()
    return [(int(n), str(state), reason) for n, state, reason in rows]


@contextlib.contextmanager
def run_held_open(tmp_path: Path, state_dir: Path) -> Iterator[Path]:
    """`akoflow run` (in the background) of workflow ``w``, whose one activity runs until the
    block ends (not a fixed sleep: a loaded machine once started the block's command after
    it ended): its workflow file, once the activity started. The run must then succeed."""
    from tests.conftest import start_cli, wait_for

    go = tmp_path / "go"
    wf = tmp_path / "w.yaml"
    wf.write_text(
        "name: w\nspec:\n  activities:\n    - name: s\n      run: |\n"
        f"        for i in $(seq 1200); do [ -e '{go}' ] && break; sleep 0.05; done\n"
    )
    engine = start_cli(["run", str(wf), "--quiet", "--state-dir", str(state_dir)])
    try:
        wait_for(lambda: (state_dir / "runs" / "1-w" / "attempts" / "s.1.exit").exists())
        yield wf
    finally:
        go.touch()
        engine.communicate(timeout=60)
    assert engine.returncode == 0


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


def store_intent_engine_gone(
    state_dir: Path, workflow: Path, data: Path
) -> tuple[int, ActivityRecord]:
    """The store as an engine SIGKILLed just after recording attempt 1's intent leaves it (the
    intent is stored before the launch): ``workflow`` stored and RUNNING, its first activity
    READY with attempt 1 begun, no handle and no start. Returns the run's id and the
    activity's record."""
    prepared = service.validate_text(workflow.read_text(), str(workflow))
    repo = service.open_repository(state_dir)
    try:
        wf_id = service.store(repo, state_dir, prepared, data)
        act = repo.list_activities(wf_id)[0]
        repo.set_activity_states([(act.id, ActivityState.READY)])
        repo.begin_attempt(act.id, 1, runtime="local", handle={})
        repo.set_workflow_state(wf_id, WorkflowState.RUNNING)
    finally:
        repo.close()
    return wf_id, act


@contextlib.contextmanager
def spawner_in_process() -> Iterator[tuple[Spawner, socket.socket]]:
    """A real local spawner in this process, and the engine's end of its socket."""
    engine_end, spawner_end = socket.socketpair()
    with engine_end, spawner_end:
        spawner = Spawner(spawner_end.fileno())
        try:
            yield spawner, engine_end
        finally:
            os.close(spawner.devnull)


def spawn_attempt(spawner: Spawner, prefix: str, script: bytes, data: Path) -> None:
    """Ask ``spawner`` to launch the local attempt whose files are ``prefix``
    (``.../attempts/NAME.N``), running ``script`` in ``data``, as the engine's request does."""
    spawner.spawn(
        Path(prefix).name,
        prefix,
        script,
        f"{prefix}.sh",
        "/bin/bash",
        ["bash", f"{prefix}.sh"],
        {"AKOFLOW_ATTEMPT_FILES": prefix},
        str(data),
        0o022,
        None,
    )
