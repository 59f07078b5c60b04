"""Hostile pass on SLURM job arrays (issue 20, item 3): what a careless or hostile user does to
a fan-out that went to SLURM as one ``sbatch --array``, through the real CLI against the
private SLURM cluster. SLURM's job-completion log is the witness of what ran; each element
appends a line to its own side-effect file in MOUNT_PATH, so "ran once" is "one line"."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import pytest

from akoflow.engine.model import run_dir
from akoflow.runtimes.hpc import sbatch
from akoflow.runtimes.scope import scope_of
from tests.conftest import Akoflow, cli_env, start_cli, wait_for
from tests.hpc_runtime.conftest import runtime_env
from tests.hpc_runtime.test_hpc_runtime import Recorder, job_spec, make, wait_finished
from tests.slurm_support.cluster import SlurmCluster

pytestmark = [pytest.mark.slurm, pytest.mark.needs_root]

SUBMIT = "REQUEST_SUBMIT_BATCH_JOB"
# A bounded wait (60 s) for a file in MOUNT_PATH, so a broken test never hangs a job.
WAIT = "i=0; until [ -e {f} ] || [ $i -ge 1200 ]; do sleep 0.05; i=$((i+1)); done"


def fan_out(n: int, body: str, extra: str = "", name: str = "fan") -> str:
    acts = "".join(f"    - name: e{i}\n      run: |\n{body.format(i=i)}{extra}" for i in range(n))
    return f"name: {name}\nspec:\n  runtime: hpc\n  activities:\n{acts}"


def env_for(cluster: SlurmCluster, mount: str, **extra: str) -> tuple[dict[str, str], Path]:
    env = cli_env(**runtime_env(cluster, "hpc", mount, ARRAYS="on", **extra))
    path = Path(env["HPC_MOUNT_PATH"])
    path.mkdir(parents=True, exist_ok=True)
    return env, path


def array_of(state_dir: Path, first: str = "e0", name: str = "fan") -> str:
    return sbatch.array_name(scope_of(run_dir(state_dir, 1, name) / "attempts"), f"wf1-{first}-a1")


def records(cluster: SlurmCluster, name: str) -> dict[int, dict[str, str]]:
    found: dict[int, dict[str, str]] = {}
    for rec in cluster.jobcomp_records():
        if rec.get("Name") == name:
            index = int(rec["ArrayTaskId"])
            assert index not in found, f"element {index} of {name} ran twice"
            found[index] = rec
    return found


def by_name(doc: dict[str, object], field: str) -> dict[str, object]:
    acts = doc["activities"]
    assert isinstance(acts, list)
    return {a["name"]: a[field] for a in acts}


# ---------------------------------------------------------------------- the throttle


# Found by the hostile pass (fixed): an element's timeout counted from the array's sbatch,
# so elements held back by the array's own %MAX_QUEUED throttle timed out before they ran.
def test_a_timeout_is_not_spent_waiting_in_the_arrays_own_throttle(
    slurm_cluster: SlurmCluster, akoflow: Akoflow, tmp_path: Path
) -> None:
    # Five elements of 2 s each, one at a time (%1), each with a 7.5 s timeout: each runs well
    # within its limit (start-up included), but the last starts at least 8 s after the array
    # was submitted. (ARRAYS=off: the slots are MAX_QUEUED=1, each job is submitted when the
    # one before has ended, and each has its 7.5 s.)
    env, mount = env_for(slurm_cluster, "mount/arr-timeout", MAX_QUEUED="1")
    body = "        echo e{i} >> side.e{i}\n        sleep 2\n"
    wf = tmp_path / "fan.yaml"
    wf.write_text(fan_out(5, body, "      timeout: 7500ms\n"))
    res = akoflow("run", str(wf), "--json", env=env, timeout=120)
    doc = json.loads(res.stdout)
    for i in range(5):  # what ran, ran once
        side = mount / f"side.e{i}"
        assert not side.exists() or side.read_text() == f"e{i}\n"
    assert by_name(doc, "state") == {f"e{i}": "succeeded" for i in range(5)}, res.stdout
    assert res.returncode == 0


def test_array_max_plus_one_is_one_array_and_one_plain_job(
    slurm_cluster: SlurmCluster, akoflow: Akoflow, tmp_path: Path, state_dir: Path
) -> None:
    env, mount = env_for(slurm_cluster, "mount/arr-max1", MAX_QUEUED="4", ARRAY_MAX="3")
    wf = tmp_path / "fan.yaml"
    wf.write_text(fan_out(4, "        echo e{i} >> side.e{i}\n"))
    slurm_cluster.sdiag_reset()
    res = akoflow("run", str(wf), "--json", env=env, timeout=120)
    assert res.returncode == 0, res.stderr + res.stdout
    assert slurm_cluster.sdiag_rpcs().get(SUBMIT, 0) == 2  # 3 elements, then 1 plain job
    assert sorted(records(slurm_cluster, array_of(state_dir))) == [0, 1, 2]
    for i in range(4):
        assert (mount / f"side.e{i}").read_text() == f"e{i}\n"


# ---------------------------------------------------------------------- elements gone wrong


def test_an_element_that_scancels_its_own_array_fails_every_sibling_never_a_success(
    slurm_cluster: SlurmCluster, akoflow: Akoflow, tmp_path: Path
) -> None:
    """``scancel $SLURM_ARRAY_JOB_ID`` from inside an element kills its siblings, running and
    pending: each is recorded failed (none succeeded that never ran), the run ends."""
    env, mount = env_for(slurm_cluster, "mount/arr-selfkill", MAX_QUEUED="2")
    body = (
        "        echo e{i} >> side.e{i}\n"
        "        if [ e{i} = e0 ]; then " + WAIT.format(f="e1.up") + "; "
        "scancel $SLURM_ARRAY_JOB_ID; sleep 30; fi\n"
        "        touch e{i}.up\n"
        "        " + WAIT.format(f="never") + "\n"
    )
    wf = tmp_path / "fan.yaml"
    wf.write_text(fan_out(5, body))
    res = akoflow("run", str(wf), "--json", env=env, timeout=120)
    assert res.returncode == 1, res.stderr + res.stdout
    doc = json.loads(res.stdout)
    assert by_name(doc, "state") == {f"e{i}": "failed" for i in range(5)}
    ran = {i for i in range(5) if (mount / f"side.e{i}").exists()}
    assert ran == {0, 1}  # %2: the three pending ones never started
    for i in ran:
        assert (mount / f"side.e{i}").read_text() == f"e{i}\n"


def test_an_element_whose_batch_shell_is_killed_fails_with_the_reason(
    slurm_cluster: SlurmCluster, akoflow: Akoflow, tmp_path: Path
) -> None:
    """The node loses the element's batch step (its shell SIGKILLed): no exit file is ever
    written; the activity fails with SLURM's reason, its siblings succeed."""
    env, mount = env_for(slurm_cluster, "mount/arr-nodekill", MAX_QUEUED="3")
    body = (
        "        echo e{i} >> side.e{i}\n"
        "        if [ e{i} = e1 ]; then echo $PPID > e1.shell; " + WAIT.format(f="never") + "; fi\n"
    )
    wf = tmp_path / "fan.yaml"
    wf.write_text(fan_out(3, body))
    engine = start_cli(["run", str(wf), "--json", "--state-dir", str(tmp_path / "state")], env)
    try:
        wait_for(lambda: (mount / "e1.shell").exists() and (mount / "e1.shell").read_text(), 60)
        os.kill(int((mount / "e1.shell").read_text()), signal.SIGKILL)
        out, err = engine.communicate(timeout=90)
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.communicate()
    assert engine.returncode == 1, err + out
    doc = json.loads(out)
    assert by_name(doc, "state") == {"e0": "succeeded", "e1": "failed", "e2": "succeeded"}
    e1 = next(a for a in doc["activities"] if a["name"] == "e1")
    assert "signal 9" in (e1.get("error") or e1.get("reason") or json.dumps(e1)), e1
    for i in range(3):
        assert (mount / f"side.e{i}").read_text() == f"e{i}\n"


