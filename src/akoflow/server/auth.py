"""Bearer-token authentication of the API routes (the token itself: :mod:`.token`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from akoflow.server.errors import ApiError
from akoflow.server.token import token_matches

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearerAuth",
    description="The server's API token: `AKOFLOW_API_TOKEN`, or `<state dir>/api-token`.",
)

# Connection: close, so that a refused request's body (up to any size) is not read to the end
# to keep the connection open: an unauthenticated client costs no more than its headers.
UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer realm="akoflow"', "Connection": "close"}


async def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """Route dependency: a valid ``Authorization: Bearer <token>`` header, else 401. (Declared
    through ``bearer`` so the OpenAPI schema names the scheme on every protected route.)"""
    expected: str = request.app.state.api_token
    if credentials is None:
        raise ApiError(
            401,
            "missing bearer token (Authorization: Bearer <token>)",
            headers=UNAUTHORIZED_HEADERS,
        )
    if not token_matches(credentials.credentials, expected):
        raise ApiError(
            401,
            "invalid bearer token",
            headers={
                "WWW-Authenticate": 'Bearer realm="akoflow", error="invalid_token"',
                "Connection": "close",
            },
        )
