"""``akoflow runtimes check`` against the private SLURM cluster and its sshd, through the real
CLI: a good setup (a Host alias of the user's ssh config) passes every step; a wrong queue, an
unknown host alias and a missing key each fail the step they are about, with its fix, and
exit 1."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import cli_env
from tests.hpc_runtime.conftest import runtime_env
from tests.hpc_runtime.test_hpc_ssh_setup import hashed_known_hosts, spec_only_env
from tests.slurm_support.cluster import PARTITION, SlurmCluster

HPC_STEPS = [
    "settings", "ssh config", "host address", "host key", "connect", "sinfo", "sbatch",
    "MOUNT_PATH", "rsync",
]  # fmt: skip


def check(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any], str]:
    proc = subprocess.run(
        [sys.executable, "-m", "akoflow", "runtimes", "check", "hpc", "--json", *args],
        capture_output=True,
        text=True,
        env=cli_env(**env),
        timeout=60,
    )
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def steps(report: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {s["name"]: s for s in report["steps"]}


def test_a_good_setup_passes_every_step(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    port = slurm_cluster.ssh_port
    key = home / ".ssh" / "id_cluster"
    shutil.copy(slurm_cluster.client_key, key)
    (home / ".ssh" / "config").write_text(
        f"Host mycluster\n  HostName 127.0.0.1\n  Port {port}\n  IdentityFile {key}\n"
    )
    hashed_known_hosts(slurm_cluster, home / ".ssh" / "known_hosts", f"[127.0.0.1]:{port}")
    env = spec_only_env(slurm_cluster, "mount/check-good", "mycluster", PASSWORD="s3cr3t")
    env["HOME"] = str(home)
    code, report, stderr = check(env)
    assert code == 0, (report, stderr)
    assert [s["name"] for s in report["steps"]] == HPC_STEPS
    assert all(s["status"] == "ok" for s in report["steps"]), report
    assert report["ok"] is True
    # The login as it will be made: the alias resolved through the user's config.
    assert report["resolved"]["login"] == f"root@mycluster (127.0.0.1):{port}"
    assert report["resolved"]["identity"] == str(key)
    by = steps(report)
    assert f"partition {PARTITION}" in by["sinfo"]["detail"]
    assert by["sbatch"]["detail"].startswith("slurm")
    assert "through the login's own connection" in by["rsync"]["detail"]
    # The secret is masked; the probe left nothing in MOUNT_PATH.
    assert report["settings"]["HPC_PASSWORD"] == "***" and "s3cr3t" not in json.dumps(report)
    assert list(Path(env["HPC_MOUNT_PATH"]).iterdir()) == []


def test_each_wrong_setup_fails_its_step_with_the_fix(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    good = runtime_env(slurm_cluster, "hpc", "mount/check-wrong")
    cases = {
        "a queue sinfo does not know": (
            {**good, "HPC_QUEUE": "nosuchqueue"},
            "sinfo",
            "partition nosuchqueue does not exist",
            f"set HPC_QUEUE to one of: {PARTITION}",
        ),
        "an unknown host alias": (
            {**good, "HPC_HOST_CLUSTER": "nosuchcluster"},
            "host address",
            "host nosuchcluster is unknown (it is no Host alias of any ssh config)",
            "set HPC_HOST_CLUSTER to the alias",
        ),
        "a missing key": (  # read offline with the settings: no login is tried
            {**good, "HPC_KEY_FILE": str(tmp_path / "missing_key")},
            "settings",
            f"HPC_KEY_FILE cannot read {tmp_path / 'missing_key'}",
            "fix the setting the message names",
        ),
    }
    for case, (env, failing, problem, fix) in cases.items():
        code, report, _ = check(env)
        assert code == 1, (case, report)
        by = steps(report)
        failed = [s["name"] for s in report["steps"] if s["status"] == "failed"]
        assert failed == [failing], (case, report)
        assert problem in by[failing]["detail"], (case, by[failing])
        assert fix in by[failing]["fix"], (case, by[failing])
        after = HPC_STEPS[HPC_STEPS.index(failing) + 1 :]
        if failing == "settings":  # nothing else can run without them
            assert list(by) == ["settings"], (case, report)
        elif failing != "sinfo":  # the login failed: nothing on the cluster was tried
            assert all(by[name]["status"] == "skipped" for name in after), (case, report)
        else:  # the other cluster steps do not depend on the queue
            assert all(by[name]["status"] == "ok" for name in after), (case, report)


def test_the_text_view_marks_each_step(slurm_cluster: SlurmCluster) -> None:
    env = runtime_env(slurm_cluster, "hpc", "mount/check-text", QUEUE="nosuchqueue")
    proc = subprocess.run(
        [sys.executable, "-m", "akoflow", "runtimes", "check", "hpc"],
        capture_output=True,
        text=True,
        env=cli_env(**env),
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.startswith("✓") and "connect" in line for line in lines), proc.stdout
    assert any(line.startswith("✗") and "sinfo" in line for line in lines), proc.stdout
    assert "fix: set HPC_QUEUE to one of" in proc.stdout
    assert "8 of 9 checks passed" in proc.stdout
