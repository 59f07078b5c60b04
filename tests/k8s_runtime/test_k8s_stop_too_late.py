"""Kubernetes: a cancel asked after the Job completed does not undo its success.

The engine asks the runtime to stop an attempt (a cancel) whose Job had already completed
(its pod's container exited 0), its end not yet seen by the runtime's watches. The API says
the Job is Complete: a delete would stop nothing, it is not sent, and the success stands; a
retry has nothing to run (it was recorded cancelled and run again: its side effects twice).
A Job deleted while its script runs (the script traps the SIGTERM and exits 0) was stopped:
cancelled, as before.

The emulated cluster (its kubelet runs the pods on the private dockerd); the runtime's Job
and Pod watches are held while the Job completes and the cancel is asked.
"""

from __future__ import annotations

import asyncio
import functools
import time
from pathlib import Path
from typing import Any

from akoflow.runtimes.kubernetes import KubernetesRuntime
from akoflow.states import ActivityState, WorkflowState
from tests.k8s_runtime.conftest import IMAGE, engine_with, run
from tests.k8s_support.cluster import EmulatedCluster
from tests.late_stop import ENDS_ON_GO, TRAPS_THE_STOP, until

NS = "akoflow"
_until = functools.partial(until, step=0.05)  # each look reads the cluster


def _workflow(script: str) -> str:
    body = "".join(f"        {line}\n" for line in script.splitlines())
    return (
        f"name: late\nspec:\n  runtime: k8s-aws\n  image: {IMAGE}\n"
        f"  activities:\n    - name: w\n      run: |\n{body}"
    )


def _workdir(cluster: EmulatedCluster) -> Path | None:
    claims = cluster.objects("v1/persistentvolumeclaims", NS)
    return cluster.kubelet.pvc_dir(NS, claims[0]["metadata"]["name"]) if claims else None


def _complete(cluster: EmulatedCluster) -> bool:
    conditions = [
        c
        for job in cluster.objects("batch/v1/jobs", NS)
        for c in (job.get("status") or {}).get("conditions") or []
    ]
    return any(c.get("type") == "Complete" and c.get("status") == "True" for c in conditions)


class HeldWatches:
    """The runtime's Job and Pod watch events held until :meth:`release`."""

    def __init__(self, rt: KubernetesRuntime) -> None:
        self.held: list[tuple[Any, str, Any]] = []
        self.holding = True
        self.watches = [w for pair in rt._watches.values() for w in pair]
        for watch in self.watches:
            original = watch._on_event

            def on_event(kind: str, obj: Any, original: Any = original) -> None:
                if self.holding:
                    self.held.append((original, kind, obj))
                else:
                    original(kind, obj)

            watch._on_event = on_event

    def release(self) -> None:
        self.holding = False
        held, self.held = self.held, []
        for original, kind, obj in held:
            original(kind, obj)


def test_a_job_that_completed_before_its_cancel_stays_a_success(
    tmp_path: Path, cluster: EmulatedCluster
) -> None:
    env = cluster.env("k8s-aws", CLEANUP="never")

    async def scenario() -> tuple[ActivityState, int | None, int, Path]:
        async with engine_with(tmp_path, _workflow(ENDS_ON_GO), env) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            act = wf.activities["w"]
            await _until(
                lambda: (_workdir(cluster) or tmp_path / "none").joinpath("started").exists()
            )
            workdir = _workdir(cluster)
            assert workdir is not None
            rt = engine.runtimes.slots["k8s-aws"].runtime
            assert isinstance(rt, KubernetesRuntime)
            cancels: list[str] = []
            cancel = rt.cancel

            async def cancelled(key: str, handle: Any) -> None:
                await cancel(key, handle)
                cancels.append(key)

            rt.cancel = cancelled  # type: ignore[method-assign]
            hold = HeldWatches(rt)
            try:
                (workdir / "go").touch()
                await _until(lambda: _complete(cluster))  # the runtime not told
                assert act.state is ActivityState.RUNNING
                engine.cancel(wf_id)
                await _until(lambda: cancels)  # the runtime's cancel returned
            finally:
                hold.release()
            await asyncio.wait_for(engine.wait(wf_id), 60)
            if repo.get_workflow(wf_id).state is WorkflowState.CANCELLED:  # type: ignore[union-attr]
                await engine.retry(wf_id)  # nothing left to run
                await asyncio.wait_for(engine.wait(wf_id), 60)
            return act.state, act.exit_code, len(repo.list_attempts(act.id)), workdir

    state, code, attempts, workdir = run(scenario())
    assert (state, code, attempts) == (ActivityState.SUCCEEDED, 0, 1)
    assert (workdir / "side").read_text() == "ran\n"  # ran once; the retry had nothing to run
    assert cluster.counts()["delete jobs"] == 0  # cleanup=never: nothing to stop, no delete


