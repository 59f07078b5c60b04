"""The HPC runtime under the engine, against the private SLURM cluster over SSH: files passed
between activities and volumes staged both ways, exit codes, cancel, SLURM's TIMEOUT, the login
node going away mid-run, and a 200-job fan-out whose status queries do not grow with the jobs.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from akoflow.engine import Engine
from akoflow.engine.model import attempt_key, run_dir
from akoflow.runtimes.hpc import HpcRuntime
from akoflow.runtimes.hpc.runtime import scope_of
from akoflow.runtimes.hpc.sbatch import job_name
from akoflow.states import ActivityState, WorkflowState
from tests.e2e.test_engine_inprocess import engine_with
from tests.scenarios import busy_activity, run_busy_workflow
from tests.singularity_runtime.conftest import LAUNCHER, Images
from tests.slurm_support.cluster import SlurmCluster

A = ActivityState


async def until(predicate: Any, timeout: float = 30.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"{what} not reached in {timeout}s")
        await asyncio.sleep(0.05)


def runtime_of(engine: Engine, name: str = "hpc") -> HpcRuntime:
    rt = engine._slots[name].runtime
    assert isinstance(rt, HpcRuntime)
    return rt


def slurm_name(tmp_path: Path, wf_id: int, wf_name: str, activity: str, attempt: int = 1) -> str:
    """The SLURM job name of an attempt of a workflow run on ``tmp_path/state``."""
    attempts = run_dir(tmp_path / "state", wf_id, wf_name) / "attempts"
    return job_name(scope_of(attempts), attempt_key(wf_id, activity, attempt))


def jobcomp(cluster: SlurmCluster, name: str) -> list[dict[str, str]]:
    """Job-completion records of jobs named ``name`` (one per job SLURM ran)."""
    return [r for r in cluster.jobcomp_records() if r.get("Name") == name]


def states(wf: Any) -> dict[str, tuple[ActivityState, str | None]]:
    return {a.name: (a.state, a.reason) for a in wf.activities.values()}


def test_workflow_passes_files_and_stages_volumes_both_ways(
    slurm_cluster: SlurmCluster, hpc_env: dict[str, str], tmp_path: Path
) -> None:
    mount = Path(hpc_env["HPC_MOUNT_PATH"])
    data = tmp_path / "data"
    (data / "inputs").mkdir(parents=True)
    (data / "inputs" / "in.txt").write_text("hello slurm\n")
    text = (
        f"name: pipe\nspec:\n  runtime: hpc\n  volumes:\n    - inputs:{mount}/shared/inputs\n"
        "  activities:\n"
        "    - name: upper\n      cpuLimit: 1\n      memoryLimit: 32Mi\n      run: |\n"
        '        echo "upper on $(hostname) in $PWD"\n'
        "        tr a-z A-Z < shared/inputs/in.txt > mid.txt\n"
        "    - name: report\n      dependsOn: [upper]\n      run: |\n"
        "        echo to stderr >&2\n"
        "        cat mid.txt > shared/inputs/out.txt\n"
        '        echo "data dir $AKOFLOW_DATA_DIR" >> shared/inputs/out.txt\n'
    )

    async def scenario() -> None:
        async with engine_with(tmp_path, text, log_interval=0.2) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            state = await asyncio.wait_for(engine.wait(wf_id), timeout=60)
            assert state is WorkflowState.SUCCEEDED, states(wf)
            # Staged back after `report` ended: its output is on the engine host.
            assert (data / "inputs" / "out.txt").read_text() == (f"HELLO SLURM\ndata dir {mount}\n")
            upper, report = wf.activities["upper"], wf.activities["report"]
            assert "".join(c.data for _, c in repo.read_logs(upper.id)) == (
                f"upper on {slurm_cluster_hostname()} in {mount}\n"
            )
            logs = {c.stream: c.data for _, c in repo.read_logs(report.id)}
            assert logs == {"stderr": "to stderr\n"}
            # The seed's sentinel, and one SSH connection for the whole workflow.
            sentinel = mount / f"akoflow_finished_{wf_id}_{upper.id}.txt"
            assert sentinel.read_text() == "AKOFLOW_JOB_FINISHED\n"
            rt = runtime_of(engine)
            assert rt.connections_opened == 1
            assert rt.submissions == 2
            # Provenance sees the volumes staged back (rsync keeps the remote write times),
            # and the files that stay on the cluster (its listings: test_remote_provenance).
            initial = {(f.location, f.path) for f in repo.list_initial_files(wf_id)}
            assert ("", "inputs/in.txt") in initial  # the run's input, in the data dir
            files = {(f.activity, f.role, f.location, f.path) for f in repo.list_files(wf_id)}
            assert ("report", "generated", "", "inputs/out.txt") in files
            remote = f"hpc:{mount}"
            assert ("upper", "generated", remote, "mid.txt") in files
            assert ("report", "used", remote, "mid.txt") in files
            assert ("report", "generated", remote, "shared/inputs/out.txt") in files
        for act in ("upper", "report"):
            (record,) = jobcomp(slurm_cluster, slurm_name(tmp_path, wf_id, "pipe", act))
            assert record["JobState"] == "COMPLETED"

    asyncio.run(scenario())


def slurm_cluster_hostname() -> str:
    import socket

    return socket.gethostname()


def test_failing_job_reports_its_exit_code(hpc_env: dict[str, str], tmp_path: Path) -> None:
    """Exit 3: FAILED with its code and log, the dependent skipped, and what it wrote on the
    cluster before failing is in the provenance."""
    mount = Path(hpc_env["HPC_MOUNT_PATH"])
    text = (
        "name: fails\nspec:\n  runtime: hpc\n  activities:\n"
        "    - name: bad\n      run: |\n        echo partial > partial.txt\n"
        "        echo about to fail\n        exit 3\n"
        "    - name: after\n      dependsOn: [bad]\n      run: echo never\n"
    )

    async def scenario() -> None:
        async with engine_with(tmp_path, text) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            state = await asyncio.wait_for(engine.wait(wf_id), timeout=60)
            assert state is WorkflowState.FAILED
            bad = wf.activities["bad"]
            assert bad.state is A.FAILED and bad.exit_code == 3, states(wf)
            assert bad.reason == "exit code 3"
            assert wf.activities["after"].state is A.SKIPPED
            assert "".join(c.data for _, c in repo.read_logs(bad.id)) == "about to fail\n"
            generated = [
                (f.activity, f.location, f.path)
                for f in repo.list_files(wf_id)
                if f.role == "generated"
            ]
            assert generated == [("bad", f"hpc:{mount}", "partial.txt")]

    asyncio.run(scenario())


def test_cancel_stops_the_slurm_job(
    slurm_cluster: SlurmCluster, hpc_env: dict[str, str], tmp_path: Path
) -> None:
    mount = Path(hpc_env["HPC_MOUNT_PATH"])
    text = (
        "name: cancelme\nspec:\n  runtime: hpc\n  activities:\n"
        "    - name: long\n      run: |\n        touch long.started\n"
        "        sleep 120 && touch long.finished\n"
    )

    async def scenario() -> int:
        async with engine_with(tmp_path, text) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            await until(lambda: (mount / "long.started").exists(), what="job running")
            engine.cancel(wf_id)
            state = await asyncio.wait_for(engine.wait(wf_id), timeout=30)
            assert state is WorkflowState.CANCELLED
            assert wf.activities["long"].state is A.CANCELLED, states(wf)
            return wf_id

    wf_id = asyncio.run(scenario())
    assert not (mount / "long.finished").exists()
    (record,) = jobcomp(slurm_cluster, slurm_name(tmp_path, wf_id, "cancelme", "long"))
    assert record["JobState"] == "CANCELLED"


def test_slurm_time_limit_ends_the_activity_as_timeout(
    slurm_cluster: SlurmCluster,
    hpc_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A job killed by SLURM (it writes no exit code, no sentinel) does not hang: squeue's
    TIMEOUT ends it. SLURM time limits are whole minutes: once the job runs, its end is moved
    to a second from now (the limit of HPC_TIME stays, checked in its record), and slurmctld's
    next time-limit check (every 30 s) ends it as TIMEOUT."""
    monkeypatch.setenv("HPC_TIME", "1")
    text = (
        "name: slow\nspec:\n  runtime: hpc\n  activities:\n"
        "    - name: forever\n      run: |\n        echo started\n        sleep 600\n"
    )

    async def scenario() -> None:
        async with engine_with(tmp_path, text) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            act = wf.activities["forever"]
            await until(lambda: act.state is A.RUNNING, 60, "the job running")
            name = slurm_name(tmp_path, wf_id, "slow", "forever")
            running: list[str] = []
            for _ in range(600):  # bounded: 60 s
                running = await asyncio.to_thread(slurm_cluster.running_job_ids, name)
                if running:
                    break
                await asyncio.sleep(0.1)
            (job_id,) = running
            await asyncio.to_thread(slurm_cluster.end_soon, job_id)
            state = await asyncio.wait_for(engine.wait(wf_id), timeout=180)
            assert state is WorkflowState.FAILED
            assert act.state is A.FAILED, states(wf)
            assert act.reason == "SLURM time limit reached (TIMEOUT)"
            logged = "".join(c.data for _, c in repo.read_logs(act.id)).splitlines()
            # bash says "Terminated" when SLURM's SIGTERM reaches its sleep before itself
            assert logged[0] == "started" and set(logged[1:]) <= {"Terminated"}, logged

    asyncio.run(scenario())
    (record,) = jobcomp(slurm_cluster, slurm_name(tmp_path, 1, "slow", "forever"))
    assert record["JobState"] == "TIMEOUT"
    assert record["TimeLimit"] == "1"  # HPC_TIME, in minutes


