"""Hostile pass on the data plane (issue 17): the engine (the real CLI) SIGKILLed while a file
one job wrote waits for the end of another job running at the same MOUNT_PATH (it may be
writing it), then ``akoflow resume``: every file comes back whole, nothing runs twice."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from akoflow import service
from akoflow.dataplane.mover import PART_SUFFIX
from akoflow.states import ActivityState
from tests.conftest import Akoflow, cli_env, start_cli, wait_for
from tests.hpc_runtime.conftest import runtime_env
from tests.hpc_runtime.test_data_plane_crash import slurm_runs
from tests.slurm_support.cluster import SlurmCluster

pytestmark = [pytest.mark.slurm, pytest.mark.needs_root]

# Bounded waits (60 s) for a sync file in MOUNT_PATH.
WAIT = "i=0; until ls $1 >/dev/null 2>&1 || [ $i -ge 1200 ]; do sleep 0.05; i=$((i+1)); done"

DEFERRED = f"""\
name: kill-deferred
spec:
  runtime: hpc
  activities:
    - name: slow
      run: |
        wait_for() {{ {WAIT}; }}
        echo run >> count.slow
        echo start > big.txt
        touch slow.started
        wait_for go
        i=0; while [ $i -lt 20 ]; do seq 1 200 >> big.txt; i=$((i+1)); done
        echo end >> big.txt
    - name: fast
      run: |
        wait_for() {{ {WAIT}; }}
        echo run >> count.fast
        wait_for slow.started
        echo fast > fast.txt
    - name: use
      runtime: local
      dependsOn: [slow, fast]
      run: cat big.txt fast.txt | wc -l > lines.txt
"""


def state_of(state_dir: Path, name: str) -> ActivityState | None:
    repo = service.open_repository(state_dir)
    try:
        found = {a.name: a.state for a in repo.list_activities(1)}
    finally:
        repo.close()
    return found.get(name)


def test_sigkill_while_a_file_waits_for_another_jobs_end_then_resume(
    slurm_cluster: SlurmCluster, akoflow: Akoflow, tmp_path: Path, state_dir: Path
) -> None:
    env = cli_env(**runtime_env(slurm_cluster, "hpc", "mount/hostile-kill-deferred"))
    mount = Path(env["HPC_MOUNT_PATH"])
    mount.mkdir(parents=True, exist_ok=True)
    data = tmp_path / "data"
    wf = tmp_path / "wf.yaml"
    wf.write_text(DEFERRED)
    argv = ["run", str(wf), "--quiet", "--state-dir", str(state_dir), "--data-dir", str(data)]
    engine = start_cli(argv, env)
    try:
        wait_for(lambda: state_of(state_dir, "fast") is ActivityState.SUCCEEDED, timeout=60)
        # slow runs (fast waited for it to start); its RUNNING record may lag its start by
        # up to a second (docs/operating.md), and the kill is meant to find it stored so.
        wait_for(lambda: state_of(state_dir, "slow") is ActivityState.RUNNING, timeout=10)
    finally:
        os.kill(engine.pid, signal.SIGKILL)
        engine.communicate(timeout=10)
    assert not (data / "big.txt").exists()  # slow may still write it: not brought yet
    (mount / "go").touch()  # slow finishes big.txt while no engine runs

    res = akoflow("resume", "--json", env=env, timeout=120)
    assert res.returncode == 0, res.stderr + res.stdout
    doc = json.loads(res.stdout)
    assert {(a["name"], a["state"], a["attempts"]) for a in doc["activities"]} == {
        ("slow", "succeeded", 1),
        ("fast", "succeeded", 1),
        ("use", "succeeded", 1),
    }
    whole = (mount / "big.txt").read_bytes()
    assert whole.endswith(b"end\n")
    assert (data / "big.txt").read_bytes() == whole
    assert (data / "fast.txt").read_text() == "fast\n"
    assert (data / "lines.txt").read_text().strip() == str(whole.count(b"\n") + 1)
    assert (mount / "count.slow").read_text() == "run\n"
    assert (mount / "count.fast").read_text() == "run\n"
    assert slurm_runs(slurm_cluster, tmp_path, "kill-deferred", "slow") == ["COMPLETED"]
    assert slurm_runs(slurm_cluster, tmp_path, "kill-deferred", "fast") == ["COMPLETED"]
    assert not [p for p in data.rglob("*") if p.name.endswith(PART_SUFFIX)]
    assert not [p for p in mount.rglob("*") if p.name.endswith(PART_SUFFIX)]
