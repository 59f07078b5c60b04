"""Runtime settings, login node and bastion on the session's private SLURM cluster (munged,
slurmctld, slurmd and an sshd, from Debian's packages under a tmp dir, stopped by PID:
tests/daemons.py's ``slurm_cluster``). If one cannot be set up the tests FAIL: a machine
without SLURM must not pass them by skipping."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.slurm_support.cluster import ClusterError, SlurmCluster


@pytest.fixture
def login_node(slurm_cluster: SlurmCluster) -> Iterator[SlurmCluster]:
    """The cluster's login node as a host of its own: sshd in network namespace
    ``akf-hpcsim`` (198.18.99.10, hostname login01), removed by name afterwards."""
    try:
        slurm_cluster.start_netns()
    except (ClusterError, OSError, Exception) as exc:
        slurm_cluster.stop_netns()
        pytest.fail(f"cannot start the login node namespace: {exc}", pytrace=False)
    try:
        yield slurm_cluster
    finally:
        slurm_cluster.stop_netns()


def runtime_env(
    cluster: SlurmCluster, name: str, mount: str, *, netns: bool = False, **extra: str
) -> dict[str, str]:
    """``{NAME}_*`` settings for a runtime on ``cluster``; fast polling for tests."""
    prefix = name.upper().replace("-", "_") + "_"
    env = cluster.settings(name, netns=netns)
    env[prefix + "MOUNT_PATH"] = str(cluster.root / mount)
    env[prefix + "POLL_INTERVAL"] = "0.3"
    env[prefix + "SUBMIT_RATE"] = "50"
    env[prefix + "RECONNECT_MAX"] = "0.5"
    env[prefix + "METRICS_INTERVAL"] = "1"
    env[prefix + "SSH_CONFIG_FILE"] = "none"  # the machine's ~/.ssh/config is not the test's
    # One sbatch per attempt, the jobs these tests name and count; job arrays (the default)
    # are tested with ARRAYS=on in test_job_arrays.py.
    env[prefix + "ARRAYS"] = "off"
    env.update({prefix + k: v for k, v in extra.items()})
    return env


SSH_KEYS = ("HOST_CLUSTER", "PORT", "USER", "KEY_FILE", "KNOWN_HOSTS", "SSH_CONFIG_FILE")


def local_env(cluster: SlurmCluster, name: str, mount: str, **extra: str) -> dict[str, str]:
    """Settings of a runtime whose engine runs on the login node (``TRANSPORT=local``): no
    host, user or key; SLURM's clients find the cluster through ``SLURM_CONF``, as a login
    node's do."""
    prefix = name.upper().replace("-", "_") + "_"
    env = runtime_env(cluster, name, mount, TRANSPORT="local", **extra)
    for key in SSH_KEYS:
        env.pop(prefix + key)
    env["SLURM_CONF"] = str(cluster.conf)
    return env


@pytest.fixture
def hpc_env(
    slurm_cluster: SlurmCluster, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> dict[str, str]:
    """Runtime ``hpc`` configured for the session's cluster, with its own MOUNT_PATH."""
    mount = "mount/" + re.sub(r"[^A-Za-z0-9_.-]", "-", request.node.name)
    env = runtime_env(slurm_cluster, "hpc", mount)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with contextlib.suppress(FileExistsError):
        Path(env["HPC_MOUNT_PATH"]).mkdir(parents=True)
    return env


@pytest.fixture
def bastion(login_node: SlurmCluster) -> Iterator[SlurmCluster]:
    """The login node behind a bastion (namespace ``akf-bastion``, 198.18.98.2): its second sshd
    (198.18.97.10) is reachable only through the bastion; removed by name afterwards."""
    try:
        login_node.start_bastion()
    except (ClusterError, OSError, Exception) as exc:
        login_node.stop_bastion()
        pytest.fail(f"cannot start the bastion namespace: {exc}", pytrace=False)
    try:
        yield login_node
    finally:
        login_node.stop_bastion()