def test_login_node_down_mid_run_holds_work_then_completes(
    slurm_cluster: SlurmCluster, hpc_env: dict[str, str], tmp_path: Path
) -> None:
    """sshd (and every session it serves) is killed while a job runs: the runtime turns
    NOT_READY, an activity that becomes ready meanwhile waits (not failed), the job keeps
    running in SLURM, and once sshd is back the workflow completes, each job run once."""
    mount = Path(hpc_env["HPC_MOUNT_PATH"])
    data = tmp_path / "data"
    text = (
        "name: outage\nspec:\n  runtime: hpc\n  activities:\n"
        "    - name: gate\n      runtime: local\n"
        "      run: while [ ! -e release ]; do sleep 0.05; done\n"
        "    - name: held\n      dependsOn: [gate]\n      run: echo run >> held.count\n"
        "    - name: victim\n      run: |\n        echo run >> victim.count\n"
        "        while [ ! -e victim.release ]; do sleep 0.1; done\n"
    )
    sshd = slurm_cluster.sshd

    async def scenario() -> None:
        async with engine_with(tmp_path, text, health_interval=0.2) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            await until(lambda: (mount / "victim.count").exists(), what="victim running")
            await asyncio.to_thread(sshd.stop)
            await until(lambda: not engine.runtime_status()["hpc"][0], what="NOT_READY")
            reason = engine.runtime_status()["hpc"][1] or ""
            assert f"127.0.0.1:{slurm_cluster.ssh_port}" in reason, reason
            (data / "release").touch()
            await until(lambda: wf.activities["gate"].state is A.SUCCEEDED, what="gate done")
            (mount / "victim.release").touch()  # the job ends while nobody can see it
            await asyncio.sleep(1.5)
            assert wf.activities["held"].state is A.READY, states(wf)
            assert wf.activities["victim"].state is A.RUNNING, states(wf)
            assert {r.name: r for r in repo.list_runtimes()}["hpc"].status == "NOT_READY"
            await asyncio.to_thread(sshd.start)
            state = await asyncio.wait_for(engine.wait(wf_id), timeout=60)
            assert state is WorkflowState.SUCCEEDED, states(wf)
            assert {r.name: r for r in repo.list_runtimes()}["hpc"].status == "READY"
            assert runtime_of(engine).connections_opened == 2  # one before, one after

    asyncio.run(scenario())
    assert (mount / "victim.count").read_text() == "run\n"
    assert (mount / "held.count").read_text() == "run\n"
    for act in ("victim", "held"):
        assert len(jobcomp(slurm_cluster, slurm_name(tmp_path, 1, "outage", act))) == 1


