"""What every request handler needs: the store, the one engine, and parsed workflow specs."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Request

from akoflow.engine import Engine, WorkflowRun
from akoflow.server.summary import LongestActivity
from akoflow.spec import Workflow, WorkflowValidationError, load_workflow
from akoflow.states import WorkflowState
from akoflow.store import Repository, WorkflowRecord

log = logging.getLogger(__name__)

# Parsed specs kept for finished runs, counted in activities (a parsed activity holds about
# 0.4 KB; its parse peaks near 1.5 KB): a run of 100,000 stays in, a few of them do not.
SPEC_CACHE_ACTIVITIES = 200_000
SPEC_CACHE_SIZE = 32  # and at most this many, however small
# The workflow-level fields alone (image, storage, mount path: what a light answer shows),
# tiny, for many more runs: listing workflows never parses a big spec twice.
HEAD_CACHE_SIZE = 1024


@dataclass
class ServerContext:
    """Lives from the lifespan's start to its end. The engine may only be touched from the
    event loop thread, so every handler that uses it is ``async``."""

    state_dir: Path
    repo: Repository
    engine: Engine  # replaced by a new one if it fails (see akoflow.server.supervisor)
    restarting: asyncio.Task[None] | None = None
    longest: LongestActivity = field(default_factory=LongestActivity)
    _specs: OrderedDict[int, Workflow] = field(default_factory=OrderedDict)
    _spec_activities: int = 0  # in _specs
    _heads: OrderedDict[int, Workflow] = field(default_factory=OrderedDict)
    _parsing: dict[int, asyncio.Task[Workflow | None]] = field(default_factory=dict)
    _parse_slot: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def spec(self, rec: WorkflowRecord, *, activities: bool = True) -> Workflow | None:
        """The parsed workflow of a stored run: the engine's if attached, else a cached one
        (a stored spec never changes), else parsed in a worker thread (a 100,000-activity
        spec takes over a second: never on the event loop, the engine's thread). With
        ``activities=False`` the answer may have none (only its workflow-level fields)."""
        run = self.engine.workflows.get(rec.id)
        if run is not None:
            return run.workflow
        full = self._specs.get(rec.id)
        if full is not None:
            self._specs.move_to_end(rec.id)
            return full
        if not activities:
            head = self._heads.get(rec.id)
            if head is not None:
                self._heads.move_to_end(rec.id)
                return head
        parsing = self._parsing.get(rec.id)
        if parsing is None:  # one parse of a spec however many ask meanwhile
            parsing = asyncio.create_task(self._parse(rec))
            self._parsing[rec.id] = parsing
        # Shielded: a client that goes away does not cancel the others' parse.
        return await asyncio.shield(parsing)

    async def _parse(self, rec: WorkflowRecord) -> Workflow | None:
        me = asyncio.current_task()
        try:
            workflow = await self._load(rec)
        finally:
            wanted = self._parsing.get(rec.id) is me  # not forgotten (deleted) meanwhile
            if wanted:
                del self._parsing[rec.id]
        if workflow is not None and wanted:
            self.remember(rec.id, workflow)
        return workflow

    async def _load(self, rec: WorkflowRecord) -> Workflow | None:
        async with self._parse_slot:  # one at a time: each peaks at ~1.5 KB an activity
            try:
                return await asyncio.to_thread(
                    load_workflow, rec.spec_yaml, source=rec.source or f"workflow {rec.id}"
                )
            except WorkflowValidationError:
                log.warning("stored workflow %s no longer parses", rec.id)
                return None

    def remember(self, wf_id: int, workflow: Workflow) -> None:
        """Keep a parsed spec (and its workflow-level fields) for the next requests; the
        oldest go past SPEC_CACHE_ACTIVITIES or SPEC_CACHE_SIZE (the newest always stays)."""
        old = self._specs.pop(wf_id, None)
        if old is not None:
            self._spec_activities -= len(old.activities)
        self._specs[wf_id] = workflow
        self._spec_activities += len(workflow.activities)
        while len(self._specs) > 1 and (
            len(self._specs) > SPEC_CACHE_SIZE or self._spec_activities > SPEC_CACHE_ACTIVITIES
        ):
            _, gone = self._specs.popitem(last=False)
            self._spec_activities -= len(gone.activities)
        self._heads[wf_id] = dataclasses.replace(workflow, activities=())
        self._heads.move_to_end(wf_id)
        while len(self._heads) > HEAD_CACHE_SIZE:
            self._heads.popitem(last=False)

    def forget(self, wf_id: int) -> None:
        old = self._specs.pop(wf_id, None)
        if old is not None:
            self._spec_activities -= len(old.activities)
        self._heads.pop(wf_id, None)
        self._parsing.pop(wf_id, None)
        self.longest.forget(wf_id)
        self.engine.forget(wf_id)

    def watch(self, run: WorkflowRun) -> None:
        """Drop a run from the engine's memory once it ends: a long-lived server must not keep
        every finished run (and its activities) in RAM. The store has everything; its parsed
        spec goes to the cache, so the next look at the run does not parse it again."""
        if run.done is None:
            return

        def evict(_: asyncio.Future[WorkflowState]) -> None:
            if self.engine.workflows.get(run.id) is run and run.state.is_final:
                self.engine.forget(run.id)
                self.remember(run.id, run.workflow)

        run.done.add_done_callback(evict)


async def get_context(request: Request) -> ServerContext:
    ctx: ServerContext = request.app.state.context
    return ctx
