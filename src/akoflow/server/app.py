"""The FastAPI application: one engine per server process, resumed work, the routers.

The lifespan opens the store, starts the engine and attaches every unfinished workflow of the
state dir, so a restarted server takes over what the previous one left running (the engine's
reconciliation adopts live attempts and runs nothing twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from akoflow import __version__, service
from akoflow.engine import Engine
from akoflow.server.auth import require_token
from akoflow.server.context import ServerContext
from akoflow.server.errors import install_error_handlers
from akoflow.server.routes import (
    activities,
    files,
    housekeeping,
    metrics,
    runtimes,
    upstream,
    workflows,
)
from akoflow.server.slow_clients import DEFAULT_BODY_TIMEOUT, BodyDeadline
from akoflow.server.supervisor import start_engine
from akoflow.server.ui import router as ui_router
from akoflow.tasks import cancel_and_wait

log = logging.getLogger(__name__)

DESCRIPTION = """\
AkôFlow's REST API. Upstream AkôFlow's routes and answers are kept (`/akoflow-server/...`,
`/akoflow-api/...`, the `{"data": ..., "timestamp": ...}` envelope) and extended.

* **Auth**: `Authorization: Bearer <token>` on every route except
  `/akoflow-server/check-service/`. The token is `AKOFLOW_API_TOKEN`, else the one generated
  at the first start in `<state dir>/api-token`.
* **Errors** are `{"detail": "...", "errors": [{"path", "line", "message"}]}`: 400 malformed
  request (JSON, base64, parameters), 401 token, 404 unknown id or name, 409 not allowed in
  the current state, 422 invalid workflow (every error, with its path and line), 408 a request
  body that came too slowly, 413 one over 128 MiB.
* **Lists** paginate with `page`/`per_page` or `limit`/`offset`; `data` stays a list.
"""


class ServerHeader:
    """Adds upstream's ``AKOFLOW-SERVER: <version>`` header (pure ASGI: streams untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.value = __version__.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"akoflow-server", self.value)]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_header)


def _lifespan(state_dir: Path) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A server never asks on the terminal it was started from: an SSH login that needs
        # answers (MFA) fails its runtime with the reason instead of waiting on a prompt.
        from akoflow.runtimes.hpc import prompt

        prompt.use(None)
        repo = service.open_repository(state_dir)
        ctx = ServerContext(state_dir=state_dir, repo=repo, engine=Engine(repo, state_dir))
        app.state.context = ctx
        loop = asyncio.get_running_loop()
        # `akoflow cancel ID` without --server records the request in the store and sends
        # SIGUSR1 to the owning engine process: this one.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGUSR1, lambda: ctx.engine.apply_cancel_requests())
        retention: asyncio.Task[None] | None = None
        try:
            await start_engine(ctx)
            retention = housekeeping.start_retention(ctx)  # AKOFLOW_RETENTION
            yield
        finally:
            if retention is not None:
                await cancel_and_wait([retention])
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signal.SIGUSR1)
            if ctx.restarting is not None:
                await cancel_and_wait([ctx.restarting])
            await ctx.engine.stop()
            repo.close()

    return lifespan


def _openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """FastAPI's schema without its generic 422 (this API answers 400 for malformed requests
    and keeps 422 for invalid workflows, see DESCRIPTION)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title="AkôFlow",
            version=__version__,
            description=DESCRIPTION,
            routes=app.routes,
        )
        for ops in schema.get("paths", {}).values():
            for op in ops.values():
                responses = op.get("responses", {})
                generic = responses.get("422", {})
                if "HTTPValidationError" in str(generic):
                    del responses["422"]
        components = schema.get("components", {}).get("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        app.openapi_schema = schema
        return schema

    return openapi


def create_app(
    state_dir: Path,
    token: str,
    *,
    cors_origins: Sequence[str] = (),
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
) -> FastAPI:
    """The server's ASGI app over ``state_dir``; every route but the health check needs
    ``token``. CORS stays off unless origins are given. A request body must have arrived
    ``body_timeout`` seconds after the request's headers (408 otherwise)."""
    app = FastAPI(
        title="AkôFlow",
        version=__version__,
        lifespan=_lifespan(state_dir),
        openapi_url=None,  # served below, behind the token like every other route
        docs_url=None,  # the docs pages could not send the token; the schema is /openapi.json
        redoc_url=None,
    )
    app.state.api_token = token
    install_error_handlers(app)
    app.include_router(upstream.public)
    app.include_router(upstream.protected)
    app.include_router(workflows.router)
    app.include_router(activities.router)
    app.include_router(runtimes.router)
    app.include_router(metrics.router)  # GET /metrics (Prometheus)
    app.include_router(files.router)  # a run's files: list, download, tar
    app.include_router(housekeeping.router)  # POST /akoflow-api/gc
    app.include_router(ui_router)  # the web UI: public pages, data only through the API
    _protect_openapi(app)
    app.openapi = _openapi(app)  # type: ignore[method-assign]
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
        )
    app.add_middleware(BodyDeadline, seconds=body_timeout)
    app.add_middleware(ServerHeader)
    return app


def _protect_openapi(app: FastAPI) -> None:
    async def openapi_json() -> JSONResponse:
        return JSONResponse(app.openapi())

    app.add_api_route(
        "/openapi.json",
        openapi_json,
        methods=["GET"],
        include_in_schema=False,
        dependencies=[Depends(require_token)],
    )