def test_fan_out_of_200_jobs_costs_one_status_query_per_cycle(
    slurm_cluster: SlurmCluster,
    hpc_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """slurmctld's own RPC counters (sdiag): 200 jobs are watched with one squeue
    (REQUEST_JOB_INFO) per monitor cycle, not one per job, over one SSH connection."""
    n = 200
    monkeypatch.setenv("HPC_SUBMIT_RATE", "1000")
    monkeypatch.setenv("HPC_MAX_QUEUED", str(n))
    monkeypatch.setenv("HPC_POLL_INTERVAL", "1")
    monkeypatch.setenv("HPC_METRICS_INTERVAL", "0")
    acts = "".join(f"    - name: j{i}\n      run: echo {i} > out.{i}\n" for i in range(n))
    text = f"name: fan\nspec:\n  runtime: hpc\n  activities:\n{acts}"
    mount = Path(hpc_env["HPC_MOUNT_PATH"])
    ssh_before = slurm_cluster.sshd.connections()

    async def scenario() -> tuple[int, int]:
        async with engine_with(tmp_path, text, log_interval=5.0) as (repo, engine, wf_id):
            await asyncio.to_thread(slurm_cluster.sdiag_reset)
            wf = await engine.attach(wf_id)
            state = await asyncio.wait_for(engine.wait(wf_id), timeout=240)
            assert state is WorkflowState.SUCCEEDED, [
                s for s in states(wf).values() if s[0] is not A.SUCCEEDED
            ][:5]
            rt = runtime_of(engine)
            assert rt.connections_opened == 1 and rt.submissions == n
            return rt.status_queries, wf_id

    polls, wf_id = asyncio.run(scenario())
    rpcs = slurm_cluster.sdiag_rpcs()
    assert rpcs["REQUEST_SUBMIT_BATCH_JOB"] == n
    # One squeue per monitor cycle for all jobs (none per job, no per-job scontrol).
    assert 0 < rpcs.get("REQUEST_JOB_INFO", 0) <= polls + 2, (rpcs, polls)
    assert polls < n / 2, polls
    assert "REQUEST_JOB_INFO_SINGLE" not in rpcs
    assert sorted(int(p.read_text()) for p in mount.glob("out.*")) == list(range(n))
    assert slurm_cluster.sshd.connections() - ssh_before == 1


def test_image_runs_inside_the_sbatch_job_through_the_container_launcher(
    slurm_cluster: SlurmCluster,
    hpc_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    images: Images,
) -> None:
    """With ``{NAME}_SINGULARITY`` set, an activity with an image runs in ``BINARY exec`` (the
    test launcher standing in for Apptainer: a real SIF, squashfuse, bubblewrap) inside the
    SLURM job, with MOUNT_PATH bound at the activity's mountPath."""
    monkeypatch.setenv("HPC_SINGULARITY", str(LAUNCHER))
    mount = Path(hpc_env["HPC_MOUNT_PATH"])
    text = (
        f"name: boxed\nspec:\n  runtime: hpc\n  image: {images.sif}\n  mountPath: /data\n"
        "  activities:\n"
        '    - name: inside\n      run: |\n        echo "in $PWD, data $AKOFLOW_DATA_DIR"\n'
        "        test -e /etc/passwd && ls /bin/busybox > from-container.txt\n"
    )

    async def scenario() -> None:
        async with engine_with(tmp_path, text) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            state = await asyncio.wait_for(engine.wait(wf_id), timeout=60)
            assert state is WorkflowState.SUCCEEDED, states(wf)
            act = wf.activities["inside"]
            assert "".join(c.data for _, c in repo.read_logs(act.id)) == "in /data, data /data\n"

    asyncio.run(scenario())
    assert (mount / "from-container.txt").read_text() == "/bin/busybox\n"
    assert not Path("/data/from-container.txt").exists()


def test_running_job_logs_arrive_incrementally_and_metrics_come_from_sstat(
    hpc_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HPC_METRICS_INTERVAL", "0.5")
    text = "name: busy\nspec:\n  runtime: hpc\n  activities:\n" + busy_activity(5)

    asyncio.run(run_busy_workflow(tmp_path, text))


def test_akoscore_places_on_a_sinfo_node_and_sbatch_pins_it(
    slurm_cluster: SlurmCluster, hpc_env: dict[str, str], tmp_path: Path
) -> None:
    text = (
        "name: placed\nspec:\n  runtime: hpc\n  schedule: akoscore\n  activities:\n"
        "    - name: one\n      cpuLimit: 1\n      memoryLimit: 32Mi\n      run: hostname\n"
    )

    async def scenario() -> None:
        async with engine_with(tmp_path, text) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            state = await asyncio.wait_for(engine.wait(wf_id), timeout=60)
            assert state is WorkflowState.SUCCEEDED, states(wf)
            (decision,) = repo.list_placements(wf_id)
            nodes = {n.name for n in repo.list_nodes("hpc")}
            assert decision.node in nodes  # a node `sinfo` reported
            assert decision.candidates[0]["feasible"] is True
        (record,) = jobcomp(slurm_cluster, slurm_name(tmp_path, wf_id, "placed", "one"))
        assert record["NodeList"] == decision.node  # sbatch --nodelist pinned it there

    asyncio.run(scenario())
