"""Parameters and look-ups shared by the routers: ids, names, paging, common error docs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Path, Query

from akoflow.server.context import ServerContext
from akoflow.server.errors import not_found
from akoflow.server.schemas import ErrorBody
from akoflow.spec.model import DNS_LABEL_PATTERN
from akoflow.store import ActivityRecord, WorkflowRecord

MAX_ID = 2**63 - 1  # SQLite INTEGER; larger values would overflow in the driver
MAX_OFFSET = 2**62
MAX_PAGE = 1000

WorkflowId = Annotated[int, Path(ge=1, le=MAX_ID, description="Workflow id.", examples=[1])]
ActivityName = Annotated[
    str,
    Path(
        pattern=DNS_LABEL_PATTERN,
        max_length=63,
        description="Activity name.",
        examples=["say-hello"],
    ),
]
RuntimeName = Annotated[
    str,
    Path(pattern=DNS_LABEL_PATTERN, max_length=63, description="Runtime name.", examples=["local"]),
]
WithActivities = Annotated[
    bool,
    Query(description="Include `spec.activities` (upstream's shape); false for a light answer."),
]

E400: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Malformed request: bad JSON, base64 or parameter."}
}
E401: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing or wrong bearer token."}
}
E404: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such workflow, activity or runtime."}
}
E409: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorBody, "description": "Not allowed in the current state."}
}
E422: dict[int | str, dict[str, Any]] = {
    422: {
        "model": ErrorBody,
        "description": "Invalid workflow (YAML or validation): every error with path and line.",
    }
}


@dataclass(frozen=True)
class Paging:
    limit: int
    offset: int


def paging(default: int) -> Callable[..., Awaitable[Paging]]:
    """``?page=&per_page=`` (1-based pages) or ``?limit=&offset=``; limit wins over per_page."""

    async def dependency(
        page: Annotated[int | None, Query(ge=1, le=10**9, description="1-based page.")] = None,
        per_page: Annotated[
            int | None, Query(ge=1, le=MAX_PAGE, description="Items per page.")
        ] = None,
        limit: Annotated[int | None, Query(ge=1, le=MAX_PAGE)] = None,
        offset: Annotated[int | None, Query(ge=0, le=MAX_OFFSET)] = None,
    ) -> Paging:
        size = limit or per_page or default
        if offset is None:
            offset = (page - 1) * size if page else 0
        return Paging(size, offset)

    return dependency


def find_workflow(ctx: ServerContext, wf_id: int) -> WorkflowRecord:
    rec = ctx.repo.get_workflow(wf_id)
    if rec is None:
        raise not_found(f"workflow {wf_id}")
    return rec


def find_activity(
    ctx: ServerContext, wf_id: int, name: str
) -> tuple[WorkflowRecord, ActivityRecord]:
    wf = find_workflow(ctx, wf_id)
    act = ctx.repo.get_activity(wf_id, name)
    if act is None:
        raise not_found(f"activity {name} of workflow {wf_id}")
    return wf, act
