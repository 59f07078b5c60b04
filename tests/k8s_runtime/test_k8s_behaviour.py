"""Failure, cancel, fail-fast, TLS/token, API outage, distributed storage and two clusters."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from akoflow.config import RuntimeConfig
from akoflow.runtimes.base import Outcome
from akoflow.runtimes.kubernetes import KubernetesRuntime
from akoflow.states import ActivityState, WorkflowState
from tests.docker_support.dockerd import PrivateDockerd
from tests.k8s_runtime.conftest import IMAGE, _start_cluster, engine_with, run
from tests.k8s_support.cluster import EmulatedCluster
from tests.k8s_support.kubelet import NodeSpec


def one(name: str, script: str, runtime: str = "k8s-aws", extra: str = "") -> str:
    body = "\n".join("        " + line for line in script.splitlines())
    return (
        f"name: {name}\nspec:\n  runtime: {runtime}\n  image: {IMAGE}\n{extra}"
        f"  activities:\n    - name: {name}\n      run: |\n{body}\n"
    )


def test_a_failing_exit_code_is_recorded_as_failure(
    tmp_path: Path, cluster: EmulatedCluster
) -> None:
    text = one("boom", "echo about to fail\nexit 3")

    async def scenario() -> None:
        async with engine_with(tmp_path, text, cluster.env("k8s-aws")) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            assert await asyncio.wait_for(engine.wait(wf_id), 60) is WorkflowState.FAILED
            act = wf.activities["boom"]
            assert act.state is ActivityState.FAILED
            assert act.exit_code == 3
            assert act.reason == "exit code 3"
            assert "".join(c.data for _, c in repo.read_logs(act.id)) == "about to fail\n"

    run(scenario())
    # The Job's own status says Failed too (backoffLimit 0: the engine owns retries).
    assert cluster.counts()["create jobs"] == 1


def test_cancel_deletes_the_job_with_background_propagation(
    tmp_path: Path, cluster: EmulatedCluster
) -> None:
    text = one("long", "echo started\nsleep 30")

    async def scenario() -> None:
        env = cluster.env("k8s-aws", CLEANUP="never")
        async with engine_with(tmp_path, text, env) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            act = wf.activities["long"]
            while "started" not in "".join(c.data for _, c in repo.read_logs(act.id)):
                await asyncio.sleep(0.1)
            assert len(cluster.objects("v1/pods", "akoflow")) == 1
            engine.cancel(wf_id)
            assert await asyncio.wait_for(engine.wait(wf_id), 30) is WorkflowState.CANCELLED
            assert act.state is ActivityState.CANCELLED

    run(scenario())
    assert cluster.objects("batch/v1/jobs", "akoflow") == []
    assert cluster.objects("v1/pods", "akoflow") == []  # collected with the Job
    assert cluster.counts()["delete jobs"] == 1  # cleanup=never: only the cancel deleted it


def test_image_pull_failure_fails_fast_with_the_reason(
    tmp_path: Path, cluster: EmulatedCluster
) -> None:
    text = one("pull", "echo never").replace(IMAGE, "registry.invalid/nothing:1")

    async def scenario() -> None:
        env = cluster.env("k8s-aws", FAIL_FAST_GRACE="1")
        async with engine_with(tmp_path, text, env) as (_, engine, wf_id):
            wf = await engine.attach(wf_id)
            assert await asyncio.wait_for(engine.wait(wf_id), 30) is WorkflowState.FAILED
            reason = wf.activities["pull"].reason or ""
            assert reason.startswith("the pod could not start: "), reason
            assert "ImagePullBackOff" in reason or "ErrImagePull" in reason
            assert "registry.invalid/nothing:1" in reason

    run(scenario())
    assert cluster.objects("batch/v1/jobs", "akoflow") == []


def test_unschedulable_fails_fast(tmp_path: Path, cluster: EmulatedCluster) -> None:
    text = one("nowhere", "echo never").replace(
        "      run:", "      nodeSelector:\n        disk: ssd\n      run:"
    )

    async def scenario() -> None:
        env = cluster.env("k8s-aws", FAIL_FAST_GRACE="1")
        async with engine_with(tmp_path, text, env) as (_, engine, wf_id):
            wf = await engine.attach(wf_id)
            assert await asyncio.wait_for(engine.wait(wf_id), 30) is WorkflowState.FAILED
            assert "Unschedulable" in (wf.activities["nowhere"].reason or "")

    run(scenario())


class _Events:
    def __init__(self) -> None:
        self.finished: list[tuple[str, Outcome]] = []

    def job_running(self, key: str, node: str | None) -> None:
        pass

    def job_finished(self, key: str, outcome: Outcome) -> None:
        self.finished.append((key, outcome))


async def _health(name: str, environ: dict[str, str]) -> Any:
    rt = KubernetesRuntime(name, RuntimeConfig.from_env(name, environ), _Events())
    await rt.start()
    try:
        return await rt.health()
    finally:
        await rt.stop()


def test_bad_token_and_wrong_ca_are_not_ready_with_a_clear_reason(
    tmp_path: Path, cluster: EmulatedCluster, cluster2: EmulatedCluster
) -> None:
    good = cluster.env("k8s-aws")
    assert run(_health("k8s-aws", good)).ready
    bad_token = {**good, "K8S_AWS_API_SERVER_TOKEN": "not-the-token"}
    health = run(_health("k8s-aws", bad_token))
    assert not health.ready
    assert "rejected the token (401)" in (health.reason or "")
    assert "not-the-token" not in (health.reason or "")
    wrong_ca = {**good, "K8S_AWS_CA_FILE": str(cluster2.ca_file)}  # another cluster's CA
    health = run(_health("k8s-aws", wrong_ca))
    assert not health.ready
    assert "TLS certificate verification failed" in (health.reason or "")
    no_ca = {k: v for k, v in good.items() if not k.endswith("CA_FILE")}
    assert not run(_health("k8s-aws", no_ca)).ready  # verified by default: system CAs only
    insecure = {**no_ca, "K8S_AWS_INSECURE_SKIP_TLS_VERIFY": "true"}
    assert run(_health("k8s-aws", insecure)).ready  # only when asked for explicitly
    assert cluster.counts()["unauthorized /healthz"] == 1


def test_api_outage_mid_run_is_not_ready_then_completes(
    tmp_path: Path, cluster: EmulatedCluster
) -> None:
    text = (
        f"name: outage\nspec:\n  runtime: k8s-aws\n  image: {IMAGE}\n  activities:\n"
        "    - name: slow\n      run: |\n        echo one\n        sleep 3\n        echo two\n"
        "    - name: after\n      dependsOn: [slow]\n      run: echo after\n"
    )

    async def scenario() -> None:
        async with engine_with(tmp_path, text, cluster.env("k8s-aws"), health_interval=0.3) as (
            repo,
            engine,
            wf_id,
        ):
            wf = await engine.attach(wf_id)
            slow = wf.activities["slow"]
            while "one" not in "".join(c.data for _, c in repo.read_logs(slow.id)):
                await asyncio.sleep(0.1)
            await asyncio.to_thread(cluster.stop_api)
            while engine.runtime_status()["k8s-aws"][0]:
                await asyncio.sleep(0.1)
            reason = engine.runtime_status()["k8s-aws"][1] or ""
            assert "not reachable" in reason
            assert {r.name: r for r in repo.list_runtimes()}["k8s-aws"].status == "NOT_READY"
            await asyncio.to_thread(flood, cluster)  # the watches' versions expire (410)
            await asyncio.sleep(4)  # the pod ends while the API is away
            await asyncio.to_thread(cluster.start_api)
            assert await asyncio.wait_for(engine.wait(wf_id), 60) is WorkflowState.SUCCEEDED
            assert "".join(c.data for _, c in repo.read_logs(slow.id)) == "one\ntwo\n"
            assert engine.runtime_status()["k8s-aws"][0]

    run(scenario())
    counts = cluster.counts()
    assert counts["create jobs"] == 2
    # The first watches list nothing (they start from no version); the 410 made them list.
    assert counts["list jobs"] >= 1 and counts["list pods"] >= 1


def flood(cluster: EmulatedCluster) -> None:
    """More changes than the API server's watch history holds."""

    def create_many() -> None:
        for i in range(cluster.store.history.maxlen or 0):
            cm = {"metadata": {"name": f"noise-{i}", "namespace": "akoflow"}, "data": {}}
            cluster.store.create("v1/configmaps", cm)

    cluster.call(create_many)


