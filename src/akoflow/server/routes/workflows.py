"""Workflows: submit (upstream's route and body), validate, list, show, cancel, retry, delete,
lineage. Every handler is ``async``: they run on the event loop, the engine's thread."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
import signal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import ValidationError

from akoflow import heap, service
from akoflow.engine import WorkflowBusy
from akoflow.engine.ownership import owner_alive
from akoflow.provenance import lineage as file_lineage
from akoflow.server import views
from akoflow.server.auth import require_token
from akoflow.server.context import ServerContext, get_context
from akoflow.server.errors import ApiError
from akoflow.server.routes import housekeeping
from akoflow.server.routes.common import (
    E400,
    E401,
    E404,
    E409,
    E422,
    Paging,
    WithActivities,
    WorkflowId,
    find_workflow,
    paging,
)
from akoflow.server.schemas import (
    DeletedWorkflowOut,
    Envelope,
    ErrorBody,
    ErrorItem,
    Lineage,
    LineageEdge,
    LineageNode,
    Page,
    SubmitResult,
    UpstreamWorkflow,
    ValidationResult,
    WorkflowStateOut,
    WorkflowSubmission,
)
from akoflow.spec import WorkflowValidationError
from akoflow.states import ActivityState, InvalidTransition, WorkflowState
from akoflow.store import Repository

log = logging.getLogger(__name__)

MAX_BODY = 128 << 20  # bytes; a 100,000-activity workflow is about 6 MiB of base64
SOURCE = "workflow"  # how errors name the submitted file: "workflow:3: spec.activities..."
DEPLOYED = "Workflow has been deployed successfully."  # upstream's message, kept verbatim

Ctx = Annotated[ServerContext, Depends(get_context)]

router = APIRouter(
    prefix="/akoflow-api",
    tags=["workflows"],
    dependencies=[Depends(require_token)],
    responses={**E400, **E401},
)

SUBMISSION_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": WorkflowSubmission.model_json_schema()}},
    }
}
E413: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorBody, "description": "Request body over 128 MiB."}
}


# ------------------------------------------------------------------------------ submission


async def read_submission(request: Request) -> WorkflowSubmission:
    """The body parsed by hand: upstream's clients send it with any content type (even none
    or form-encoded), and every malformed body must be a 400 with a message."""
    size = request.headers.get("content-length", "").strip()
    if size.isdigit() and int(size) > MAX_BODY:
        raise _too_large()
    parts: list[bytes] = []
    received = 0
    async for part in request.stream():
        received += len(part)
        if received > MAX_BODY:
            raise _too_large()
        parts.append(part)
    raw = b"".join(parts)
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}") from None
    try:
        return WorkflowSubmission.model_validate(payload)
    except ValidationError as exc:
        raise ApiError(
            400,
            'invalid request body: expected {"workflow": "<base64 of the workflow YAML>"}',
            errors=[
                ErrorItem(
                    path=".".join(str(p) for p in e["loc"]) or "body", line=None, message=e["msg"]
                )
                for e in exc.errors()
            ],
        ) from None


def _too_large() -> ApiError:
    # The connection is closed after the answer, not drained of what the client still sends.
    return ApiError(413, f"request body over {MAX_BODY >> 20} MiB", headers={"Connection": "close"})


def decode_workflow(b64: str) -> str:
    compact = "".join(b64.split())  # `base64` wraps lines at 76 columns; Go ignores them too
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(400, f"`workflow` is not valid base64: {exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "`workflow` does not decode to UTF-8 text") from None


async def validate(text: str) -> service.Prepared:
    """Validation off the event loop (a large file takes a while): 422 with every error."""
    try:
        return await asyncio.to_thread(service.validate_text, text, SOURCE)
    except WorkflowValidationError as exc:
        n = len(exc.errors)
        raise ApiError(
            422,
            f"invalid workflow: {n} error{'s' * (n != 1)}",
            errors=[ErrorItem(path=e.path, line=e.line, message=e.message) for e in exc.errors],
        ) from None


Submission = Annotated[WorkflowSubmission, Depends(read_submission)]


async def submit_workflow(ctx: Ctx, submission: Submission) -> SubmitResult:
    """Validate, store and start a workflow; answers as upstream does.

    Nothing is stored when the workflow is invalid (422).
    """
    # A big one validated, stored and attached with the collector paused: its objects are
    # frozen (engine.attach) before any collection walks them, each walk a stall of the API.
    text = decode_workflow(submission.workflow)
    with heap.paused_for(text):
        prepared = await validate(text)
        wf_id = await asyncio.to_thread(service.store, ctx.repo, ctx.state_dir, prepared)
        try:
            run = await ctx.engine.attach(wf_id)
        except Exception as exc:
            await _unstore(ctx, wf_id, exc)
            raise
    ctx.watch(run)
    return SubmitResult(workflow_entity=prepared.workflow.name, workflow_id=wf_id, message=DEPLOYED)


async def _unstore(ctx: ServerContext, wf_id: int, exc: Exception) -> None:
    """A submission stored and not started (its attach failed: a full disk) is deleted, so
    that the error answered says true: nothing was stored, and it may be sent again. It was
    answered 507 "try again" while stored: a client that did ran it twice. When it cannot be
    deleted, the answer says it is stored and how to start it."""
    from pathlib import Path

    from akoflow.store.room import short_of_room

    try:
        deleted = await asyncio.to_thread(ctx.repo.delete_unstarted, wf_id)
    except Exception as undo:
        log.warning("cannot delete workflow %s, stored and not started: %s", wf_id, undo)
        deleted = False
    no_room = short_of_room(exc, Path(ctx.repo.path).parent)
    if deleted:
        if no_room:  # the directories of its run could not be made (an OSError, not the store's)
            log.warning("workflow refused: no room left under the state dir (%s)", exc)
            raise ApiError(
                507,
                f"the server's disk is full ({exc}): nothing was stored; try again once there "
                "is room",
                headers={"Retry-After": "30"},
            ) from exc
        return
    log.warning("workflow %s stored and not started: %s", wf_id, exc)
    not_started = f"stored as workflow {wf_id} and not started ({exc})"
    if no_room:
        raise ApiError(
            507,
            f"the server's disk is full: {not_started}; `akoflow resume {wf_id}` on this "
            "state dir starts it once there is room (do not send it again)",
        ) from exc
    raise ApiError(
        500, f"{not_started}; `akoflow resume {wf_id}` on this state dir starts it"
    ) from exc


router.add_api_route(
    "/workflows/",
    submit_workflow,
    methods=["POST"],
    response_model=SubmitResult,
    summary="Submit a workflow (upstream-compatible)",
    responses={**E413, **E422},
    openapi_extra=SUBMISSION_BODY,
    operation_id="submit_workflow",
)


@router.post(
    "/workflows/validate/",
    response_model=Envelope[ValidationResult],
    responses={**E413, **E422},
    openapi_extra=SUBMISSION_BODY,
    summary="Validate a workflow without storing or running it",
)
async def validate_workflow(submission: Submission) -> Envelope[ValidationResult]:
    prepared = await validate(decode_workflow(submission.workflow))
    wf = prepared.workflow
    return Envelope(
        data=ValidationResult(
            valid=True,
            name=wf.name,
            activities=len(wf.activities),
            runtimes=sorted({a.runtime for a in wf.activities}),
        ),
        timestamp=views.now(),
    )


# ------------------------------------------------------------------------------- reading


@router.get(
    "/workflows/",
    response_model=Page[UpstreamWorkflow],
    summary="List workflows, newest first (upstream's shape, paginated)",
)
async def list_workflows(
    ctx: Ctx,
    page: Annotated[Paging, Depends(paging(20))],
    name: Annotated[str | None, Query(max_length=253, description="Only this name.")] = None,
    unfinished: Annotated[bool, Query(description="Only pending or running ones.")] = False,
    activities: WithActivities = True,
) -> Page[UpstreamWorkflow]:
    repo = ctx.repo
    rows = repo.list_workflows(
        limit=page.limit, offset=page.offset, unfinished_only=unfinished, name=name
    )
    data = [
        views.upstream_workflow(
            ctx, r, await ctx.spec(r, activities=activities), with_activities=activities
        )
        for r in rows
    ]
    return Page(
        data=data,
        timestamp=views.now(),
        total=repo.count_workflows(unfinished_only=unfinished, name=name),
        limit=page.limit,
        offset=page.offset,
    )


@router.get(
    "/workflows/{workflow_id}/",
    response_model=Envelope[UpstreamWorkflow],
    responses=E404,
    summary="One workflow with its activities and metrics (upstream's shape)",
)
async def get_workflow(
    ctx: Ctx, workflow_id: WorkflowId, activities: WithActivities = True
) -> Envelope[UpstreamWorkflow]:
    rec = find_workflow(ctx, workflow_id)
    workflow = await ctx.spec(rec, activities=activities)
    return Envelope(
        data=views.upstream_workflow(ctx, rec, workflow, with_activities=activities),
        timestamp=views.now(),
    )


def lineage_of(
    repo: Repository,
    wf_id: int,
    live: dict[str, ActivityState] | None,
    *,
    activities: bool = True,
) -> Lineage:
    """Runs in a worker thread (a 100,000-activity graph is seconds of work): it reads the
    store only; ``live`` holds the engine's states, read on the event loop beforehand."""
    nodes: list[LineageNode] = []
    edges: list[LineageEdge] = []
    if activities:
        for a in repo.list_activities(wf_id):
            state = live.get(a.name, a.state) if live is not None else a.state
            nodes.append(
                LineageNode(
                    id=f"activity:{a.name}", label=a.name, type="activity", state=state.value
                )
            )
        edges += [
            LineageEdge.model_validate(
                {"from": f"activity:{act}", "to": f"activity:{dep}", "label": "dependsOn"}
            )
            for act, dep in repo.dependency_names(wf_id)
        ]
    # The files: the graph the report's Files section shows too (PROV's edges).
    files = file_lineage.of_run(repo, wf_id)
    nodes += [
        LineageNode(
            id=n.id,
            label=n.label,
            type=n.type,
            state="",
            candidates=n.candidates,
            reason=n.reason,
        )
        for n in files.nodes
    ]
    edges += [
        LineageEdge.model_validate({"from": e.source, "to": e.target, "label": e.label})
        for e in files.edges
    ]
    return Lineage(nodes=nodes, edges=edges)


