"""The engine (the real CLI) is SIGKILLed while SLURM jobs run; resuming adopts them by job
name and submits nothing twice. SLURM's own job-completion log is the witness: one job per
attempt, one attempt per activity. Over SSH, and with the engine on the login node
(``TRANSPORT=local``: then no SSH connection at all)."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import Akoflow, cli_env, start_cli, wait_for
from tests.hpc_runtime.conftest import local_env, runtime_env
from tests.hpc_runtime.test_hpc_engine import jobcomp, slurm_name
from tests.slurm_support.cluster import SlurmCluster


@pytest.mark.parametrize("transport", ["ssh", "local"])
def test_engine_sigkill_mid_run_then_resume_submits_nothing_twice(
    slurm_cluster: SlurmCluster, akoflow: Akoflow, tmp_path: Path, state_dir: Path, transport: str
) -> None:
    settings = runtime_env if transport == "ssh" else local_env
    env = cli_env(**settings(slurm_cluster, "hpc", f"mount/crash-{transport}"))
    logins = slurm_cluster.sshd.connections()
    mount = Path(env["HPC_MOUNT_PATH"])
    mount.mkdir(parents=True, exist_ok=True)
    wf = tmp_path / "crash.yaml"
    wf.write_text(
        "name: crashy\nspec:\n  runtime: hpc\n  activities:\n"
        "    - name: slow\n      run: |\n        echo run >> count.slow\n"
        "        while [ ! -e slow.release ]; do sleep 0.1; done\n        echo done > slow.out\n"
        "    - name: fast\n      run: echo run >> count.fast\n"
        "    - name: after\n      dependsOn: [slow]\n"
        "      run: |\n        echo run >> count.after\n        cat slow.out\n"
    )
    data = tmp_path / "data"
    engine = start_cli(
        [
            "run",
            str(wf),
            "--quiet",
            "--state-dir",
            str(state_dir),
            "--data-dir",
            str(data),
        ],
        env,
    )
    wait_for(
        lambda: (mount / "count.slow").exists() and (mount / "count.fast").exists(), timeout=60
    )
    os.kill(engine.pid, signal.SIGKILL)
    engine.communicate(timeout=10)
    assert engine.returncode == -signal.SIGKILL
    (mount / "slow.release").touch()  # `slow` ends while no engine is watching

    res = akoflow("resume", "--json", env=env, timeout=120)
    assert res.returncode == 0, res.stderr + res.stdout
    doc = json.loads(res.stdout)
    assert doc["workflow"]["id"] == 1
    assert {a["name"]: a["state"] for a in doc["activities"]} == {
        "slow": "succeeded",
        "fast": "succeeded",
        "after": "succeeded",
    }
    assert {a["name"]: a["attempts"] for a in doc["activities"]} == {
        "slow": 1,
        "fast": 1,
        "after": 1,
    }
    for name in ("slow", "fast", "after"):
        assert (mount / f"count.{name}").read_text() == "run\n", name
        records = jobcomp(slurm_cluster, slurm_name(tmp_path, 1, "crashy", name))
        assert [r["JobState"] for r in records] == ["COMPLETED"], name
        assert not jobcomp(slurm_cluster, slurm_name(tmp_path, 1, "crashy", name, attempt=2))
    if transport == "local":
        assert slurm_cluster.sshd.connections() == logins  # the login node was never asked


def test_a_job_that_outlived_its_timeout_while_no_engine_ran_is_timed_out(
    slurm_cluster: SlurmCluster, akoflow: Akoflow, tmp_path: Path, state_dir: Path
) -> None:
    """``timeout: 2s``; the engine dies and the job runs on 3 s more, then exits 0. `resume`
    judges it by when its command began and ended, as the job recorded them on the node:
    timed out (a live engine would have stopped it), and its dependent never runs."""
    env = cli_env(**runtime_env(slurm_cluster, "hpc", "mount/late"))
    mount = Path(env["HPC_MOUNT_PATH"])
    mount.mkdir(parents=True, exist_ok=True)
    wf = tmp_path / "late.yaml"
    wf.write_text(
        "name: late\nspec:\n  runtime: hpc\n  activities:\n"
        "    - name: slow\n      timeout: 2s\n      run: |\n        echo run >> count.slow\n"
        "        while [ ! -e slow.release ]; do sleep 0.1; done\n"
        "    - name: after\n      dependsOn: [slow]\n      run: echo run >> count.after\n"
    )
    engine = start_cli(
        ["run", str(wf), "--quiet", "--state-dir", str(state_dir), "--data-dir",
         str(tmp_path / "data")],
        env,
    )  # fmt: skip
    wait_for(lambda: (mount / "count.slow").exists(), timeout=60)
    os.kill(engine.pid, signal.SIGKILL)
    engine.communicate(timeout=10)
    time.sleep(3)
    (mount / "slow.release").touch()  # it ends, 3 s past its start, while no engine watches
    wait_for(lambda: any((mount / ".akoflow").rglob("exit")), timeout=60)

    res = akoflow("resume", "--json", env=env, timeout=120)
    assert res.returncode == 1, res.stderr + res.stdout
    acts = {a["name"]: a for a in json.loads(res.stdout)["activities"]}
    assert acts["slow"]["state"] == "failed", acts["slow"]
    ran = re.fullmatch(r"timed out after 2s \(it ran ([0-9.]+)s, ending while no engine watched\)",
                       acts["slow"]["reason"])  # fmt: skip
    assert ran is not None and float(ran[1]) >= 3, acts["slow"]
    assert acts["after"]["state"] == "skipped"
    assert (mount / "count.slow").read_text() == "run\n"
    assert not (mount / "count.after").exists()
