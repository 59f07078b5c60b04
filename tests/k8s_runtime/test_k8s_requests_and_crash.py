"""API requests per activity do not grow with run time, and are at most 4 (watches, log
streams and a run's namespace, account and claim included) from 4 activities on; Jobs are
created at once; an engine SIGKILL is survived.

Per-activity requests are those that name one attempt's objects (Job create, its pod's log
stream; the Jobs' deletion, shared); cluster-wide ones (watch streams, /healthz, node and
metrics lists) are counted apart: they depend on wall time and namespaces, not on the number
of jobs. Of those, /healthz and the node and metrics lists are sampled in time (the engine's
health and metrics loops): never counted per activity.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from akoflow.config import RuntimeConfig
from akoflow.runtimes.kubernetes import runtime as k8s_runtime
from akoflow.runtimes.registry import create_runtime
from akoflow.states import WorkflowState
from tests.conftest import Akoflow, cli_env, start_cli
from tests.contract.runtime_contract import Events
from tests.k8s_runtime.conftest import IMAGE, engine_with, run
from tests.k8s_support.cluster import EmulatedCluster
from tests.scenarios import direct_job

PERIODIC = ("watch", "get healthz", "list nodes", "list metrics/", "list jobs", "list pods")
SAMPLED = ("get healthz", "list nodes", "list metrics/")


def per_activity(before: Counter[str], after: Counter[str]) -> Counter[str]:
    delta = after - before
    return Counter({k: v for k, v in delta.items() if not k.startswith(PERIODIC)})


def test_requests_per_activity_do_not_grow_with_run_time(
    tmp_path: Path, cluster: EmulatedCluster
) -> None:
    def workflow(seconds: int) -> str:
        return (
            f"name: sleep{seconds}\nspec:\n  runtime: k8s-aws\n  image: {IMAGE}\n"
            f"  activities:\n    - name: s\n      run: |\n        echo start\n"
            f"        sleep {seconds}\n        echo end\n"
        )

    samples: dict[int, list[tuple[object, ...]]] = {}

    async def one_run(seconds: int) -> Counter[str]:
        before = cluster.counts()
        root = tmp_path / f"run{seconds}"
        env = cluster.env("k8s-aws", METRICS_INTERVAL="1")
        async with engine_with(root, workflow(seconds), env, metrics_interval=0.5) as (
            repo,
            engine,
            wf_id,
        ):
            wf = await engine.attach(wf_id)
            assert await asyncio.wait_for(engine.wait(wf_id), 60) is WorkflowState.SUCCEEDED
            logs = "".join(c.data for _, c in repo.read_logs(wf.activities["s"].id))
            assert logs == "start\nend\n"
            samples[seconds] = list(repo.read_metrics(wf.activities["s"].id))
            nodes = repo.list_nodes("k8s-aws")
            assert {n.name for n in nodes} == {"node-a", "node-b"}
            assert all(n.cpu_capacity == 2.0 and n.memory_capacity == 4 << 30 for n in nodes)
        return per_activity(before, cluster.counts())

    short = run(one_run(1))
    long = run(one_run(6))
    assert short == long, (short, long)
    assert short["create jobs"] == 1 and short["log pods"] == 1
    assert short["deletecollection jobs"] == 1 and short["delete jobs"] == 0
    # The long run sampled metrics many times: one list per namespace each time, no per-job
    # metrics call and no per-job status poll.
    assert not any(k.startswith(("get jobs", "get pods")) for k in long)
    # Pod metrics came from metrics.k8s.io (memory of the running container).
    assert samples[6] and all((m[3] or 0) > 0 for m in samples[6])


def test_four_activities_cost_at_most_four_requests_each_and_jobs_are_created_at_once(
    tmp_path: Path, cluster: EmulatedCluster
) -> None:
    """A wide run of 4: every request but the sampled ones, counted exactly. Its Jobs are
    created together: the API server answers none of their creates before all 4 are in
    flight (it would let them go one by one after a few seconds, and the peak would say 1)."""
    acts = "".join(f"    - name: a{i}\n      run: echo {i}\n" for i in range(4))
    text = f"name: wide\nspec:\n  runtime: k8s-aws\n  image: {IMAGE}\n  activities:\n{acts}"
    cluster.hold_creates("jobs", 4)
    before = cluster.counts()

    async def scenario() -> None:
        async with engine_with(tmp_path, text, cluster.env("k8s-aws")) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            assert await asyncio.wait_for(engine.wait(wf_id), 60) is WorkflowState.SUCCEEDED
            for i in range(4):
                logs = "".join(c.data for _, c in repo.read_logs(wf.activities[f"a{i}"].id))
                assert logs == f"{i}\n"

    run(scenario())
    assert cluster.peak_creates("jobs") == 4
    delta = cluster.counts() - before
    counted = Counter({k: v for k, v in delta.items() if not k.startswith(SAMPLED)})
    assert counted == Counter(
        {
            # the run's: its namespace, service account and claim, one watch of Jobs and
            # one of pods (from no version: no list first)
            "create namespaces": 1,
            "create serviceaccounts": 1,
            "create persistentvolumeclaims": 1,
            "watch jobs": 1,
            "watch pods": 1,
            # each activity's: its Job and its log stream; the Jobs deleted in one request
            "create jobs": 4,
            "log pods": 4,
            "deletecollection jobs": 1,
        }
    )
    assert sum(counted.values()) / 4 <= 4  # 3.5
    assert cluster.objects("batch/v1/jobs", "akoflow") == []
    assert cluster.objects("v1/pods", "akoflow") == []


def test_released_jobs_go_by_the_batch_and_a_failed_one_stays_on_success_cleanup(
    tmp_path: Path, cluster: EmulatedCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CLEANUP=on-success: the 4 succeeded Jobs go, 2 per request once 2 wait (a batch of
    2 here), before the run ends; the failed one stays for people to look at."""
    monkeypatch.setattr(k8s_runtime, "DELETE_BATCH", 2)
    acts = "".join(f"    - name: a{i}\n      run: echo {i}\n" for i in range(4))
    acts += "    - name: bad\n      run: exit 3\n"
    text = f"name: wide\nspec:\n  runtime: k8s-aws\n  image: {IMAGE}\n  activities:\n{acts}"
    before = cluster.counts()

    async def scenario() -> None:
        env = cluster.env("k8s-aws", CLEANUP="on-success")
        async with engine_with(tmp_path, text, env) as (_, engine, wf_id):
            await engine.attach(wf_id)
            assert await asyncio.wait_for(engine.wait(wf_id), 60) is WorkflowState.FAILED

    run(scenario())
    delta = cluster.counts() - before
    assert delta["deletecollection jobs"] == 2 and delta["delete jobs"] == 0
    (kept,) = cluster.objects("batch/v1/jobs", "akoflow")
    assert kept["metadata"]["labels"]["akoflow.io/activity"] == "bad"


