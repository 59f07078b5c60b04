"""The runtime contract suite (tests/contract/runtime_contract.py) on the HPC runtime, against
the session's private SLURM cluster over SSH: jobs outlive the runtime instance that sent them
and are found again by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from akoflow.config import RuntimeConfig
from akoflow.runtimes.base import Runtime, RuntimeEvents
from akoflow.runtimes.registry import create_runtime
from tests.contract.runtime_contract import Backend, RuntimeContract
from tests.hpc_runtime.conftest import runtime_env
from tests.scenarios import direct_job
from tests.slurm_support.cluster import SlurmCluster


@pytest.fixture
def contract_backend(tmp_path: Path, slurm_cluster: SlurmCluster) -> Backend:
    env = runtime_env(slurm_cluster, "hpc", f"mount/contract-{tmp_path.name}")
    mount = Path(env["HPC_MOUNT_PATH"])
    mount.mkdir(parents=True)

    def make(events: RuntimeEvents) -> Runtime:
        return create_runtime("hpc", events, RuntimeConfig.from_env("hpc", env))

    return Backend(
        make=make,
        job=lambda name, script: direct_job(tmp_path, name, script, "hpc", None),
        workdir=lambda job: mount,  # the runtime's MOUNT_PATH: where its jobs run
    )


class TestHpcRuntimeContract(RuntimeContract):
    pass
