"""The runtime contract suite (tests/contract/runtime_contract.py) on the local runtime:
processes on this host, adopted after a restart through their attempt files."""

from __future__ import annotations

from pathlib import Path

import pytest

from akoflow.config import RuntimeConfig
from akoflow.runtimes.base import Runtime, RuntimeEvents
from akoflow.runtimes.registry import create_runtime
from tests.contract.runtime_contract import Backend, RuntimeContract
from tests.scenarios import direct_job


@pytest.fixture
def contract_backend(tmp_path: Path) -> Backend:
    def make(events: RuntimeEvents) -> Runtime:
        return create_runtime("local", events, RuntimeConfig.from_env("local", {}))

    return Backend(
        make=make,
        job=lambda name, script: direct_job(tmp_path, name, script, "local", None),
        workdir=lambda job: job.data_dir,
        timeout=30.0,
    )


class TestLocalRuntimeContract(RuntimeContract):
    pass
