"""An engine whose docker runtime starts a container and never gives its go, to be SIGKILLed
by a test while the container waits: what an engine killed between a container's start and
its go leaves for ``akoflow resume``.

    python -m tests.docker_runtime.held_engine STATE_DIR DATA_DIR WORKFLOW.yaml [--go-lost]

The submission never returns (the store keeps the attempt as submitted with an empty handle;
the container is found by its name), as in an engine killed right after ``start``. With
``--go-lost`` it returns without the go, and the engine records the attempt's start: as when
an engine writes the go into a FIFO that the wrapper has not opened yet and dies holding it.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from akoflow import service
from akoflow.config import RuntimeConfig
from akoflow.engine import Engine
from akoflow.runtimes.base import RuntimeEvents
from akoflow.runtimes.docker import DockerRuntime
from akoflow.runtimes.docker.monitor import Tracked


class HeldDocker(DockerRuntime):
    async def _let_go(self, job: Tracked) -> None:
        await asyncio.Event().wait()  # killed here: no go is ever written


class GoLostDocker(DockerRuntime):
    async def _let_go(self, job: Tracked) -> None:
        return  # the go never reaches the container


def factory(name: str, events: RuntimeEvents, config: RuntimeConfig | None) -> DockerRuntime:
    kind = GoLostDocker if "--go-lost" in sys.argv[4:] else HeldDocker
    return kind(name, config or RuntimeConfig.from_env(name), events)


async def main(state: Path, data: Path, workflow: Path) -> None:
    repo = service.open_repository(state)
    prepared = service.validate_text(workflow.read_text(), str(workflow))
    wf_id = service.store(repo, state, prepared, data)
    engine = Engine(repo, state, runtime_factory=factory)
    await engine.start()
    await engine.attach(wf_id)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*(Path(a) for a in sys.argv[1:4])))