def test_jobs_released_in_one_turn_are_deleted_in_batches_of_at_most_delete_batch(
    tmp_path: Path, cluster: EmulatedCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Five Jobs released in one turn of the event loop (an engine's batch of ends): two
    requests of two names, the fifth left for the run's end. The batch was taken by the
    request once it started, a turn later: the whole turn's releases joined it (one request
    of five here; of thousands, a URL too long to be served)."""
    monkeypatch.setattr(k8s_runtime, "DELETE_BATCH", 2)
    name = "k8s-aws"

    async def scenario() -> None:
        events = Events()
        config = RuntimeConfig.from_env(name, cluster.env(name, CLEANUP="on-success"))
        runtime = create_runtime(name, events, config)
        await runtime.start()
        try:
            jobs = [direct_job(tmp_path, f"r{i}", "true", name, IMAGE) for i in range(5)]
            handles = [await runtime.submit(job) for job in jobs]
            for job in jobs:
                assert (await events.finished(job.key, 60)).exit_code == 0
            before = cluster.counts()
            await asyncio.gather(
                *(
                    runtime.release(j.key, h, succeeded=True)
                    for j, h in zip(jobs, handles, strict=True)
                )
            )
            assert (cluster.counts() - before)["deletecollection jobs"] == 2
            assert len(cluster.objects("batch/v1/jobs", "akoflow")) == 1
        finally:
            await runtime.stop()

    run(scenario())


def test_an_engine_that_stops_mid_run_deletes_the_jobs_it_released(
    tmp_path: Path, cluster: EmulatedCluster
) -> None:
    """Released Jobs wait for the run's end: an engine stopped before it deletes them then
    (the running Job stays, for the next engine to adopt)."""
    text = (
        f"name: halfway\nspec:\n  runtime: k8s-aws\n  image: {IMAGE}\n  activities:\n"
        "    - name: quick\n      run: echo quick\n"
        "    - name: long\n      run: sleep 60\n"
    )

    async def scenario() -> None:
        async with engine_with(tmp_path, text, cluster.env("k8s-aws")) as (_, engine, wf_id):
            await engine.attach(wf_id)
            runtime = engine.runtimes.slots["k8s-aws"].runtime
            for _ in range(600):  # quick's release was asked for (its Job waits): 60 s at most
                if runtime.backend_calls["release"]:
                    break
                await asyncio.sleep(0.1)
            assert runtime.backend_calls["release"] == 1
            jobs = cluster.objects("batch/v1/jobs", "akoflow")
            assert "quick" in {j["metadata"]["labels"]["akoflow.io/activity"] for j in jobs}

    run(scenario())
    (left,) = cluster.objects("batch/v1/jobs", "akoflow")
    assert left["metadata"]["labels"]["akoflow.io/activity"] == "long"
    assert cluster.counts()["deletecollection jobs"] == 1


def test_engine_sigkill_mid_run_then_resume_adopts_by_label(
    akoflow: Akoflow, tmp_path: Path, state_dir: Path, cluster: EmulatedCluster
) -> None:
    wf = tmp_path / "crash.yaml"
    wf.write_text(
        f"name: crashy\nspec:\n  runtime: k8s-aws\n  image: {IMAGE}\n  activities:\n"
        "    - name: slow\n      run: |\n        echo run >> count.slow\n        sleep 4\n"
        "        echo done > slow.out\n"
        "    - name: fast\n      run: echo run >> count.fast\n"
        "    - name: after\n      dependsOn: [slow]\n      run: |\n"
        "        echo run >> count.after\n        cat slow.out\n"
    )
    env = cli_env(**cluster.env("k8s-aws"))
    engine = start_cli(
        [
            "run",
            str(wf),
            "--quiet",
            "--state-dir",
            str(state_dir),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        env,
    )

    def running(activity: str) -> bool:
        return any(
            p["metadata"]["labels"]["akoflow.io/activity"] == activity
            and p.get("status", {}).get("phase") == "Running"
            for p in cluster.objects("v1/pods", "akoflow")
        )

    deadline = time.monotonic() + 60
    while not running("slow"):
        assert engine.poll() is None, engine.communicate()
        assert time.monotonic() < deadline, "slow never ran"
        time.sleep(0.05)
    os.kill(engine.pid, signal.SIGKILL)
    engine.communicate(timeout=10)

    res = akoflow("resume", "--json", env=env)
    assert res.returncode == 0, res.stderr + res.stdout
    doc = json.loads(res.stdout)
    assert {a["state"] for a in doc["activities"]} == {"succeeded"}
    assert all(a["attempts"] == 1 for a in doc["activities"]), doc["activities"]
    (pvc,) = cluster.objects("v1/persistentvolumeclaims", "akoflow")
    data = cluster.kubelet.pvc_dir("akoflow", pvc["metadata"]["name"])
    counts = {p.name: len(p.read_text().splitlines()) for p in data.glob("count.*")}
    assert counts == {"count.slow": 1, "count.fast": 1, "count.after": 1}
    # Each attempt's Job was created once; an attempt found again was never re-created.
    creates = [r for r in cluster.requests() if r[:2] == ("create", "jobs")]
    assert len(creates) == 3
    # The run's end deleted its Jobs by its labels: also those the killed engine had
    # released and not deleted yet (it deletes them together, at the end).
    assert cluster.objects("batch/v1/jobs", "akoflow") == []
    after = [a for a in doc["activities"] if a["name"] == "after"][0]
    assert after["state"] == "succeeded"


def test_a_pod_that_outlived_its_timeout_while_no_engine_ran_is_timed_out(
    akoflow: Akoflow, tmp_path: Path, state_dir: Path, cluster: EmulatedCluster
) -> None:
    """``timeout: 2s``; the engine dies and the pod runs 4 s and exits 0 meanwhile. `resume`
    judges it by its container's start and end (the cluster's whole seconds, never judged
    longer than it ran): timed out, as a live engine would have stopped it, and its
    dependent never runs."""
    wf = tmp_path / "late.yaml"
    wf.write_text(
        f"name: late\nspec:\n  runtime: k8s-aws\n  image: {IMAGE}\n  activities:\n"
        "    - name: slow\n      timeout: 2s\n      run: |\n        echo run >> count.slow\n"
        "        sleep 4\n"
        "    - name: after\n      dependsOn: [slow]\n      run: echo run >> count.after\n"
    )
    env = cli_env(**cluster.env("k8s-aws"))
    data = tmp_path / "data"
    engine = start_cli(
        ["run", str(wf), "--quiet", "--state-dir", str(state_dir), "--data-dir", str(data)], env
    )

    def phase(activity: str) -> str | None:
        for p in cluster.objects("v1/pods", "akoflow"):
            if p["metadata"]["labels"]["akoflow.io/activity"] == activity:
                return str(p.get("status", {}).get("phase"))
        return None

    deadline = time.monotonic() + 60
    while phase("slow") != "Running":
        assert engine.poll() is None, engine.communicate()
        assert time.monotonic() < deadline, "slow never ran"
        time.sleep(0.05)
    os.kill(engine.pid, signal.SIGKILL)
    engine.communicate(timeout=10)
    deadline = time.monotonic() + 60
    while phase("slow") != "Succeeded":
        assert time.monotonic() < deadline, phase("slow")
        time.sleep(0.1)

    res = akoflow("resume", "--json", env=env)
    assert res.returncode == 1, res.stderr + res.stdout
    acts = {a["name"]: a for a in json.loads(res.stdout)["activities"]}
    assert acts["slow"]["state"] == "failed", acts["slow"]
    assert acts["slow"]["reason"].startswith("timed out after 2s (it ran"), acts["slow"]
    assert acts["after"]["state"] == "skipped"
    (pvc,) = cluster.objects("v1/persistentvolumeclaims", "akoflow")
    pvc_data = cluster.kubelet.pvc_dir("akoflow", pvc["metadata"]["name"])
    assert (pvc_data / "count.slow").read_text() == "run\n"
    assert not (pvc_data / "count.after").exists()
