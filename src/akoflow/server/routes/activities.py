"""Activities of a workflow: paginated list, one with its attempts, cancel, logs (paged and
followed live as Server-Sent Events), metrics."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import StreamingResponse

from akoflow.server import views
from akoflow.server.auth import require_token
from akoflow.server.context import ServerContext, get_context
from akoflow.server.errors import ApiError
from akoflow.server.routes.common import (
    E400,
    E401,
    E404,
    E409,
    MAX_ID,
    MAX_OFFSET,
    MAX_PAGE,
    ActivityName,
    Paging,
    WorkflowId,
    find_activity,
    find_workflow,
    paging,
)
from akoflow.server.schemas import (
    ActivityDetail,
    ActivityPage,
    AttemptUsage,
    Envelope,
    LogChunkOut,
    LogPage,
    MetricSample,
    MetricsOut,
    WorkflowStateOut,
)
from akoflow.states import ActivityState
from akoflow.store import ActivityRecord, Repository

Ctx = Annotated[ServerContext, Depends(get_context)]

FOLLOW_POLL = 0.25  # seconds between store reads while following (the engine stores ~1/s)
HEARTBEAT = 15.0  # an SSE comment this often keeps proxies from closing an idle stream
FOLLOW_BATCH = 500
FINISHED_ATTEMPT = frozenset({"succeeded", "failed", "cancelled", "lost", "cached"})

router = APIRouter(
    prefix="/akoflow-api/workflows/{workflow_id}/activities",
    tags=["activities"],
    dependencies=[Depends(require_token)],
    responses={**E400, **E401, **E404},
)

AttemptQuery = Annotated[
    int | None, Query(ge=1, le=1_000_000, description="Only this attempt [default: all].")
]
StreamQuery = Annotated[
    Literal["stdout", "stderr"] | None,
    Query(description="Only this stream [default: both, in the order written]."),
]
AfterQuery = Annotated[
    int | None,
    Query(ge=0, le=MAX_ID, description="Only chunks with a larger row id (the last id seen)."),
]


@router.get("/", response_model=ActivityPage, summary="Activities of a workflow, in file order")
async def list_activities(
    ctx: Ctx,
    workflow_id: WorkflowId,
    page: Annotated[Paging, Depends(paging(100))],
    after: Annotated[
        int | None,
        Query(
            ge=-1,
            le=MAX_OFFSET,
            description="Keyset cursor: positions after this one (`nextAfter` of the previous "
            "page). Constant time per page however deep; combine with `limit`, not `offset`.",
        ),
    ] = None,
    state: Annotated[ActivityState | None, Query(description="Only this state.")] = None,
    picked: Annotated[
        bool,
        Query(
            description="The `limit` activities `akoflow status ID` shows: those not succeeded "
            "first (running, failed, waiting...), then succeeded ones, in file order; "
            "`total` tells how many were left out. Not with `offset`, `after` or `state`."
        ),
    ] = False,
) -> ActivityPage:
    find_workflow(ctx, workflow_id)
    repo = ctx.repo
    if picked:
        if page.offset or after is not None or state is not None:
            raise ApiError(400, "picked takes only limit (not offset, page, after or state)")
        rows = repo.status_picks(workflow_id, page.limit)
        return ActivityPage(
            data=views.activities_out(ctx, workflow_id, rows),
            timestamp=views.now(),
            total=repo.count_activities(workflow_id),
            limit=page.limit,
            offset=0,
            nextAfter=None,
        )
    rows = repo.list_activities_page(
        workflow_id, limit=page.limit, offset=page.offset, after=after, state=state
    )
    return ActivityPage(
        data=views.activities_out(ctx, workflow_id, rows),
        timestamp=views.now(),
        total=repo.count_activities(workflow_id, state),
        limit=page.limit,
        offset=page.offset,
        nextAfter=rows[-1].position if len(rows) == page.limit else None,
    )


@router.get(
    "/{name}/",
    response_model=Envelope[ActivityDetail],
    summary="One activity with its spec and every attempt",
)
async def get_activity(
    ctx: Ctx, workflow_id: WorkflowId, name: ActivityName
) -> Envelope[ActivityDetail]:
    wf, act = find_activity(ctx, workflow_id, name)
    workflow = await ctx.spec(wf)
    return Envelope(data=views.activity_detail(ctx, wf, workflow, act), timestamp=views.now())


@router.post(
    "/{name}/cancel/",
    status_code=202,
    response_model=Envelope[WorkflowStateOut],
    responses=E409,
    summary="Cancel one activity (its dependents are skipped); the rest of the workflow goes on",
)
async def cancel_activity(
    ctx: Ctx, workflow_id: WorkflowId, name: ActivityName
) -> Envelope[WorkflowStateOut]:
    wf, act = find_activity(ctx, workflow_id, name)
    run = ctx.engine.workflows.get(workflow_id)
    if run is None or run.state.is_final:
        raise ApiError(409, f"workflow {workflow_id} is not running on this server")
    state = views.live_state(run, act)[0]
    if state.is_final:
        raise ApiError(409, f"activity {name} already ended: {state}")
    ctx.engine.cancel(workflow_id, name)
    return Envelope(data=views.workflow_state_out(ctx, wf), timestamp=views.now())


# ------------------------------------------------------------------------------------ logs


def _chunks(
    repo: Repository,
    act: ActivityRecord,
    attempt: int | None,
    stream: str | None,
    after: int,
    limit: int,
) -> list[LogChunkOut]:
    return [
        LogChunkOut(id=i, attempt=c.attempt, stream=c.stream, offset=c.offset, data=c.data)
        for i, c in repo.read_logs(
            act.id, attempt=attempt, stream=stream, after_id=after, limit=limit
        )
    ]


def _output_complete(repo: Repository, act: ActivityRecord, attempt: int | None) -> bool:
    """No more output will be stored: the activity (or that attempt) has ended. The engine
    stores an attempt's last output in the same transaction that records its end."""
    if attempt is None:
        return act.state.is_final
    for a in repo.list_attempts(act.id):
        if a.number == attempt:
            return a.state in FINISHED_ATTEMPT
    # That attempt has not started: it never will once the activity has ended.
    return act.state.is_final


