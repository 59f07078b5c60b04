"""The runtime contract suite (tests/contract/runtime_contract.py) on the docker runtime, against
the session's private dockerd: containers outlive the runtime instance that made them."""

from __future__ import annotations

from pathlib import Path

import pytest

from akoflow.config import RuntimeConfig
from akoflow.runtimes.base import Runtime, RuntimeEvents
from akoflow.runtimes.registry import create_runtime
from tests.contract.runtime_contract import Backend, RuntimeContract
from tests.docker_support.dockerd import IMAGE, PrivateDockerd
from tests.scenarios import direct_job


@pytest.fixture
def contract_backend(tmp_path: Path, dockerd: PrivateDockerd) -> Backend:
    def make(events: RuntimeEvents) -> Runtime:
        config = RuntimeConfig.from_env("docker", {"DOCKER_HOST": dockerd.host})
        return create_runtime("docker", events, config)

    return Backend(
        make=make,
        job=lambda name, script: direct_job(tmp_path, name, script, "docker", IMAGE),
        workdir=lambda job: job.data_dir,  # bind-mounted as the container's working dir
    )


class TestDockerRuntimeContract(RuntimeContract):
    pass