@router.get(
    "/workflows/{workflow_id}/lineage/",
    response_model=Envelope[Lineage],
    responses=E404,
    summary="Lineage graph: activities, files, dependsOn/used/wasGeneratedBy edges",
)
async def get_lineage(
    ctx: Ctx,
    workflow_id: WorkflowId,
    activities: Annotated[
        bool,
        Query(
            description="Include the activities' nodes and dependsOn edges; false: only the "
            "files' nodes and their edges (a light answer for a big run)."
        ),
    ] = True,
) -> Envelope[Lineage]:
    """Nodes are the activities (`activity:<name>`), the files they used or generated
    (`file:<path>`, type `file`, or `preExisting` when no activity generated it; remote files
    as `file:<runtime>:<dir>/<path>`; the path's bytes percent-encoded as in RFC 3986, the
    label the path for people, `\\xNN` where it is not plain text) and, when the data dir
    held files before the run, one `inputs` node for them (`akoflow prov` lists each as a
    member of `run:inputs`): `used` by every activity that ran when the accesses were
    inferred from timing; where they were observed, each activity `used` the input files it
    read (nodes of type `preExisting`), and only one whose files stay on a cluster `used`
    the `inputs` node. These are the edges of the PROV export and of `akoflow report`.
    A file version no activity can be said to have generated (two overlapping writers, a
    writer of no attempt, a change timing cannot place) is a node of type `ambiguous` with
    its `candidates` and `reason`, and no `wasGeneratedBy`.
    Edges point from the dependent to what it depends on: activity -> activity `dependsOn`,
    activity -> file `used`, file -> activity `wasGeneratedBy` (PROV's directions), and
    ambiguous file -> each candidate activity `candidate`."""
    find_workflow(ctx, workflow_id)
    lineage = await read_lineage(ctx, workflow_id, activities=activities)
    return Envelope(data=lineage, timestamp=views.now())