@router.get("/{name}/logs/", response_model=LogPage, summary="Captured output of an activity")
async def get_logs(
    ctx: Ctx,
    workflow_id: WorkflowId,
    name: ActivityName,
    attempt: AttemptQuery = None,
    stream: StreamQuery = None,
    after: AfterQuery = None,
    offset: Annotated[
        int | None, Query(ge=0, le=MAX_ID, description="Same as `after` (a log row id).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE * 10)] = 1000,
) -> LogPage:
    """Chunks in the order written. Read on with `after=<nextAfter>` until `complete`."""
    _, act = find_activity(ctx, workflow_id, name)
    start = after if after is not None else offset or 0
    # Decide completeness before reading, so a chunk stored in between is not missed.
    complete = _output_complete(ctx.repo, act, attempt)
    chunks = _chunks(ctx.repo, act, attempt, stream, start, limit)
    return LogPage(
        data=chunks,
        timestamp=views.now(),
        nextAfter=chunks[-1].id if chunks else start,
        complete=complete and len(chunks) < limit,
    )


def _sse(event: str, data: str, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {data}\n\n"


async def _follow(
    ctx: ServerContext,
    workflow_id: int,
    name: str,
    attempt: int | None,
    stream: str | None,
    after: int,
) -> AsyncIterator[str]:
    repo = ctx.repo
    last = after
    idle = 0.0
    while True:
        act = repo.get_activity(workflow_id, name)
        if act is None:  # deleted meanwhile
            yield _sse("end", json.dumps({"state": None, "reason": "deleted"}))
            return
        complete = _output_complete(repo, act, attempt)
        chunks = _chunks(repo, act, attempt, stream, last, FOLLOW_BATCH)
        for chunk in chunks:
            last = chunk.id
            yield _sse("log", chunk.model_dump_json(), chunk.id)
        if len(chunks) == FOLLOW_BATCH:
            continue
        if complete:
            state, number, _ = views.live_state(ctx.engine.workflows.get(workflow_id), act)
            end = {"state": state.value, "attempt": number, "exitCode": act.exit_code}
            yield _sse("end", json.dumps(end))
            return
        if chunks:
            idle = 0.0
        elif idle >= HEARTBEAT:
            idle = 0.0
            yield ": keep-alive\n\n"
        await asyncio.sleep(FOLLOW_POLL)
        idle += FOLLOW_POLL


@router.get(
    "/{name}/logs/stream/",
    response_class=StreamingResponse,
    summary="Follow an activity's output live (Server-Sent Events)",
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "`event: log` per chunk (`id:` is the row id, `data:` a LogChunk "
            "as JSON), then one `event: end` with the final state when the activity (or the "
            "requested attempt) has ended. Reconnect with `Last-Event-ID` or `after`.",
        }
    },
)
async def follow_logs(
    ctx: Ctx,
    workflow_id: WorkflowId,
    name: ActivityName,
    attempt: AttemptQuery = None,
    stream: StreamQuery = None,
    after: AfterQuery = None,
    last_event_id: Annotated[
        str | None, Header(alias="Last-Event-ID", max_length=32, include_in_schema=False)
    ] = None,
) -> StreamingResponse:
    find_activity(ctx, workflow_id, name)
    start = after
    if start is None and last_event_id is not None and last_event_id.strip().isdigit():
        start = min(int(last_event_id.strip()), MAX_ID)
    return StreamingResponse(
        _follow(ctx, workflow_id, name, attempt, stream, start or 0),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


# --------------------------------------------------------------------------------- metrics


@router.get(
    "/{name}/metrics/",
    response_model=Envelope[MetricsOut],
    summary="CPU and memory samples of an activity, and each attempt's totals",
)
async def get_metrics(
    ctx: Ctx,
    workflow_id: WorkflowId,
    name: ActivityName,
    page: Annotated[Paging, Depends(paging(1000))],
    attempt: AttemptQuery = None,
) -> Envelope[MetricsOut]:
    """Samples are taken every 2 s while an attempt runs (CPU % of the whole process group,
    memory in bytes); `cpuSeconds` and `maxRssBytes` come from the kernel at its end."""
    _, act = find_activity(ctx, workflow_id, name)
    repo = ctx.repo
    every = repo.read_metrics(act.id, attempt=attempt)
    usage: list[AttemptUsage] = []
    for a in repo.list_attempts(act.id):
        if attempt is not None and a.number != attempt:
            continue
        mine = [s for s in every if s[0] == a.number]
        cpu = [s[2] for s in mine if s[2] is not None]
        mem = [s[3] for s in mine if s[3] is not None]
        usage.append(
            AttemptUsage(
                number=a.number,
                cpuSeconds=a.cpu_seconds,
                maxRssBytes=a.max_rss_bytes,
                peakMemoryBytes=max(mem) if mem else None,
                meanCpuPercent=sum(cpu) / len(cpu) if cpu else None,
            )
        )
    window = every[page.offset : page.offset + page.limit]
    return Envelope(
        data=MetricsOut(
            samples=[
                MetricSample(attempt=s[0], ts=s[1], cpuPercent=s[2], memoryBytes=s[3])
                for s in window
            ],
            attempts=usage,
            total=len(every),
            limit=page.limit,
            offset=page.offset,
        ),
        timestamp=views.now(),
    )
