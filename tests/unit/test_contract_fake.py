"""The contract suite on the in-memory fake runtime (tests/contract/fake_runtime.py): the
suite's own check, and the fake as the contract's smallest example."""

from __future__ import annotations

from pathlib import Path

import pytest

from akoflow.runtimes.base import RuntimeEvents
from tests.contract.fake_runtime import FakeBackend, FakeRuntime
from tests.contract.runtime_contract import Backend, RuntimeContract
from tests.scenarios import direct_job


@pytest.fixture
def contract_backend(tmp_path: Path) -> Backend:
    backend = FakeBackend()

    def make(events: RuntimeEvents) -> FakeRuntime:
        return FakeRuntime.on(backend, events)

    return Backend(
        make=make,
        job=lambda name, script: direct_job(tmp_path, name, script, "fake", None),
        workdir=lambda job: job.data_dir,
        timeout=20.0,
        close=backend.close,
    )


class TestFakeRuntimeContract(RuntimeContract):
    pass
