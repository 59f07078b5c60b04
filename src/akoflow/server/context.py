"""What every request handler needs: the store, the one engine, and parsed workflow specs."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Request

from akoflow.engine import Engine, WorkflowRun
from akoflow.spec import Workflow, WorkflowValidationError, load_workflow
from akoflow.states import WorkflowState
from akoflow.store import Repository, WorkflowRecord

log = logging.getLogger(__name__)

SPEC_CACHE_SIZE = 32


@dataclass
class ServerContext:
    """Lives from the lifespan's start to its end. The engine may only be touched from the
    event loop thread, so every handler that uses it is ``async``."""

    state_dir: Path
    repo: Repository
    engine: Engine  # replaced by a new one if it fails (see akoflow.server.supervisor)
    restarting: asyncio.Task[None] | None = None
    _specs: OrderedDict[int, Workflow] = field(default_factory=OrderedDict)

    def spec(self, rec: WorkflowRecord) -> Workflow | None:
        """The parsed workflow of a stored run: the engine's if attached, else a small LRU
        (a stored spec never changes, and parsing a big one costs seconds)."""
        run = self.engine.workflows.get(rec.id)
        if run is not None:
            return run.workflow
        cached = self._specs.get(rec.id)
        if cached is not None:
            self._specs.move_to_end(rec.id)
            return cached
        try:
            workflow = load_workflow(rec.spec_yaml, source=rec.source or f"workflow {rec.id}")
        except WorkflowValidationError:
            log.warning("stored workflow %s no longer parses", rec.id)
            return None
        self._specs[rec.id] = workflow
        while len(self._specs) > SPEC_CACHE_SIZE:
            self._specs.popitem(last=False)
        return workflow

    def forget(self, wf_id: int) -> None:
        self._specs.pop(wf_id, None)
        self.engine.workflows.pop(wf_id, None)

    def watch(self, run: WorkflowRun) -> None:
        """Drop a run from the engine's memory once it ends: a long-lived server must not keep
        every finished run (and its activities) in RAM. The store has everything."""
        if run.done is None:
            return

        def evict(_: asyncio.Future[WorkflowState]) -> None:
            if self.engine.workflows.get(run.id) is run and run.state.is_final:
                del self.engine.workflows[run.id]

        run.done.add_done_callback(evict)


async def get_context(request: Request) -> ServerContext:
    ctx: ServerContext = request.app.state.context
    return ctx
