"""The runtime contract suite (tests/contract/runtime_contract.py) on the Kubernetes runtime,
against the emulated cluster: Jobs outlive the runtime instance that created them and are found
again by name; a workflow's volume is a host directory of the emulated kubelet."""

from __future__ import annotations

from pathlib import Path

import pytest

from akoflow.config import RuntimeConfig
from akoflow.runtimes.base import JobSpec, Runtime, RuntimeEvents
from akoflow.runtimes.kubernetes.manifests import standalone_pvc_name
from akoflow.runtimes.registry import create_runtime
from akoflow.runtimes.scope import scoped
from tests.contract.runtime_contract import Backend, RuntimeContract
from tests.k8s_runtime.conftest import IMAGE
from tests.k8s_support.cluster import EmulatedCluster
from tests.scenarios import direct_job

NAME = "k8s-aws"


@pytest.fixture
def contract_backend(tmp_path: Path, cluster: EmulatedCluster) -> Backend:
    def make(events: RuntimeEvents) -> Runtime:
        return create_runtime(NAME, events, RuntimeConfig.from_env(NAME, cluster.env(NAME)))

    def workdir(job: JobSpec) -> Path:
        """The workflow's volume (its containers' working dir) on the kubelet's host."""
        return cluster.kubelet.pvc_dir(job.namespace, standalone_pvc_name(scoped(job)))

    return Backend(
        make=make,
        job=lambda name, script: direct_job(tmp_path, name, script, NAME, IMAGE),
        workdir=workdir,
    )


class TestKubernetesRuntimeContract(RuntimeContract):
    pass
