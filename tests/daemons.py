"""The suite's session-wide set-ups, each started once for every directory that uses it.

A fixture defined (or imported) in two conftest files is two fixtures to pytest, each set up
on its own: the private dockerd, the emulated kubelets' dockerd and the SLURM cluster were
started twice (tests/singularity_runtime and tests/hostile imported them), the SIF images
built twice. tests/conftest.py imports these, so there is one of each. If one cannot be set
up the tests FAIL: a machine without it must not pass them by skipping."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.slurm_support.cluster import ClusterError, SlurmCluster

if TYPE_CHECKING:
    from tests.docker_support.dockerd import PrivateDockerd
    from tests.singularity_runtime.conftest import Images


@pytest.fixture(scope="session")
def dockerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateDockerd]:
    """The `docker` runtime's private daemon, its busybox image imported."""
    from tests.docker_runtime.conftest import start_private_dockerd  # imports tests.conftest

    daemon = start_private_dockerd(tmp_path_factory.mktemp("dockerd"))
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="session")
def k8s_dockerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateDockerd]:
    """The emulated clusters' kubelets run their pods in this daemon (not the docker
    runtime's: its tests count that daemon's containers)."""
    from tests.docker_runtime.conftest import start_private_dockerd

    daemon = start_private_dockerd(tmp_path_factory.mktemp("k8s-dockerd"))
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A private SLURM cluster (munged, slurmctld, slurmd) with an SSH login node."""
    # Not under pytest's basetemp: a concurrent pytest run may prune old basetemps, and this
    # directory holds the daemons' state while they run.
    root = Path(tempfile.mkdtemp(prefix="akf-slurm-"))
    cluster = SlurmCluster(root)
    try:
        cluster.start()
    except (ClusterError, OSError, Exception) as exc:  # never a skip
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"cannot start a private SLURM cluster: {exc}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> Images:
    """A real SIF of busybox and a docker-save archive of it, run once by the test launcher
    (tests/singularity_runtime, and the container test of tests/hpc_runtime)."""
    from tests.singularity_runtime.conftest import build_images

    return build_images(tmp_path_factory.mktemp("sif"))