def cancel_pending_array(
    cluster: SlurmCluster, akoflow: Akoflow, tmp_path: Path, state_dir: Path, mount_name: str
) -> tuple[dict[str, object], Path, dict[str, int]]:
    """A fan-out of 6 (%1): one element runs, five wait in the array when the run is
    cancelled. The run's final document, MOUNT_PATH, slurmctld's RPCs since the cancel."""
    env, mount = env_for(cluster, mount_name, MAX_QUEUED="1")
    body = "        echo e{i} >> side.e{i}\n        " + WAIT.format(f="never") + "\n"
    wf = tmp_path / "fan.yaml"
    wf.write_text(fan_out(6, body))
    engine = start_cli(["run", str(wf), "--json", "--state-dir", str(state_dir)], env)
    try:
        wait_for(lambda: (mount / "side.e0").exists(), 60)
        cluster.sdiag_reset()
        res = akoflow("cancel", "1", env=env)
        assert res.returncode == 0, res.stderr
        out, err = engine.communicate(timeout=90)
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.communicate()
    assert out, err
    return json.loads(out), mount, cluster.sdiag_rpcs()


def test_cancelling_a_run_whose_array_is_pending_cancels_every_element_none_runs(
    slurm_cluster: SlurmCluster, akoflow: Akoflow, tmp_path: Path, state_dir: Path
) -> None:
    """``akoflow cancel`` while one element runs and the rest wait in the array's queue
    (%1): each is recorded cancelled, the pending ones never run."""
    doc, mount, _ = cancel_pending_array(
        slurm_cluster, akoflow, tmp_path, state_dir, "mount/arr-cancel-pending"
    )
    assert by_name(doc, "state") == {f"e{i}": "cancelled" for i in range(6)}, doc
    assert by_name(doc, "attempts") == {f"e{i}": 1 for i in range(6)}
    assert [i for i in range(6) if (mount / f"side.e{i}").exists()] == [0]
    recs = [r for r in slurm_cluster.jobcomp_records() if r.get("Name") == array_of(state_dir)]
    assert recs and {r["JobState"] for r in recs} == {"CANCELLED"}, recs


