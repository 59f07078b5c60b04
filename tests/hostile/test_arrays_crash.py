"""Hostile pass on SLURM job arrays (issue 20, item 3): the engine SIGKILLed inside the array's
``sbatch`` window, and slurmctld restarted mid-array, then ``akoflow resume``: each element's
own side-effect file has exactly one line, nothing reported succeeded that never ran, nothing
stuck.

The engine runs on the login node (``TRANSPORT=local``) with a ``sbatch`` of the test's first
on its PATH: for an ``--array`` submission it waits for a go file before (``HOLD=before``) or
after (``HOLD=after``) calling the real one, so the engine can be killed exactly there."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from akoflow.engine.model import run_dir
from akoflow.runtimes.hpc import sbatch
from akoflow.runtimes.scope import scope_of
from tests.conftest import Akoflow, cli_env, start_cli, wait_for
from tests.hpc_runtime.conftest import local_env
from tests.slurm_support.cluster import SlurmCluster

pytestmark = [pytest.mark.slurm, pytest.mark.needs_root]

SUBMIT = "REQUEST_SUBMIT_BATCH_JOB"
WAIT = "i=0; until [ -e {f} ] || [ $i -ge 1200 ]; do sleep 0.05; i=$((i+1)); done"

HOSTILE_SBATCH = """#!/bin/bash
# sbatch held at the hostile test's chosen moment (only array submissions, only when HOLD is set)
hold="${{AKF_TEST_HOLD:-}}"
case " $* " in *" --array="*) ;; *) hold= ;; esac
wait_go() {{
  touch {d}/held.$1; i=0
  until [ -e {d}/go ] || [ $i -ge 1200 ]; do sleep 0.05; i=$((i+1)); done
}}
[ "$hold" = before ] && wait_go before
out=$({real} "$@"); rc=$?
[ "$hold" = after ] && {{ printf '%s\\n' "$out" > {d}/array.id; wait_go after; }}
printf '%s\\n' "$out"
exit $rc
"""


def fan_out(n: int, body: str, name: str = "fan") -> str:
    acts = "".join(f"    - name: e{i}\n      run: |\n{body.format(i=i)}" for i in range(n))
    return f"name: {name}\nspec:\n  runtime: hpc\n  activities:\n{acts}"


def hostile_path(tmp_path: Path) -> tuple[Path, str]:
    """A dir holding the hostile sbatch, and a PATH that finds it first."""
    real = shutil.which("sbatch")
    assert real is not None
    bindir, hold = tmp_path / "bin", tmp_path / "hold"
    bindir.mkdir()
    hold.mkdir()
    script = bindir / "sbatch"
    script.write_text(HOSTILE_SBATCH.format(d=hold, real=real))
    script.chmod(0o755)
    return hold, f"{bindir}:{os.environ['PATH']}"


def records(cluster: SlurmCluster, name: str) -> list[dict[str, str]]:
    return [r for r in cluster.jobcomp_records() if r.get("Name") == name]


def squeue_left(cluster: SlurmCluster, name: str) -> list[str]:
    out = subprocess.run(
        ["squeue", "-h", "--array", "-t", "PENDING,RUNNING,COMPLETING", "-n", name, "-o", "%i"],
        capture_output=True, text=True, env=cluster.env(), timeout=30, check=True,
    ).stdout  # fmt: skip
    return out.split()


def by_name(doc: dict[str, object], field: str) -> dict[str, object]:
    acts = doc["activities"]
    assert isinstance(acts, list)
    return {a["name"]: a[field] for a in acts}


def kill(engine: subprocess.Popen[str]) -> None:
    os.kill(engine.pid, signal.SIGKILL)
    engine.communicate(timeout=10)
    assert engine.returncode == -signal.SIGKILL


def test_killed_before_the_arrays_sbatch_reached_slurm_a_late_array_runs_nothing(
    slurm_cluster: SlurmCluster, akoflow: Akoflow, tmp_path: Path, state_dir: Path
) -> None:
    """Claims and ``array`` files written, the engine dies inside sbatch before it reached
    slurmctld; the resume claims every element and sends new attempts; the dead engine's
    sbatch then goes through after all (a late copy): its elements find their claims taken
    and run nothing."""
    hold, path = hostile_path(tmp_path)
    env = cli_env(**local_env(slurm_cluster, "hpc", "mount/arr-kill-before", MAX_QUEUED="4",
                              ARRAYS="on"), PATH=path)  # fmt: skip
    mount = Path(env["HPC_MOUNT_PATH"])
    mount.mkdir(parents=True, exist_ok=True)
    wf = tmp_path / "fan.yaml"
    wf.write_text(fan_out(4, "        echo e{i} >> side.e{i}\n"))
    engine = start_cli(["run", str(wf), "--quiet", "--state-dir", str(state_dir)],
                       {**env, "AKF_TEST_HOLD": "before"})  # fmt: skip
    try:
        wait_for(lambda: (hold / "held.before").exists(), 60)
    finally:
        kill(engine)
    first = sbatch.array_name(scope_of(run_dir(state_dir, 1, "fan") / "attempts"), "wf1-e0-a1")
    res = akoflow("resume", "--json", env=env, timeout=120)
    assert res.returncode == 0, res.stderr + res.stdout
    doc = json.loads(res.stdout)
    assert by_name(doc, "state") == {f"e{i}": "succeeded" for i in range(4)}
    assert by_name(doc, "attempts") == {f"e{i}": 2 for i in range(4)}
    (hold / "go").touch()  # the dead engine's sbatch goes through now
    wait_for(lambda: len(records(slurm_cluster, first)) == 4, 60)
    for i in range(4):
        assert (mount / f"side.e{i}").read_text() == f"e{i}\n", i
    assert {r["ExitCode"] for r in records(slurm_cluster, first)} == {f"{sbatch.CLAIM_LOST_EXIT}:0"}


def test_killed_after_the_arrays_sbatch_before_its_id_was_read_elements_are_adopted(
    slurm_cluster: SlurmCluster, akoflow: Akoflow, tmp_path: Path, state_dir: Path
) -> None:
    """The array exists in SLURM, the engine dies before it learns its id (no handle stored);
    its elements run and end while no engine watches, then the resume finds each by the
    ``array`` file in its dir: each ran once, the failed one is failed, none sent again."""
    hold, path = hostile_path(tmp_path)
    env = cli_env(**local_env(slurm_cluster, "hpc", "mount/arr-kill-after", MAX_QUEUED="3",
                              ARRAYS="on"), PATH=path)  # fmt: skip
    mount = Path(env["HPC_MOUNT_PATH"])
    mount.mkdir(parents=True, exist_ok=True)
    body = (
        "        echo e{i} >> side.e{i}\n"
        "        " + WAIT.format(f="release") + "\n"
        "        if [ e{i} = e2 ]; then exit 4; fi\n"
    )
    wf = tmp_path / "fan.yaml"
    wf.write_text(fan_out(6, body))
    slurm_cluster.sdiag_reset()
    engine = start_cli(["run", str(wf), "--quiet", "--state-dir", str(state_dir)],
                       {**env, "AKF_TEST_HOLD": "after"})  # fmt: skip
    try:
        wait_for(lambda: (hold / "held.after").exists(), 60)
        wait_for(lambda: len(list(mount.glob("side.e*"))) >= 3, 60)  # 3 run, 3 pend (%3)
    finally:
        kill(engine)
    (hold / "go").touch()
    (mount / "release").touch()
    res = akoflow("resume", "--json", env=env, timeout=120)
    assert res.returncode == 1, res.stderr + res.stdout  # e2 failed
    doc = json.loads(res.stdout)
    assert by_name(doc, "state") == {f"e{i}": "failed" if i == 2 else "succeeded" for i in range(6)}
    assert by_name(doc, "attempts") == {f"e{i}": 1 for i in range(6)}
    assert by_name(doc, "exit_code")["e2"] == 4
    assert slurm_cluster.sdiag_rpcs().get(SUBMIT, 0) == 1
    for i in range(6):
        assert (mount / f"side.e{i}").read_text() == f"e{i}\n", i


def test_slurmctld_restarted_mid_array_loses_no_element(
    slurm_cluster: SlurmCluster, akoflow: Akoflow, tmp_path: Path, state_dir: Path
) -> None:
    """slurmctld stops while two elements run and four wait (%2) and comes back with its saved
    state: the engine's polls fail meanwhile (nothing changes), then every element runs once
    and is recorded with its own exit code."""
    env = cli_env(**local_env(slurm_cluster, "hpc", "mount/arr-ctld", MAX_QUEUED="2",
                              ARRAYS="on"))  # fmt: skip
    mount = Path(env["HPC_MOUNT_PATH"])
    mount.mkdir(parents=True, exist_ok=True)
    body = (
        "        echo e{i} >> side.e{i}\n"
        "        " + WAIT.format(f="release") + "\n"
        "        if [ e{i} = e4 ]; then exit 6; fi\n"
    )
    wf = tmp_path / "fan.yaml"
    wf.write_text(fan_out(6, body))
    engine = start_cli(["run", str(wf), "--json", "--state-dir", str(state_dir)], env)
    try:
        wait_for(lambda: len(list(mount.glob("side.e*"))) >= 2, 60)
        slurm_cluster.stop_ctld()
        try:
            (mount / "release").touch()  # the two running ones end while slurmctld is away
            wait_for(lambda: all((mount / f"side.e{i}").exists() for i in (0, 1)), 10)
        finally:
            slurm_cluster.start_ctld()
        out, err = engine.communicate(timeout=120)
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.communicate()
    assert engine.returncode == 1, err + out
    doc = json.loads(out)
    assert by_name(doc, "state") == {f"e{i}": "failed" if i == 4 else "succeeded" for i in range(6)}
    assert by_name(doc, "attempts") == {f"e{i}": 1 for i in range(6)}
    assert by_name(doc, "exit_code")["e4"] == 6
    for i in range(6):
        assert (mount / f"side.e{i}").read_text() == f"e{i}\n", i