async def read_lineage(ctx: ServerContext, wf_id: int, *, activities: bool = True) -> Lineage:
    run = ctx.engine.workflows.get(wf_id)
    live = None
    if run is not None and activities:  # the engine is read on its own thread only
        live = {name: a.state for name, a in run.activities.items()}
    return await asyncio.to_thread(lineage_of, ctx.repo, wf_id, live, activities=activities)


# ------------------------------------------------------------------------------- actions


@router.post(
    "/workflows/{workflow_id}/cancel/",
    status_code=202,
    response_model=Envelope[WorkflowStateOut],
    responses={**E404, **E409},
    summary="Cancel a workflow: running activities are stopped, waiting ones cancelled",
)
async def cancel_workflow(ctx: Ctx, workflow_id: WorkflowId) -> Envelope[WorkflowStateOut]:
    rec = find_workflow(ctx, workflow_id)
    state = views.workflow_state(ctx, rec)
    if state.is_final:
        raise ApiError(409, f"workflow {workflow_id} already ended: {state}")
    if workflow_id in ctx.engine.workflows:
        ctx.engine.cancel(workflow_id)
    else:
        # Run by another engine process (`akoflow run`): record the request and poke it,
        # as `akoflow cancel` does; an orphaned run is attached here and cancelled.
        ctx.repo.request_cancel(workflow_id)
        if rec.owner_pid is not None and owner_alive(rec.owner_pid, rec.owner_started):
            if rec.owner_pid != os.getpid():
                try:
                    os.kill(rec.owner_pid, signal.SIGUSR1)
                except OSError as exc:
                    raise ApiError(409, f"cannot signal the engine owning it: {exc}") from None
        elif rec.state is WorkflowState.RUNNING:
            # Interrupted, not attached (its resume failed): attach it here; attach sees the
            # request and cancels. A PENDING one is being submitted: its attach will.
            try:
                ctx.watch(await ctx.engine.attach(workflow_id))
            except WorkflowBusy as exc:
                raise ApiError(409, str(exc)) from None
    return Envelope(
        data=views.workflow_state_out(ctx, find_workflow(ctx, workflow_id)),
        timestamp=views.now(),
    )


