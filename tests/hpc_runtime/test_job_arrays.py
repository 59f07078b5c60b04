"""SLURM job arrays: a fan-out of attempts with the same sbatch options is one ``sbatch --array``
(one submit RPC, counted by slurmctld's ``sdiag``), each element running its own attempt (its
own dir, script, claims, exit code, logs and listings), cancelled alone (``scancel ID_INDEX``),
retried alone, and found again after an engine SIGKILL by array name + index. Against the
private SLURM cluster; SLURM's job-completion log is the witness of what ran."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import math
import os
import signal
import subprocess
from pathlib import Path

import pytest

from akoflow.engine.model import run_dir
from akoflow.runtimes.base import SubmitError
from akoflow.runtimes.hpc import runtime as hpc_runtime
from akoflow.runtimes.hpc import sbatch, slurm
from akoflow.runtimes.hpc.transport import HpcMisconfigured
from akoflow.runtimes.scope import scope_of
from akoflow.spec import Activity
from tests.conftest import Akoflow, cli_env, start_cli, wait_for
from tests.hpc_runtime.conftest import runtime_env
from tests.hpc_runtime.test_hpc_engine import slurm_name
from tests.hpc_runtime.test_hpc_runtime import Recorder, job_spec, make, wait_finished
from tests.slurm_support.cluster import SlurmCluster

SUBMIT = "REQUEST_SUBMIT_BATCH_JOB"


def submits(cluster: SlurmCluster) -> int:
    return cluster.sdiag_rpcs().get(SUBMIT, 0)


def array_records(cluster: SlurmCluster, name: str) -> dict[int, dict[str, str]]:
    """Job-completion records of the elements of the array ``name``, by index (one each)."""
    found: dict[int, dict[str, str]] = {}
    for rec in cluster.jobcomp_records():
        if rec.get("Name") == name:
            index = int(rec["ArrayTaskId"])
            assert index not in found, f"element {index} of {name} ran twice"
            found[index] = rec
    return found


# ---------------------------------------------------------------------- the script, pure


def test_the_array_script_picks_each_elements_dir_by_index_quoted(tmp_path: Path) -> None:
    dirs = [str(tmp_path / "a b"), str(tmp_path / "it's; rm -rf x"), str(tmp_path / "$(boom)")]
    script = sbatch.dispatcher(dirs)
    for i, d in enumerate(dirs):
        Path(d).mkdir()
        Path(d, "element.sh").write_text(f'akf_code={i + 40}\necho ran > "$akf_dir/ran"\n')
    for i, d in enumerate(dirs):
        env = {"PATH": os.environ["PATH"], "SLURM_ARRAY_TASK_ID": str(i), "SLURM_JOB_ID": "77"}
        res = subprocess.run(["bash", "-c", script], env=env, cwd=tmp_path, capture_output=True)
        assert res.returncode == 40 + i, res.stderr
        assert Path(d, "slurm_job_id").read_text() == "77\n"
        assert Path(d, "ran").read_text() == "ran\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(Path(d).name for d in dirs)
    assert not (tmp_path / "boom").exists()
    for missing in ("3", "", "0 1"):
        env = {"PATH": os.environ["PATH"], "SLURM_ARRAY_TASK_ID": missing}
        res = subprocess.run(["bash", "-c", script], env=env, capture_output=True)
        assert res.returncode == sbatch.ELEMENT_MISSING_EXIT


def test_only_identical_sbatch_options_share_an_array(tmp_path: Path) -> None:
    rt = make({"HPC_HOST_CLUSTER": "h", "HPC_MOUNT_PATH": "/m", "HPC_QUEUE": "q"})
    same = [job_spec(tmp_path, f"s{i}", f"echo {i}") for i in range(3)]
    bigger = dataclasses.replace(
        same[0], key="wf1-big-a1", activity=Activity("big", "true", "hpc", memory_bytes=1 << 30)
    )
    keys = {sbatch.options_key(rt.request(job)) for job in same}
    assert len(keys) == 1  # scripts, names and dirs differ: not options
    assert sbatch.options_key(rt.request(bigger)) not in keys
    assert sbatch.parse_array_ref(sbatch.array_ref_text("akf-abc-arr-wf1-s0-a1", 4)) == (
        "akf-abc-arr-wf1-s0-a1",
        4,
    )
    for bad in (b"", b"akf-x-arr-y\n", b"akf-x-arr-y\n-1\n", b"other\n3\n", b"akf-x-arr-y\n3\nz"):
        assert sbatch.parse_array_ref(bad) is None


def test_one_scancel_argument_per_array_and_only_slurms_array_refusal_is_one() -> None:
    assert slurm.scancel_targets(["9_0", "9_1", "9_2", "9_5", "12", "9_7", "10_3", "12"]) == [
        "12",
        "9_[0-2,5,7]",
        "10_[3]",
    ]
    assert slurm.scancel_targets([]) == []
    # sbatch's own words for an array larger than MaxArraySize (seen on the test cluster)
    assert slurm.array_refused(
        "sbatch: error: Batch job submission failed: Invalid job array specification\n"
    )
    assert not slurm.array_refused("sbatch: unrecognized option '--arrays=2'\n")
    assert not slurm.array_refused("sbatch: error: invalid partition for array-jobs\n")


def test_squeue_rows_carry_each_elements_own_job_id() -> None:
    running, pending, plain = slurm.parse_squeue(
        "7_0|akf-s-arr-x|RUNNING|n1|None|8\n7_3|akf-s-arr-x|PENDING||None|7\n"
        "12|akf-s-wf1-y-a1|RUNNING|n1|None|12\n"
    )
    assert (running.job_id, running.index, running.own_id) == ("7_0", 0, "8")
    assert (pending.index, pending.own_id) == (3, "7")
    assert (plain.index, plain.own_id) == (None, "12")


# ---------------------------------------------------------------------- the runtime alone


def test_an_array_element_is_cancelled_alone(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    env = runtime_env(slurm_cluster, "hpc", "mount/array-cancel", ARRAYS="on")
    mount = Path(env["HPC_MOUNT_PATH"])
    mount.mkdir(parents=True, exist_ok=True)
    events = Recorder()
    rt = make(env, events)
    wait = "while [ ! -e go ]; do sleep 0.1; done\n"
    jobs = [
        job_spec(tmp_path, f"c{i}", f"echo c{i} >> side.c{i}\n{wait}exit {i}") for i in range(4)
    ]

    async def scenario() -> None:
        await rt.start()
        try:
            before = submits(slurm_cluster)
            handles = await rt.submit_many(jobs)
            assert submits(slurm_cluster) == before + 1  # one sbatch for four attempts
            assert all(isinstance(h, dict) for h in handles)
            assert [h["index"] for h in handles if isinstance(h, dict)] == [0, 1, 2, 3]
            array_id = {str(h["job_id"]).split("_")[0] for h in handles if isinstance(h, dict)}
            assert len(array_id) == 1
            await asyncio.to_thread(
                wait_for, lambda: all((mount / f"side.c{i}").exists() for i in range(4)), 30
            )
            victim = handles[2]
            assert isinstance(victim, dict)
            await rt.cancel(jobs[2].key, victim)
            cancelled = await wait_finished(events, jobs[2].key)
            assert not cancelled.succeeded and cancelled.reason == "cancelled"
            assert not any(jobs[i].key in events.finished for i in (0, 1, 3))
            (mount / "go").touch()
            for i in (0, 1, 3):
                outcome = await wait_finished(events, jobs[i].key)
                assert outcome.exit_code == i and outcome.succeeded == (i == 0)
            logs = await rt.logs(jobs[3].key, handles[3], {})  # type: ignore[arg-type]
            assert logs == {}  # nothing written: the element's own (empty) streams
        finally:
            await rt.stop()

    asyncio.run(scenario())
    for i in range(4):
        assert (mount / f"side.c{i}").read_text() == f"c{i}\n"


def test_a_whole_array_cancelled_at_once_costs_one_scancel_and_one_rpc(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    """30 elements, 2 running and 28 waiting in the array (%2), all cancelled in the same
    wake-up (as a cancelled run does): one scancel naming ``ARRAYID_[0-29]``, one
    REQUEST_KILL_JOB; each element ends cancelled, the waiting ones never ran."""
    env = runtime_env(slurm_cluster, "hpc", "mount/array-cancel-all", ARRAYS="on", MAX_QUEUED="2")
    mount = Path(env["HPC_MOUNT_PATH"])
    mount.mkdir(parents=True, exist_ok=True)
    events = Recorder()
    rt = make(env, events)
    wait = "i=0; until [ -e go ] || [ $i -ge 600 ]; do sleep 0.1; i=$((i+1)); done\n"
    jobs = [job_spec(tmp_path, f"k{i}", f"echo k{i} >> side.k{i}\n{wait}") for i in range(30)]

    async def scenario() -> None:
        await rt.start()
        try:
            handles = await rt.submit_many(jobs)
            assert all(isinstance(h, dict) for h in handles)
            await asyncio.to_thread(wait_for, lambda: len(list(mount.glob("side.k*"))) == 2, 30)
            await asyncio.to_thread(slurm_cluster.sdiag_reset)
            await asyncio.gather(
                *(rt.cancel(job.key, h) for job, h in zip(jobs, handles, strict=True)
                  if isinstance(h, dict))
            )  # fmt: skip
            assert rt.scancel_calls == 1
            rpcs = await asyncio.to_thread(slurm_cluster.sdiag_rpcs)
            assert rpcs.get("REQUEST_KILL_JOB", 0) == 1, rpcs
            for job in jobs:
                outcome = await wait_finished(events, job.key)
                assert not outcome.succeeded and outcome.reason == "cancelled", outcome
        finally:
            (mount / "go").touch()
            await rt.stop()

    asyncio.run(scenario())
    assert len(list(mount.glob("side.k*"))) == 2  # the waiting ones never ran


def test_adopting_an_arrays_elements_costs_one_squeue(
    slurm_cluster: SlurmCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restarted engine adopts the 8 elements of an array one by one (as reconcile does):
    one ``squeue --name`` for the array, not one per element; each is found (two run, six
    wait: %2) and ends with its own exit code."""
    # Rows reused for the whole pass whatever the machine's load (by default 10 s of it).
    monkeypatch.setattr(hpc_runtime, "ADOPT_ROWS_SECONDS", math.inf)
    env = runtime_env(slurm_cluster, "hpc", "mount/array-adopt-rows", MAX_QUEUED="2", ARRAYS="on")
    mount = Path(env["HPC_MOUNT_PATH"])
    mount.mkdir(parents=True, exist_ok=True)
    wait = "i=0; until [ -e go ] || [ $i -ge 600 ]; do sleep 0.1; i=$((i+1)); done\n"
    jobs = [
        job_spec(tmp_path, f"r{i}", f"echo r{i} >> side.r{i}\n{wait}exit {i}") for i in range(8)
    ]

    async def scenario() -> None:
        first = make(env)
        await first.start()
        try:
            handles = await first.submit_many(jobs)
            await asyncio.to_thread(wait_for, lambda: len(list(mount.glob("side.r*"))) == 2, 30)
        finally:
            await first.stop()
        events = Recorder()
        second = make(env, events)
        await second.start()
        try:
            adopted = [
                await second.adopt(job, h)
                for job, h in zip(jobs, handles, strict=True)
                if isinstance(h, dict)
            ]
            assert [a.kind for a in adopted] == ["running"] * 8
            assert second.lookups == 1
            (mount / "go").touch()
            for i, job in enumerate(jobs):
                outcome = await wait_finished(events, job.key)
                assert outcome.exit_code == i and outcome.succeeded == (i == 0)
        finally:
            (mount / "go").touch()
            await second.stop()

    asyncio.run(scenario())
    for i in range(8):
        assert (mount / f"side.r{i}").read_text() == f"r{i}\n"


