"""Runtimes (upstream's list, secrets redacted) and the nodes each one can place work on."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from akoflow.server import views
from akoflow.server.auth import require_token
from akoflow.server.context import ServerContext, get_context
from akoflow.server.errors import not_found
from akoflow.server.routes.common import E400, E401, E404, RuntimeName
from akoflow.server.schemas import Envelope, NodeOut, UpstreamRuntime

Ctx = Annotated[ServerContext, Depends(get_context)]

router = APIRouter(
    prefix="/akoflow-api/runtimes",
    tags=["runtimes"],
    dependencies=[Depends(require_token)],
    responses={**E400, **E401},
)


@router.get(
    "/",
    response_model=Envelope[list[UpstreamRuntime]],
    summary="Runtimes in use and their health (upstream's shape; secret values are ***)",
)
async def list_runtimes(ctx: Ctx) -> Envelope[list[UpstreamRuntime]]:
    return Envelope(
        data=[views.upstream_runtime(r) for r in ctx.repo.list_runtimes()],
        timestamp=views.now(),
    )


@router.get(
    "/{runtime}/nodes/",
    response_model=Envelope[list[NodeOut]],
    responses=E404,
    summary="Nodes of a runtime, with capacity and use (refreshed every 5 s)",
)
async def list_nodes(ctx: Ctx, runtime: RuntimeName) -> Envelope[list[NodeOut]]:
    if ctx.repo.get_runtime(runtime) is None:
        raise not_found(f"runtime {runtime}")
    return Envelope(
        data=[views.node_out(n) for n in ctx.repo.list_nodes(runtime)], timestamp=views.now()
    )
