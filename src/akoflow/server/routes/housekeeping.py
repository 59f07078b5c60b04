"""Deleting runs through the server: ``POST /akoflow-api/gc`` (``akoflow gc --server``), the
collector behind ``DELETE /akoflow-api/workflows/{id}/``, and the retention loop
(``AKOFLOW_RETENTION``). A deletion never holds the server's event loop: a run's rows go in
short batches and the free pages a step at a time, in worker threads on a database
connection of their own (:mod:`akoflow.gc.rows`), its files are removed in a thread, and a
runtime the engine has started is reused (its one SSH login, its client)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from akoflow.engine import Engine
from akoflow.gc import Collector, GcOptions, Report, fresh_runtime
from akoflow.gc.collector import RuntimeLease
from akoflow.gc.retention import retention_loop, settings
from akoflow.runtimes.base import Runtime
from akoflow.server import views
from akoflow.server.auth import require_token
from akoflow.server.context import ServerContext, get_context
from akoflow.server.errors import ApiError
from akoflow.server.routes.common import E400, E401
from akoflow.server.schemas import Envelope

log = logging.getLogger(__name__)

Ctx = Annotated[ServerContext, Depends(get_context)]

router = APIRouter(
    prefix="/akoflow-api",
    tags=["housekeeping"],
    dependencies=[Depends(require_token)],
    responses={**E400, **E401},
)

# One deletion at a time: two at once would only contend for the store and the backends.
_deleting = asyncio.Lock()


class GcRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    olderThan: str | None = Field(
        default=None,
        max_length=64,
        description="Delete finished runs that ended longer ago than this: 30d, 12h, 1d12h, "
        "90m, or seconds.",
    )
    keepLast: int | None = Field(
        default=None,
        ge=0,
        le=1_000_000,
        description="Keep the newest N finished runs of each workflow name.",
    )
    dryRun: bool = Field(default=False, description="Say what would go; remove nothing.")


def engine_runtimes(engine: Engine) -> RuntimeLease:
    """The engine's runtime when started (no second login), else one made for the call."""

    @contextlib.asynccontextmanager
    async def lease(name: str) -> AsyncIterator[Runtime]:
        slot = engine.runtimes.slots.get(name)
        if slot is not None and slot.started:
            yield slot.runtime
            return
        async with fresh_runtime(name) as runtime:
            yield runtime

    return lease


def collector_for(ctx: ServerContext) -> Collector:
    return Collector(
        ctx.repo, ctx.state_dir, runtimes=engine_runtimes(ctx.engine), forget=ctx.forget
    )


async def delete_runs(ctx: ServerContext, ids: list[int]) -> dict[str, Any]:
    async with _deleting:
        return (await collector_for(ctx).delete(ids)).to_json()


@router.post(
    "/gc",
    response_model=Envelope[dict[str, Any]],
    summary="Delete finished runs (rows, files, backend objects) by age or count",
)
async def gc(ctx: Ctx, body: GcRequest | None = None) -> Envelope[dict[str, Any]]:
    """With neither `olderThan` nor `keepLast`, no run is deleted: what earlier deletions
    left on backends that were out of reach is tried again, and free database pages are
    given back. Unfinished runs are never deleted. The answer: each deleted run (`freedBytes`
    on this host, and per runtime what was `removed` there or why it was `left`), the runs
    `refused`, the earlier deletions retried (`remote`), run dirs a killed deletion left
    (`orphans`), and the database's bytes given back."""
    body = body or GcRequest()
    try:
        options = GcOptions.parse(body.olderThan, body.keepLast, body.dryRun)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    async with _deleting:
        report = await collector_for(ctx).collect(
            older_than=options.older_than, keep_last=options.keep_last, dry_run=options.dry_run
        )
    return Envelope(data=report.to_json(), timestamp=views.now())


def start_retention(ctx: ServerContext) -> asyncio.Task[None] | None:
    """The retention loop when ``AKOFLOW_RETENTION`` is set (checked at the server's start)."""
    found = settings()
    if found is None:
        return None
    age, interval = found

    async def collect() -> Report:
        async with _deleting:
            return await collector_for(ctx).collect(older_than=age, keep_last=None)

    log.info("retention: finished runs older than %g s are deleted every %g s", age, interval)
    return asyncio.get_running_loop().create_task(
        retention_loop(collect, age, interval), name="akoflow-retention"
    )


__all__ = ["collector_for", "delete_runs", "router", "start_retention"]
