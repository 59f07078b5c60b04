"""Hostile pass on the data plane (issue 17), Kubernetes side: the run's transfer pod deleted
by someone (``kubectl delete pod``) after the last attempt there was released and before the
next activity elsewhere fetches what it wrote through it (the pod lingers for that fetch)."""

from __future__ import annotations

import asyncio
import ssl
import threading
from pathlib import Path

import httpx
import pytest

from akoflow import service
from akoflow.runtimes.kubernetes.manifests import A_WORKFLOW_NAME
from akoflow.states import ActivityState, WorkflowState
from tests.hostile.test_dataplane_links import free_fifo_later, longest_stall
from tests.hpc_runtime.test_hpc_engine import states, until
from tests.k8s_runtime.conftest import IMAGE, engine_with, run
from tests.k8s_runtime.test_k8s_data_plane import NS, RT, env_of, transfer_pods
from tests.k8s_support.cluster import EmulatedCluster

pytestmark = [pytest.mark.k8s, pytest.mark.docker, pytest.mark.needs_root]

GAP = f"""\
name: gap
spec:
  activities:
    - name: produce
      runtime: {RT}
      image: {IMAGE}
      run: cat seed.txt seed.txt > made.txt
    - name: gate
      runtime: local
      run: i=0; until [ -f GO ] || [ $i -ge 1200 ]; do sleep 0.05; i=$((i+1)); done
    - name: consume
      runtime: local
      dependsOn: [produce, gate]
      run: cat made.txt > got.txt
"""


async def delete_pod(cluster: EmulatedCluster, name: str) -> None:
    async with httpx.AsyncClient(
        verify=ssl.create_default_context(cafile=str(cluster.ca_file)),
        headers={"Authorization": f"Bearer {cluster.token}"},
    ) as client:
        r = await client.delete(f"{cluster.url}/api/v1/namespaces/{NS}/pods/{name}")
        assert r.status_code == 200, r.text


def test_a_transfer_pod_deleted_between_a_release_and_the_next_fetch(
    tmp_path: Path, cluster: EmulatedCluster
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "seed.txt").write_text("seed\n")  # copied in first: the run's transfer pod is made

    async def scenario() -> None:
        async with engine_with(tmp_path, GAP, env_of(cluster)) as (_, engine, wf_id):
            wf = await engine.attach(wf_id)
            produce = wf.activities["produce"]
            await until(lambda: produce.state is ActivityState.SUCCEEDED, 60, "produce's end")
            (pod,) = transfer_pods(cluster)  # lingering for the next fetch
            await delete_pod(cluster, pod["metadata"]["name"])
            (data / "GO").touch()
            state = await asyncio.wait_for(engine.wait(wf_id), timeout=90)
            assert state is WorkflowState.SUCCEEDED, states(wf)

    run(scenario())
    assert (data / "got.txt").read_text() == "seed\nseed\n"
    assert transfer_pods(cluster) == []


def test_a_fifo_planted_at_a_copys_temporary_name_does_not_freeze_the_engine(
    tmp_path: Path, cluster: EmulatedCluster
) -> None:
    flow = f"""\
name: fifo
spec:
  activities:
    - name: plant
      runtime: local
      run: mkfifo .out.txt.akoflow-part
    - name: make
      runtime: {RT}
      image: {IMAGE}
      dependsOn: [plant]
      run: echo written in the cluster > out.txt
"""

    async def scenario() -> None:
        async with engine_with(tmp_path, flow, env_of(cluster)) as (_, engine, wf_id):
            await engine.attach(wf_id)
            await asyncio.wait_for(engine.wait(wf_id), timeout=90)

    done = threading.Event()
    guard = free_fifo_later(tmp_path / "data" / ".out.txt.akoflow-part", 6, done)
    try:
        frozen = run(longest_stall(scenario()))
    finally:
        done.set()
        guard.join()
    assert frozen < 3, f"the engine's event loop stood still for {frozen:.1f} s"


def two_runs(tag: str, sleep: int) -> str:
    return f"""\
name: {tag}
spec:
  activities:
    - name: remote
      runtime: {RT}
      image: {IMAGE}
      run: sleep {sleep}; cat seed.txt > {tag}.txt
    - name: back
      runtime: local
      dependsOn: [remote]
      run: cat {tag}.txt {tag}.txt > {tag}-twice.txt
"""


def test_two_runs_on_one_runtime_each_ends_with_its_transfer_pod_only(
    tmp_path: Path, cluster: EmulatedCluster
) -> None:
    """As in server mode: one engine, one Kubernetes runtime, two runs at once. The first run
    ends while its transfer pod lingers (its last fetch just used it); its end deletes its own
    pod, never the other run's, which goes on copying through its own."""
    data2 = tmp_path / "data2"
    data2.mkdir()
    (data2 / "seed.txt").write_text("second\n")
    data = tmp_path / "data"
    data.mkdir()
    (data / "seed.txt").write_text("first\n")

    async def scenario() -> None:
        async with engine_with(tmp_path, two_runs("one", 0), env_of(cluster)) as (
            repo,
            engine,
            first,
        ):
            prepared = service.validate_text(two_runs("two", 4), "two.yaml")
            second = service.store(repo, tmp_path / "state", prepared, data2)
            wf1 = await engine.attach(first)
            wf2 = await engine.attach(second)
            state = await asyncio.wait_for(engine.wait(first), timeout=60)
            assert state is WorkflowState.SUCCEEDED, states(wf1)
            assert wf2.state is WorkflowState.RUNNING
            left = [p["metadata"]["annotations"] for p in transfer_pods(cluster)]
            assert [a.get(A_WORKFLOW_NAME) for a in left] == ["two"]  # not the first's
            state = await asyncio.wait_for(engine.wait(second), timeout=60)
            assert state is WorkflowState.SUCCEEDED, states(wf2)
            assert transfer_pods(cluster) == []  # gone with its run, before the engine stops

    run(scenario())
    assert (data / "one-twice.txt").read_text() == "first\nfirst\n"
    assert (data2 / "two-twice.txt").read_text() == "second\nsecond\n"
