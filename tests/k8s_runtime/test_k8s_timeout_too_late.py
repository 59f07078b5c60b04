"""Kubernetes: a success its timeout's stop came too late for is not timed out.

The Job's container exits 0 well within its timeout; the runtime sees its end only after its
deadline (its watches held), whose stop finds the Job Complete: nothing to stop, no delete
(Outcome.ended_unstopped). Judged by when its container ended (the pod's status, the
cluster's clock) it ended in time: a success, run once. It was recorded 'timed out after 4s'
and run again by its retry: its side effects twice.

The emulated cluster (its kubelet runs the pods on the private dockerd).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from akoflow.runtimes.kubernetes import KubernetesRuntime
from akoflow.states import ActivityState
from tests.k8s_runtime.conftest import IMAGE, engine_with, run
from tests.k8s_runtime.test_k8s_stop_too_late import (
    ENDS_ON_GO,
    HeldWatches,
    _complete,
    _until,
    _workdir,
)
from tests.k8s_support.cluster import EmulatedCluster


def test_a_success_its_deadlines_stop_came_too_late_for_is_not_timed_out(
    tmp_path: Path, cluster: EmulatedCluster
) -> None:
    env = cluster.env("k8s-aws", CLEANUP="never")
    body = "".join(f"        {line}\n" for line in ENDS_ON_GO.splitlines())
    text = (
        f"name: late\nspec:\n  runtime: k8s-aws\n  image: {IMAGE}\n  activities:\n"
        f"    - name: w\n      timeout: 4s\n      retries: 1\n      run: |\n{body}"
    )

    async def scenario() -> tuple[ActivityState, list[tuple[str, str | None]], Path]:
        async with engine_with(tmp_path, text, env) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            act = wf.activities["w"]
            await _until(
                lambda: (_workdir(cluster) or tmp_path / "none").joinpath("started").exists()
            )
            workdir = _workdir(cluster)
            assert workdir is not None
            await _until(lambda: act.timer is not None)  # its deadline armed
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
                await _until(lambda: cancels)  # the deadline's stop returned
                assert act.state is ActivityState.RUNNING
            finally:
                hold.release()
            await asyncio.wait_for(engine.wait(wf_id), 60)
            attempts = [(str(a.state), a.reason) for a in repo.list_attempts(act.id)]
            return act.state, attempts, workdir

    state, attempts, workdir = run(scenario())
    assert (workdir / "side").read_text() == "ran\n"  # once
    assert (state, len(attempts)) == (ActivityState.SUCCEEDED, 1), attempts
    assert cluster.counts()["delete jobs"] == 0  # nothing to stop
