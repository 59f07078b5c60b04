"""Deleting a run that ran on the emulated Kubernetes cluster removes its volume, Jobs and
pods (CLEANUP=never kept them), found by its scope and workflow id; another state dir's
workflow 1 on the same cluster and namespace keeps every object of its own."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from akoflow.config import RuntimeConfig
from akoflow.gc import Collector
from akoflow.gc.collector import _NoEvents
from akoflow.runtimes.base import Runtime
from akoflow.runtimes.registry import create_runtime
from akoflow.states import WorkflowState
from tests.k8s_runtime.conftest import IMAGE, engine_with, run
from tests.k8s_support.cluster import EmulatedCluster

TEXT = f"""\
name: kept
spec:
  runtime: k8s-aws
  image: {IMAGE}
  activities:
    - name: write
      cache: false
      run: echo hi > hi.txt
    - name: read
      cache: false
      dependsOn: [write]
      run: cat hi.txt
"""


def lease_from(environ: Mapping[str, str]) -> object:
    @contextlib.asynccontextmanager
    async def lease(name: str) -> AsyncIterator[Runtime]:
        runtime = create_runtime(name, _NoEvents(), RuntimeConfig.from_env(name, environ))
        await runtime.start()
        try:
            yield runtime
        finally:
            await runtime.stop()

    return lease


def names(cluster: EmulatedCluster, rkey: str) -> set[str]:
    return {o["metadata"]["name"] for o in cluster.objects(rkey, "akoflow")}


def test_the_run_s_volume_jobs_and_pods_go_and_another_state_dir_s_stay(
    tmp_path: Path, cluster: EmulatedCluster
) -> None:
    environ = cluster.env("k8s-aws", CLEANUP="never")

    async def one_run(where: Path) -> int:
        async with engine_with(where, TEXT, environ) as (repo, engine, wf_id):
            await engine.attach(wf_id)
            assert await asyncio.wait_for(engine.wait(wf_id), 120) is WorkflowState.SUCCEEDED
        repo.close()
        return wf_id

    assert run(one_run(tmp_path / "a")) == 1
    after_a = {k: names(cluster, k) for k in ("v1/persistentvolumeclaims", "batch/v1/jobs")}
    assert run(one_run(tmp_path / "b")) == 1  # another state dir: also workflow 1
    before = {k: names(cluster, k) for k in after_a}
    before["v1/pods"] = names(cluster, "v1/pods")
    assert len(before["v1/persistentvolumeclaims"]) == 2 and len(before["batch/v1/jobs"]) == 4

    async def delete_a() -> list[str]:
        from akoflow import service

        repo = service.open_repository(tmp_path / "a" / "state")
        try:
            collector = Collector(repo, tmp_path / "a" / "state", runtimes=lease_from(environ))  # type: ignore[arg-type]
            report = await collector.delete([1])
        finally:
            repo.close()
        (deleted,) = report.deleted
        (remote,) = deleted.remote
        assert remote.runtime == "k8s-aws" and remote.left is None, remote.left
        return list(remote.removed)

    removed = run(delete_a())
    pvcs, jobs = (names(cluster, k) for k in ("v1/persistentvolumeclaims", "batch/v1/jobs"))
    assert pvcs == before["v1/persistentvolumeclaims"] - after_a["v1/persistentvolumeclaims"]
    assert jobs == before["batch/v1/jobs"] - after_a["batch/v1/jobs"]
    assert len(pvcs) == 1 and len(jobs) == 2
    gone = {r.split(" ", 1)[1].split("/", 1)[1] for r in removed}
    assert after_a["v1/persistentvolumeclaims"] | after_a["batch/v1/jobs"] <= gone
    assert not gone & (pvcs | jobs | names(cluster, "v1/pods"))
