"""Error responses: one JSON shape, and the mapping of FastAPI's request validation errors.

Rule of the API: 400 for a malformed request (bad JSON, bad base64, a bad query parameter),
422 only for a workflow that was read but is invalid (every problem with its path and line),
404 for anything unknown (including a path parameter that cannot be an id), 409 for an action
the resource's state does not allow, 408 for a body that came too slowly, 413 for one too
large, 507 for a write the store refused for want of room (the server's disk is full: try
again once there is room). Any other 5xx is a bug.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from akoflow.errors import AkoflowError
from akoflow.server.schemas import ErrorBody, ErrorItem
from akoflow.server.slow_clients import BodyTooSlow

log = logging.getLogger(__name__)


class ApiError(AkoflowError):
    """Raised by handlers; becomes ``{"detail": ..., "errors": [...]}`` with ``status``."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        errors: Sequence[ErrorItem] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = list(errors)
        self.headers = dict(headers or {})


def not_found(what: str) -> ApiError:
    return ApiError(404, f"{what} not found")


def error_response(
    status: int,
    detail: str,
    errors: Sequence[ErrorItem] = (),
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = ErrorBody(detail=detail, errors=list(errors))
    return JSONResponse(body.model_dump(), status_code=status, headers=dict(headers or {}))


def _loc(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(e.get("loc", ("",))[0] == "path" for e in errors):
        # `/workflows/abc/`: no resource can have that id.
        return error_response(404, "not found")
    items = [
        ErrorItem(path=_loc(e.get("loc", ())), line=None, message=str(e.get("msg", "invalid")))
        for e in errors
    ]
    if any(e.get("type") == "json_invalid" for e in errors):
        return error_response(400, "the request body is not valid JSON", items)
    where = {str(e.get("loc", ("request",))[0]) for e in errors}
    noun = "query parameter" if where == {"query"} else "request"
    return error_response(400, f"invalid {noun}", items)


def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.detail, exc.errors, exc.headers)


def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return error_response(exc.status_code, str(exc.detail), headers=exc.headers)


def _body_too_slow(request: Request, exc: Exception) -> JSONResponse:
    log.info("%s %s from %s: %s", request.method, request.url.path, _client(request), exc)
    # The rest of the body may still come: the connection is closed, not drained.
    return error_response(408, str(exc), headers={"Connection": "close"})


def _client_gone(request: Request, exc: Exception) -> JSONResponse:
    """A client that leaves mid-request is not a server error: one line, no traceback."""
    log.info(
        "%s %s: the client %s disconnected before the request body was complete",
        request.method,
        request.url.path,
        _client(request),
    )
    return error_response(400, "the client disconnected")  # nobody is there to read it


def _client(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "(unknown)"


def _store_error(request: Request, exc: Exception) -> JSONResponse:
    """A write the store refused for want of room is no bug: 507, with the reason. A handler
    of its own (not the catch-all's): Starlette re-raises what reaches the catch-all after its
    response, and the server then logged a traceback and dropped the connection."""
    from pathlib import Path

    from akoflow.store.room import locked, short_of_room

    if locked(exc) is not None:
        # Another process held the database's write lock longer than the store waits (30 s).
        log.warning(
            "%s %s refused: the database is locked (%s)", request.method, request.url.path, exc
        )
        return error_response(
            503,
            "the server's database is locked by another process: try again shortly",
            headers={"Retry-After": "5"},
        )
    context = getattr(request.app.state, "context", None)
    if context is not None and short_of_room(exc, Path(context.repo.path).parent):
        log.warning(
            "%s %s refused: no room left under the state dir (%s)",
            request.method,
            request.url.path,
            exc,
        )
        return error_response(
            507,
            f"the server's disk is full ({exc}): try again once there is room",
            headers={"Retry-After": "30"},
        )
    return _unexpected(request, exc)


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal error (a bug: see the server log)")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(BodyTooSlow, _body_too_slow)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(sqlite3.Error, _store_error)
    app.add_exception_handler(Exception, _unexpected)
