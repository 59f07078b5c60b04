"""A run whose work is on a cluster that becomes unreachable for a reason waiting cannot fix
(here: the login node's host key no longer matches known_hosts) does not hang: `akoflow run`
says why and exits 1, leaving the job running and unrecorded; once the key is fixed,
`akoflow resume` follows the job to its end: it ran once and succeeded."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.hpc_runtime.conftest import runtime_env
from tests.slurm_support.cluster import SlurmCluster

WORKFLOW = """\
name: stranded
spec:
  runtime: hpc
  collect: none
  activities:
    - name: long
      run: |
        echo started > started.txt
        sleep 6
        echo once >> ran.txt
"""


def akoflow(*args: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "akoflow", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_a_host_key_change_mid_run_ends_the_wait_with_the_reason_and_resume_follows(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    known = tmp_path / "known_hosts"
    shutil.copy(slurm_cluster.known_hosts, known)
    other = tmp_path / "other_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    kind, key = other.with_suffix(".pub").read_text().split()[:2]
    settings = runtime_env(slurm_cluster, "hpc", "mount/stranded", KNOWN_HOSTS=str(known))
    mount = Path(settings["HPC_MOUNT_PATH"])
    mount.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **settings}
    wf = tmp_path / "wf.yaml"
    wf.write_text(WORKFLOW)
    state = tmp_path / "state"
    run = subprocess.Popen(
        [sys.executable, "-m", "akoflow", "run", str(wf), "--state-dir", str(state)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (mount / "started.txt").exists():  # the job runs on the cluster
            assert run.poll() is None, run.communicate()
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.1)
        # The login node's key "changes": the next connection meets a key known_hosts lacks.
        known.write_text(f"[127.0.0.1]:{slurm_cluster.ssh_port} {kind} {key}\n")
        slurm_cluster.sshd.stop()  # its sessions too: the engine must connect again
        slurm_cluster.sshd.start()
        out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 1, out + err
    assert "run 1 cannot go on" in err and "host key" in err, err
    assert "akoflow resume 1" in err
    assert "Traceback" not in err

    shutil.copy(slurm_cluster.known_hosts, known)  # fixed
    resumed = akoflow("resume", "1", "--state-dir", str(state), env=env, timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert (mount / "ran.txt").read_text() == "once\n"  # ran once, followed to its end
    status = akoflow("status", "1", "--json", "--state-dir", str(state), env=env, timeout=60)
    assert '"succeeded"' in status.stdout
