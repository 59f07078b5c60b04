"""Docker attempts are submitted at once, up to the runtime's cap (its MAX_PARALLEL slots):
their containers are created concurrently, not one after the other."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from akoflow.runtimes.docker import DockerRuntime
from akoflow.states import WorkflowState
from tests.docker_support.dockerd import IMAGE, PrivateDockerd
from tests.e2e.test_engine_inprocess import engine_with

HOLD_MAX = 5.0  # seconds a create waits for the others before going on alone


class CreatesInFlight:
    """Holds each container create until ``together`` are in flight (the first group only, at
    most HOLD_MAX seconds), and counts the most seen in flight at once."""

    def __init__(self, together: int) -> None:
        self.together = together
        self.in_flight = self.peak = 0
        self._cond = threading.Condition()

    def wrap(self, create: Any) -> Any:
        def held(runtime: DockerRuntime, request: Any) -> str:
            with self._cond:
                self.in_flight += 1
                self.peak = max(self.peak, self.in_flight)
                self._cond.notify_all()
                self._cond.wait_for(lambda: self.in_flight >= self.together, HOLD_MAX)
                self.together = 0  # later creates go at once
            try:
                return str(create(runtime, request))
            finally:
                with self._cond:
                    self.in_flight -= 1

        return held


@pytest.mark.parametrize(("cap", "peak"), [("4", 4), ("2", 2)])
def test_containers_are_created_at_once_up_to_the_runtimes_cap(
    dockerd: PrivateDockerd,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cap: str,
    peak: int,
) -> None:
    monkeypatch.setenv("DOCKER_HOST", dockerd.host)
    monkeypatch.setenv("DOCKER_PULL_POLICY", "never")
    monkeypatch.setenv("DOCKER_MAX_PARALLEL", cap)
    creates = CreatesInFlight(peak)
    monkeypatch.setattr(DockerRuntime, "_create", creates.wrap(DockerRuntime._create))
    acts = "".join(f"    - name: a{i}\n      run: echo {i}\n" for i in range(4))
    text = f"name: wide\nspec:\n  image: {IMAGE}\n  runtime: docker\n  activities:\n{acts}"

    async def scenario() -> None:
        async with engine_with(tmp_path, text) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            assert await asyncio.wait_for(engine.wait(wf_id), 60) is WorkflowState.SUCCEEDED
            for i in range(4):
                logs = "".join(c.data for _, c in repo.read_logs(wf.activities[f"a{i}"].id))
                assert logs == f"{i}\n"

    asyncio.run(scenario())
    assert creates.peak == peak
