"""Runtimes (upstream's list, secrets redacted), the nodes each one can place work on, and the
check of one's setup (``akoflow runtimes check``)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from akoflow.server import views
from akoflow.server.auth import require_token
from akoflow.server.context import ServerContext, get_context
from akoflow.server.errors import ApiError, not_found
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


class CheckStepOut(BaseModel):
    name: str
    status: Literal["ok", "failed", "skipped"]
    detail: str = Field(description="What the step found, what is wrong, or why it did not run.")
    fix: str = Field(description="What to do about a failed step ('' otherwise).")


class RuntimeCheckOut(BaseModel):
    runtime: str
    kind: str
    ok: bool = Field(description="Every step passed.")
    settings: dict[str, str] = Field(description="`{NAME}_*` settings; secret values are `***`.")
    resolved: dict[str, str] = Field(
        description="What the settings resolve to as they will be used (for HPC the SSH login "
        "through the ssh config); no secrets."
    )
    steps: list[CheckStepOut]


@router.get(
    "/{runtime}/check",
    response_model=Envelope[RuntimeCheckOut],
    responses=E404,
    summary="Check a runtime's setup step by step, with the fix for each failed step "
    "(`akoflow runtimes check`; runs on the server, with its settings)",
)
async def check_runtime(
    runtime: RuntimeName,
    image: Annotated[
        str | None,
        Query(max_length=512, description="Docker: also check that this image is present."),
    ] = None,
) -> Envelope[RuntimeCheckOut]:
    from akoflow.runtimes.checks import UnknownRuntimeName
    from akoflow.runtimes.checks import check_runtime as run_check

    try:
        report = await run_check(runtime, image=image)
    except UnknownRuntimeName as exc:
        raise ApiError(404, str(exc)) from None
    return Envelope(data=RuntimeCheckOut.model_validate(report.to_json()), timestamp=views.now())
