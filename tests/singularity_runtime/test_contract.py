"""The runtime contract suite (tests/contract/runtime_contract.py) on the singularity runtime,
with the test launcher and a real SIF image."""

from __future__ import annotations

from pathlib import Path

import pytest

from akoflow.config import RuntimeConfig
from akoflow.runtimes.base import Runtime, RuntimeEvents
from akoflow.runtimes.registry import create_runtime
from tests.contract.runtime_contract import Backend, RuntimeContract
from tests.scenarios import direct_job
from tests.singularity_runtime.conftest import LAUNCHER, Images


@pytest.fixture
def contract_backend(tmp_path: Path, images: Images) -> Backend:
    settings = {
        "SINGULARITY_BINARY": str(LAUNCHER),
        "SINGULARITY_CACHE_DIR": str(tmp_path / "sif-cache"),
    }

    def make(events: RuntimeEvents) -> Runtime:
        config = RuntimeConfig.from_env("singularity", settings)
        return create_runtime("singularity", events, config)

    return Backend(
        make=make,
        job=lambda name, script: direct_job(tmp_path, name, script, "singularity", str(images.sif)),
        workdir=lambda job: job.data_dir,  # bound as the container's working dir
    )


class TestSingularityRuntimeContract(RuntimeContract):
    pass
