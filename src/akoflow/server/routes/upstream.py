"""Upstream AkôFlow's remaining routes: the health check, the old submission path, the root
redirect (to the web UI, :mod:`akoflow.server.ui`), and the provenance path (served by the
lineage graph)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse, RedirectResponse

from akoflow.server import views
from akoflow.server.auth import require_token
from akoflow.server.context import ServerContext, get_context
from akoflow.server.routes.common import E400, E401, E404, E422, WorkflowId, find_workflow
from akoflow.server.routes.workflows import E413, SUBMISSION_BODY, read_lineage, submit_workflow
from akoflow.server.schemas import Envelope, Lineage, SubmitResult

Ctx = Annotated[ServerContext, Depends(get_context)]

public = APIRouter(tags=["upstream"])
protected = APIRouter(
    tags=["upstream"], dependencies=[Depends(require_token)], responses={**E400, **E401}
)


@public.get(
    "/akoflow-server/check-service/",
    response_class=PlainTextResponse,
    summary="Health check (no token needed)",
    responses={200: {"content": {"text/plain": {"example": "ok"}}}},
)
async def check_service() -> PlainTextResponse:
    return PlainTextResponse("ok", headers={"HELLO-MIDDLEWARE": "akoflow"})


@public.get("/", include_in_schema=False)
async def root() -> RedirectResponse:
    return RedirectResponse("/akoflow-admin/", status_code=302)


protected.add_api_route(
    "/akoflow-server/workflow/",
    submit_workflow,
    methods=["POST"],
    response_model=SubmitResult,
    summary="Submit a workflow (upstream's client path)",
    responses={**E413, **E422},
    openapi_extra=SUBMISSION_BODY,
    operation_id="submit_workflow_upstream_client",
)


@protected.get(
    "/akoflow-api/workflows/{workflow_id}/storages/list-files/",
    response_model=Envelope[Lineage],
    responses=E404,
    summary="Upstream's provenance path: the lineage graph",
)
async def list_files(ctx: Ctx, workflow_id: WorkflowId) -> Envelope[Lineage]:
    """Same graph as `/lineage/`: activities and files with `dependsOn`, `used` and
    `wasGeneratedBy` edges (PROV's directions; upstream drew `wasGeneratedBy` backwards)."""
    find_workflow(ctx, workflow_id)
    return Envelope(data=await read_lineage(ctx, workflow_id), timestamp=views.now())