def test_an_sbatch_failure_that_says_array_is_not_taken_for_array_max(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    """A template line sbatch does not know (``--arrays``) fails the array's sbatch with a
    message that says "array": the elements get sbatch's own message, not advice about
    ARRAY_MAX and MaxArraySize."""
    template = "#!/bin/bash\n#DIRECTIVES#\n#SBATCH --arrays=2\n\n#COMMAND#\n"
    env = runtime_env(slurm_cluster, "hpc", "mount/array-not-max", ARRAYS="on",
                      SBATCHTEMPLATE=base64.b64encode(template.encode()).decode())  # fmt: skip
    Path(env["HPC_MOUNT_PATH"]).mkdir(parents=True, exist_ok=True)
    rt = make(env)
    jobs = [job_spec(tmp_path, f"t{i}", "true") for i in range(2)]

    async def scenario() -> list[object]:
        await rt.start()
        try:
            return list(await rt.submit_many(jobs))
        finally:
            await rt.stop()

    results = asyncio.run(scenario())
    for result in results:
        assert isinstance(result, SubmitError) and not isinstance(result, HpcMisconfigured)
        assert "unrecognized option '--arrays=2'" in str(result), result
        assert "ARRAY_MAX" not in str(result) and "MaxArraySize" not in str(result)
    assert rt.sbatch_calls == 1


# ---------------------------------------------------------------------- through the engine


def fan_out(n: int, body: str, extra: str = "") -> str:
    acts = "".join(f"    - name: e{i}\n      run: |\n{body.format(i=i)}{extra}" for i in range(n))
    return f"name: fan\nspec:\n  runtime: hpc\n  activities:\n{acts}"


def test_a_fan_out_of_50_is_one_array_and_a_failed_element_is_retried_alone(
    slurm_cluster: SlurmCluster, akoflow: Akoflow, tmp_path: Path, state_dir: Path
) -> None:
    env = cli_env(
        **runtime_env(slurm_cluster, "hpc", "mount/array-50", MAX_QUEUED="16", ARRAYS="on")
    )
    mount = Path(env["HPC_MOUNT_PATH"])
    mount.mkdir(parents=True, exist_ok=True)
    body = (
        "        echo e{i} >> side.e{i}\n"
        "        echo out-e{i}\n"
        "        echo err-e{i} >&2\n"
        "        if [ e{i} = e7 ] && [ ! -e e7.failed ]; then touch e7.failed; exit 3; fi\n"
        "        echo e{i} > result.e{i}\n"
    )
    wf = tmp_path / "fan.yaml"
    wf.write_text(fan_out(50, body, "      retries: 1\n"))
    slurm_cluster.sdiag_reset()
    res = akoflow("run", str(wf), "--json", env=env, timeout=180)
    assert res.returncode == 0, res.stderr + res.stdout
    assert submits(slurm_cluster) == 2  # the array of 50, then e7's retry alone
    doc = json.loads(res.stdout)
    assert {a["name"]: a["state"] for a in doc["activities"]} == {
        f"e{i}": "succeeded" for i in range(50)
    }
    assert {a["name"]: a["attempts"] for a in doc["activities"]} == {
        f"e{i}": 2 if i == 7 else 1 for i in range(50)
    }
    array = sbatch.array_name(scope_of(run_dir(state_dir, 1, "fan") / "attempts"), "wf1-e0-a1")
    records = array_records(slurm_cluster, array)
    assert sorted(records) == list(range(50))  # one element per activity, each ran once
    assert {i: r["JobState"] for i, r in records.items()} == {
        i: "FAILED" if i == 7 else "COMPLETED" for i in range(50)
    }
    assert records[7]["ExitCode"] == "3:0"
    retry = [r for r in slurm_cluster.jobcomp_records() if r.get("Name") == slurm_name(
        tmp_path, 1, "fan", "e7", attempt=2)]  # fmt: skip
    assert [r["JobState"] for r in retry] == ["COMPLETED"] and "ArrayTaskId" not in retry[0]
    for i in range(50):
        assert (mount / f"side.e{i}").read_text() == (f"e{i}\n" * (2 if i == 7 else 1))
        assert (mount / f"result.e{i}").read_text() == f"e{i}\n"
    # Each element's own streams (a few of them: one CLI call each), both attempts of e7.
    for name, attempt in (("e0", 1), ("e7", 1), ("e7", 2), ("e31", 1), ("e49", 1)):
        for stream in ("stdout", "stderr"):
            out = akoflow("logs", "1", name, "--stream", stream, "--attempt", str(attempt), env=env)
            assert out.returncode == 0, out.stderr
            assert out.stdout == f"{stream[3:]}-{name}\n", (name, out)  # out-e0, err-e0
    assert {a["name"]: a["exit_code"] for a in doc["activities"]}["e7"] == 0


def test_sigkill_mid_array_then_resume_runs_nothing_twice_and_no_false_success(
    slurm_cluster: SlurmCluster, akoflow: Akoflow, tmp_path: Path, state_dir: Path
) -> None:
    env = cli_env(
        **runtime_env(slurm_cluster, "hpc", "mount/array-crash", MAX_QUEUED="6", ARRAYS="on")
    )
    mount = Path(env["HPC_MOUNT_PATH"])
    mount.mkdir(parents=True, exist_ok=True)
    body = (
        "        echo e{i} >> side.e{i}\n"
        "        while [ ! -e release ]; do sleep 0.1; done\n"
        "        if [ e{i} = e3 ]; then exit 5; fi\n"
    )
    wf = tmp_path / "fan.yaml"
    wf.write_text(fan_out(20, body))
    slurm_cluster.sdiag_reset()
    engine = start_cli(["run", str(wf), "--quiet", "--state-dir", str(state_dir)], env)
    # Six elements run (%6), fourteen wait in SLURM's queue when the engine dies.
    wait_for(lambda: len(list(mount.glob("side.e*"))) >= 6, timeout=60)
    os.kill(engine.pid, signal.SIGKILL)
    engine.communicate(timeout=10)
    assert engine.returncode == -signal.SIGKILL
    (mount / "release").touch()  # they end while no engine is watching

    res = akoflow("resume", "--json", env=env, timeout=180)
    assert res.returncode == 1, res.stderr + res.stdout  # e3 failed: the run did
    doc = json.loads(res.stdout)
    assert {a["name"]: a["state"] for a in doc["activities"]} == {
        f"e{i}": "failed" if i == 3 else "succeeded" for i in range(20)
    }
    assert {a["name"]: a["attempts"] for a in doc["activities"]} == {f"e{i}": 1 for i in range(20)}
    assert submits(slurm_cluster) == 1  # the array, once; the resume sent nothing
    for i in range(20):
        assert (mount / f"side.e{i}").read_text() == f"e{i}\n", i
    assert {a["name"]: a["exit_code"] for a in doc["activities"]}["e3"] == 5
    array = sbatch.array_name(scope_of(run_dir(state_dir, 1, "fan") / "attempts"), "wf1-e0-a1")
    assert sorted(array_records(slurm_cluster, array)) == list(range(20))


def test_elements_are_adopted_by_array_name_and_index_without_a_stored_handle(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    """An engine that died before storing the handles: a new runtime finds each element from
    the ``array`` file in its dir, running or ended; an element whose array never reached
    SLURM is claimed (never runs) and says so."""
    env = runtime_env(slurm_cluster, "hpc", "mount/array-adopt", MAX_QUEUED="2", ARRAYS="on")
    mount = Path(env["HPC_MOUNT_PATH"])
    mount.mkdir(parents=True, exist_ok=True)
    wait = "while [ ! -e go ]; do sleep 0.1; done\n"
    jobs = [
        job_spec(tmp_path, f"d{i}", f"echo d{i} >> side.d{i}\n{wait}exit {i}") for i in range(3)
    ]
    ghost = job_spec(tmp_path, "ghost", "echo ghost >> side.ghost")

    async def scenario() -> None:
        first = make(env)
        await first.start()
        try:
            handles = await first.submit_many(jobs)
            assert [h["index"] for h in handles if isinstance(h, dict)] == [0, 1, 2]
            # An attempt given to an array whose sbatch never happened (the engine died
            # between the array file and the sbatch).
            paths = first._paths(ghost)[1]
            ref = sbatch.array_ref_text(sbatch.array_name(first._scope(ghost), "wf1-x-a1"), 0)
            Path(paths.dir).mkdir(parents=True)
            Path(paths.array_ref).write_bytes(ref)
            await asyncio.to_thread(
                wait_for, lambda: all((mount / f"side.d{i}").exists() for i in (0, 1)), 30
            )
        finally:
            await first.stop()  # its jobs keep running in SLURM
        events = Recorder()
        second = make(env, events)
        await second.start()
        try:
            adopted = [await second.adopt(job, {}) for job in jobs]
            assert [a.kind for a in adopted] == ["running"] * 3  # two run, one waits (%2)
            assert [a.handle["index"] for a in adopted] == [0, 1, 2]
            assert (await second.adopt(ghost, {})).kind == "never_started"
            (mount / "go").touch()
            for i, job in enumerate(jobs):
                outcome = await wait_finished(events, job.key)
                assert outcome.exit_code == i and outcome.succeeded == (i == 0)
        finally:
            await second.stop()

    asyncio.run(scenario())
    for i in range(3):
        assert (mount / f"side.d{i}").read_text() == f"d{i}\n"
    assert not (mount / "side.ghost").exists()