def test_distributed_storage_gives_each_node_its_own_volume(
    tmp_path: Path, cluster: EmulatedCluster
) -> None:
    text = (
        f"name: dist\nspec:\n  runtime: k8s-aws\n  image: {IMAGE}\n"
        "  storagePolicy:\n    type: distributed\n    storageSize: 1Gi\n  activities:\n"
        "    - name: a\n      run: echo a > a.txt\n"
        "    - name: b\n      run: echo b > b.txt\n"
        "    - name: c\n      dependsOn: [a]\n      run: |\n        cat a.txt\n"
        "        ls\n"
    )

    async def scenario() -> None:
        env = cluster.env("k8s-aws", CLEANUP="never")
        async with engine_with(tmp_path, text, env) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            assert await asyncio.wait_for(engine.wait(wf_id), 60) is WorkflowState.SUCCEEDED
            pods = cluster.objects("v1/pods", "akoflow")
            nodes = {
                p["metadata"]["labels"]["akoflow.io/activity"]: p["spec"]["nodeName"] for p in pods
            }
            assert nodes["a"] != nodes["b"]  # spread over the nodes
            assert nodes["c"] == nodes["a"]  # a dependent runs where its input is
            out = "".join(x.data for _, x in repo.read_logs(wf.activities["c"].id))
            assert out == "a\na.txt\n"  # b.txt is on the other node's volume: not shared

    run(scenario())
    pvcs = cluster.objects("v1/persistentvolumeclaims", "akoflow")
    assert len(pvcs) == 2
    assert {p["spec"]["accessModes"][0] for p in pvcs} == {"ReadWriteOnce"}