def test_a_job_deleted_while_its_script_runs_was_stopped(
    tmp_path: Path, cluster: EmulatedCluster
) -> None:
    env = cluster.env("k8s-aws", CLEANUP="never")

    async def scenario() -> tuple[ActivityState, Path]:
        async with engine_with(tmp_path, _workflow(TRAPS_THE_STOP), env) as (_, engine, wf_id):
            wf = await engine.attach(wf_id)
            await _until(
                lambda: (_workdir(cluster) or tmp_path / "none").joinpath("started").exists()
            )
            workdir = _workdir(cluster)
            assert workdir is not None
            engine.cancel(wf_id)
            await asyncio.wait_for(engine.wait(wf_id), 60)
            return wf.activities["w"].state, workdir

    state, workdir = run(scenario())
    assert state is ActivityState.CANCELLED
    deadline = time.monotonic() + 20  # the kubelet's SIGTERM, inside the grace period
    while not (workdir / "side").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (workdir / "side").read_text() == "stopped\n"  # the stop reached it, it exited 0
    assert cluster.counts()["delete jobs"] == 1


def test_an_end_seen_but_not_yet_told_stays_a_success(
    tmp_path: Path, cluster: EmulatedCluster
) -> None:
    """The runtime has read the Job's end and its outcome is on its way to the engine when
    the cancel comes: no delete, and the success stands."""
    env = cluster.env("k8s-aws", CLEANUP="never")

    async def scenario() -> tuple[ActivityState, int | None, int, Path]:
        async with engine_with(tmp_path, _workflow(ENDS_ON_GO), env) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            act = wf.activities["w"]
            await _until(
                lambda: (_workdir(cluster) or tmp_path / "none").joinpath("started").exists()
            )
            workdir = _workdir(cluster)
            assert workdir is not None
            rt = engine.runtimes.slots["k8s-aws"].runtime
            assert isinstance(rt, KubernetesRuntime)
            emit, held = rt._emit, []

            def held_emit(t: Any, what: str, payload: Any) -> None:
                if what == "finished" and not cancels:
                    held.append((t, what, payload))
                else:
                    emit(t, what, payload)

            cancels: list[str] = []
            cancel = rt.cancel

            async def cancelled(key: str, handle: Any) -> None:
                await cancel(key, handle)
                cancels.append(key)

            rt._emit = held_emit  # type: ignore[method-assign]
            rt.cancel = cancelled  # type: ignore[method-assign]
            try:
                (workdir / "go").touch()
                await _until(lambda: held)  # its end read by the runtime, the engine not told
                engine.cancel(wf_id)
                await _until(lambda: cancels)
            finally:
                cancels.append("")
                for args in held:
                    emit(*args)
            await asyncio.wait_for(engine.wait(wf_id), 60)
            if repo.get_workflow(wf_id).state is WorkflowState.CANCELLED:  # type: ignore[union-attr]
                await engine.retry(wf_id)
                await asyncio.wait_for(engine.wait(wf_id), 60)
            return act.state, act.exit_code, len(repo.list_attempts(act.id)), workdir

    state, code, attempts, workdir = run(scenario())
    assert (state, code, attempts) == (ActivityState.SUCCEEDED, 0, 1)
    assert (workdir / "side").read_text() == "ran\n"
    assert cluster.counts()["delete jobs"] == 0