@router.post(
    "/workflows/{workflow_id}/retry/",
    status_code=202,
    response_model=Envelope[WorkflowStateOut],
    responses={**E404, **E409},
    summary="Run a failed or cancelled workflow again from where it stopped",
)
async def retry_workflow(ctx: Ctx, workflow_id: WorkflowId) -> Envelope[WorkflowStateOut]:
    """Succeeded activities are kept; failed, cancelled and skipped ones run again."""
    find_workflow(ctx, workflow_id)
    try:
        run = await ctx.engine.retry(workflow_id)
    except KeyError:
        raise ApiError(404, f"workflow {workflow_id} not found") from None
    except (ValueError, WorkflowBusy, InvalidTransition) as exc:
        raise ApiError(409, str(exc)) from None
    ctx.watch(run)
    return Envelope(
        data=views.workflow_state_out(ctx, find_workflow(ctx, workflow_id)),
        timestamp=views.now(),
    )


@router.delete(
    "/workflows/{workflow_id}/",
    response_model=Envelope[DeletedWorkflowOut],
    responses={**E404, **E409},
    summary="Delete a finished workflow: its records, logs, files, and its objects on backends",
)
async def delete_workflow(ctx: Ctx, workflow_id: WorkflowId) -> Envelope[DeletedWorkflowOut]:
    """Refused (409) while the workflow is pending or running: cancel it first. Its rows go
    in one transaction, then its run dir (attempt files, the data dir unless `--data-dir`
    put it outside the state dir: that one is left alone), then what it left on its
    runtimes (HPC attempt and run dirs, Kubernetes volumes, Jobs and pods, containers).
    `report` says what was freed here and removed there; a runtime out of reach is `left`
    and tried again by the next gc (as `akoflow gc` does)."""
    rec = find_workflow(ctx, workflow_id)
    state = views.workflow_state(ctx, rec)
    if not state.is_final:
        raise ApiError(409, f"workflow {workflow_id} is {state}; cancel it before deleting it")
    out = views.workflow_state_out(ctx, rec)
    report = await housekeeping.delete_runs(ctx, [workflow_id])
    if report["refused"]:
        raise ApiError(409, f"workflow {workflow_id}: {report['refused'][0]['reason']}")
    return Envelope(
        data=DeletedWorkflowOut(**out.model_dump(), report=report), timestamp=views.now()
    )