def test_two_clusters_in_one_workflow(
    tmp_path: Path, cluster: EmulatedCluster, cluster2: EmulatedCluster
) -> None:
    text = (
        f"name: cross\nspec:\n  image: {IMAGE}\n  activities:\n"
        "    - name: us\n      runtime: k8s-aws\n      run: echo us\n"
        "    - name: eu\n      runtime: k8s-gcp\n      run: echo eu\n"
        "    - name: both\n      runtime: k8s-aws\n      dependsOn: [us, eu]\n      run: echo ok\n"
    )
    env = {**cluster.env("k8s-aws"), **cluster2.env("k8s-gcp")}

    async def scenario() -> None:
        async with engine_with(tmp_path, text, env) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            assert await asyncio.wait_for(engine.wait(wf_id), 60) is WorkflowState.SUCCEEDED
            for name, out in (("us", "us\n"), ("eu", "eu\n"), ("both", "ok\n")):
                got = "".join(c.data for _, c in repo.read_logs(wf.activities[name].id))
                assert got == out
            assert {r.name for r in repo.list_runtimes()} >= {"k8s-aws", "k8s-gcp"}

    run(scenario())
    assert cluster.counts()["create jobs"] == 2
    assert cluster2.counts()["create jobs"] == 1


def test_akoscore_placement_pins_the_job_to_the_chosen_node(
    tmp_path: Path, k8s_dockerd: PrivateDockerd
) -> None:
    nodes = [NodeSpec("small", cpu="2", memory="2Gi"), NodeSpec("roomy", cpu="2", memory="16Gi")]
    cluster = _start_cluster(tmp_path / "k8s", k8s_dockerd, "aws", nodes=nodes)
    text = (
        f"name: placed\nspec:\n  runtime: k8s-aws\n  image: {IMAGE}\n"
        "  schedule: akoscore\n  alpha: 1\n  activities:\n"
        "    - name: big\n      memoryLimit: 1Gi\n      run: echo big\n"
    )

    async def scenario() -> None:
        async with engine_with(tmp_path, text, cluster.env("k8s-aws", CLEANUP="never")) as (
            repo,
            engine,
            wf_id,
        ):
            await engine.attach(wf_id)
            assert await asyncio.wait_for(engine.wait(wf_id), 60) is WorkflowState.SUCCEEDED
            (decision,) = repo.list_placements(wf_id)
            assert decision.node == "roomy"
            assert {c["node"] for c in decision.candidates} == {"small", "roomy"}
            (pod,) = cluster.objects("v1/pods", "akoflow")
            assert pod["spec"]["nodeName"] == "roomy"  # the kubelet ran it there

    try:
        run(scenario())
    finally:
        cluster.close()


def test_cancel_reaches_the_script_trap_through_the_provenance_wrapper(
    tmp_path: Path, cluster: EmulatedCluster
) -> None:
    """The kubelet sends SIGTERM to the pod's PID 1 (the provenance wrapper), then SIGKILL
    after the grace period; the wrapper passes it on, so the script's own trap runs at once."""
    script = (
        "trap 'echo term > got-term.txt; exit 5' TERM\necho started\nwhile :; do sleep 0.2; done"
    )
    text = one("trapped", script)

    async def scenario() -> str:
        env = cluster.env("k8s-aws", CLEANUP="never")
        async with engine_with(tmp_path, text, env) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            act = wf.activities["trapped"]
            while "started" not in "".join(c.data for _, c in repo.read_logs(act.id)):
                await asyncio.sleep(0.1)
            (pvc,) = cluster.objects("v1/persistentvolumeclaims", "akoflow")
            engine.cancel(wf_id)
            assert await asyncio.wait_for(engine.wait(wf_id), 30) is WorkflowState.CANCELLED
            return str(pvc["metadata"]["name"])

    claim = run(scenario())
    marker = cluster.kubelet.pvc_dir("akoflow", claim) / "got-term.txt"
    deadline = time.monotonic() + 10  # well inside the 30 s grace period
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.read_text() == "term\n"
