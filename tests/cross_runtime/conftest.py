"""Every backend of the suite at once, for workflows that span them: a private dockerd (the
`docker` runtime's daemon, and the container engine of the emulated clusters' kubelets), a
private SLURM cluster with its SSH login node, and two emulated Kubernetes clusters with API
servers of their own. Scoped to the module, so they stop once its tests are done. If one
cannot be set up, the tests FAIL (never skip)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docker_runtime.conftest import start_private_dockerd
from tests.docker_support.dockerd import IMAGE, PrivateDockerd
from tests.k8s_support.cluster import EmulatedCluster
from tests.slurm_support.cluster import SlurmCluster

# The examples' image: the suite's busybox tagged as it, as if pulled (nothing is pulled).
EXAMPLE_IMAGE = "busybox:stable"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateDockerd]:
    daemon = start_private_dockerd(tmp_path_factory.mktemp("cross-dockerd"))
    try:
        repository, _, tag = EXAMPLE_IMAGE.rpartition(":")
        daemon.api.tag(IMAGE, repository, tag)
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="module")
def slurm() -> Iterator[SlurmCluster]:
    # Not under pytest's basetemp, as in tests/hpc_runtime: it holds the daemons' state.
    root = Path(tempfile.mkdtemp(prefix="akf-slurm-x-"))
    cluster = SlurmCluster(root)
    try:
        cluster.start()
    except Exception as exc:  # never a skip
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"cannot start a private SLURM cluster: {exc}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def _cluster(root: Path, daemon: PrivateDockerd, name: str) -> Iterator[EmulatedCluster]:
    cluster = EmulatedCluster(root / name, daemon.host, name=name)
    try:
        cluster.start()
    except Exception as exc:
        cluster.close()
        pytest.fail(f"cannot start the emulated cluster {name}: {exc}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def cluster_a(
    tmp_path_factory: pytest.TempPathFactory, daemon: PrivateDockerd
) -> Iterator[EmulatedCluster]:
    yield from _cluster(tmp_path_factory.mktemp("k8s"), daemon, "a")


@pytest.fixture(scope="module")
def cluster_b(
    tmp_path_factory: pytest.TempPathFactory, daemon: PrivateDockerd
) -> Iterator[EmulatedCluster]:
    yield from _cluster(tmp_path_factory.mktemp("k8s"), daemon, "b")
