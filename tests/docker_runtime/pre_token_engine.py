"""An engine whose docker runtime names containers as versions before scope tokens did, to be
SIGKILLed by a test once they run: what such a version leaves for an upgraded ``resume``.

    python -m tests.docker_runtime.pre_token_engine STATE_DIR DATA_DIR WORKFLOW.yaml

Those versions named and labelled a run's containers by :func:`pre_token_scope` (a hash of
the attempt dir's path) and made no scope file. The submission here never returns, as in an
engine killed between creating a container and recording its handle: the store keeps each
attempt as submitted with an empty handle, and the container is found by its name alone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import sys
from pathlib import Path
from typing import Any

import docker

from akoflow import service
from akoflow.config import RuntimeConfig
from akoflow.engine import Engine
from akoflow.runtimes.base import JobSpec, RuntimeEvents
from akoflow.runtimes.docker import DockerRuntime, container_name
from akoflow.runtimes.docker import files as attempt_files
from akoflow.runtimes.docker.container import container_request
from akoflow.runtimes.docker.settings import read_settings


def pre_token_scope(attempt_dir: Path) -> str:
    """The older versions' formula, written out here rather than imported: the test checks
    that the runtime still knows it."""
    return hashlib.sha256(os.fsencode(os.path.abspath(attempt_dir))).hexdigest()[:12]


class PreTokenDocker(DockerRuntime):
    async def submit(self, job: JobSpec) -> dict[str, Any]:
        job = dataclasses.replace(job, scope=pre_token_scope(job.attempt_dir))
        prefix = str(job.attempt_prefix)
        attempt_files.prepare(prefix, job.activity.run)  # as they did: files, then create
        settings = read_settings(self.config)
        request = container_request(job, str(job.activity.image), container_name(job), settings)
        await asyncio.to_thread(create_and_start, settings.host, request)
        await asyncio.Event().wait()  # killed here, the handle never recorded
        raise AssertionError("unreachable")


def create_and_start(host: str | None, request: Any) -> None:
    api = docker.APIClient(base_url=host)
    try:
        host_config = api.create_host_config(**request.host)
        cid = api.create_container(request.image, host_config=host_config, **request.container)
        api.start(cid["Id"])
    finally:
        api.close()


def factory(name: str, events: RuntimeEvents, config: RuntimeConfig | None) -> DockerRuntime:
    return PreTokenDocker(name, config or RuntimeConfig.from_env(name), events)


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