def test_cancelling_an_array_costs_one_scancel_not_one_per_element(
    slurm_cluster: SlurmCluster, akoflow: Akoflow, tmp_path: Path, state_dir: Path
) -> None:
    doc, _, rpcs = cancel_pending_array(
        slurm_cluster, akoflow, tmp_path, state_dir, "mount/arr-cancel-rpcs"
    )
    assert by_name(doc, "state") == {f"e{i}": "cancelled" for i in range(6)}, doc
    assert rpcs.get("REQUEST_KILL_JOB", 0) <= 1, rpcs


def self_cancel_run(
    cluster: SlurmCluster, akoflow: Akoflow, tmp_path: Path, mount_name: str
) -> tuple[dict[str, object], Path]:
    """Inside e0: ``scancel ${SLURM_ARRAY_JOB_ID}_3`` (a sibling still waiting, %2), then
    itself by ``ID_INDEX`` (this SLURM refuses an element's own ``$SLURM_JOB_ID`` from inside
    it: "Invalid job id specified", and the script goes on)."""
    env, mount = env_for(cluster, mount_name, MAX_QUEUED="2")
    body = (
        "        echo e{i} >> side.e{i}\n"
        "        if [ e{i} = e0 ]; then " + WAIT.format(f="e1.up") + "; "
        "scancel ${{SLURM_ARRAY_JOB_ID}}_3; touch e3.gone; "
        "scancel ${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}; sleep 30; fi\n"
        "        if [ e{i} = e1 ]; then touch e1.up; " + WAIT.format(f="e3.gone") + "; fi\n"
    )
    wf = tmp_path / "fan.yaml"
    wf.write_text(fan_out(4, body))
    res = akoflow("run", str(wf), "--json", env=env, timeout=120)
    assert res.returncode == 1, res.stderr + res.stdout
    return json.loads(res.stdout), mount


def test_an_element_cancels_itself_and_a_pending_sibling(
    slurm_cluster: SlurmCluster, akoflow: Akoflow, tmp_path: Path
) -> None:
    """Both fail, e3 never runs, the other two succeed once."""
    doc, mount = self_cancel_run(slurm_cluster, akoflow, tmp_path, "mount/arr-self-cancel")
    assert by_name(doc, "state") == {
        "e0": "failed", "e1": "succeeded", "e2": "succeeded", "e3": "failed"
    }  # fmt: skip
    assert by_name(doc, "reason")["e0"] == "cancelled in SLURM (scancel)"
    assert [i for i in range(4) if (mount / f"side.e{i}").exists()] == [0, 1, 2]
    for i in range(3):
        assert (mount / f"side.e{i}").read_text() == f"e{i}\n"


def test_a_pending_element_cancelled_in_slurm_says_so(
    slurm_cluster: SlurmCluster, akoflow: Akoflow, tmp_path: Path
) -> None:
    doc, _ = self_cancel_run(slurm_cluster, akoflow, tmp_path, "mount/arr-pending-cancel")
    assert by_name(doc, "state")["e3"] == "failed"
    reason = str(by_name(doc, "reason")["e3"])
    assert "cancel" in reason or "never ran" in reason or "did not run" in reason, reason


# ---------------------------------------------------------------------- metrics


def test_running_array_elements_have_cpu_and_memory_samples(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    env = runtime_env(slurm_cluster, "hpc", "mount/arr-metrics", ARRAYS="on",
                      METRICS_INTERVAL="0.5")  # fmt: skip
    mount = Path(env["HPC_MOUNT_PATH"])
    mount.mkdir(parents=True, exist_ok=True)
    events = Recorder()
    rt = make(env, events)
    spin = "touch up.{n}; i=0; until [ -e go ] || [ $i -ge 600 ]; do sleep 0.1; i=$((i+1)); done"
    jobs = [job_spec(tmp_path, f"m{i}", spin.format(n=i)) for i in range(2)]
    seen: dict[str, object] = {}

    async def scenario() -> None:
        await rt.start()
        try:
            handles = await rt.submit_many(jobs)
            assert all(isinstance(h, dict) and "index" in h for h in handles)
            await asyncio.to_thread(
                wait_for, lambda: all((mount / f"up.{i}").exists() for i in range(2)), 30
            )
            live = {j.key: h for j, h in zip(jobs, handles, strict=True) if isinstance(h, dict)}
            for _ in range(8):  # bounded: a few samples (the monitor marks them RUNNING)
                seen.update(await rt.metrics(live))
                if len(seen) == 2:
                    break
                await asyncio.sleep(0.6)
            (mount / "go").touch()
            for job in jobs:
                await wait_finished(events, job.key)
        finally:
            await rt.stop()

    asyncio.run(scenario())
    assert sorted(seen) == sorted(j.key for j in jobs), seen
