"""Run the server: uvicorn, one worker, the asyncio loop (one process owns the engine)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import uvicorn

from akoflow.server.app import create_app
from akoflow.server.slow_clients import (
    KEEP_ALIVE_TIMEOUT,
    BadTimeout,
    header_deadline_protocol,
    timeouts,
)
from akoflow.server.token import TOKEN_ENV, Token, load_or_create_token

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
SHUTDOWN_GRACE = 5  # seconds open streams (log follows) get before the engine stops


def serve(
    *,
    state_dir: Path,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    cors_origins: Sequence[str] = (),
    log_level: str = "info",
    announce: Callable[[Token], None] = lambda token: None,
) -> None:
    """Serve until SIGINT/SIGTERM. Running activities keep running; the next start adopts
    them. ``announce`` is called once with the token (the CLI shows a new one, once).

    Slow clients are bounded: request headers within ``$AKOFLOW_SERVER_HEADER_TIMEOUT``
    seconds (default 20), a request body within ``$AKOFLOW_SERVER_BODY_TIMEOUT`` (120)."""
    try:
        header_timeout, body_timeout = timeouts()
    except BadTimeout as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise SystemExit(2) from None
    token = load_or_create_token(state_dir)
    # Activities inherit the server's environment: keep the API token out of it.
    os.environ.pop(TOKEN_ENV, None)
    announce(token)
    app = create_app(state_dir, token.value, cors_origins=cors_origins, body_timeout=body_timeout)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="asyncio",
        http=header_deadline_protocol(header_timeout),
        timeout_keep_alive=KEEP_ALIVE_TIMEOUT,
        workers=1,
        lifespan="on",
        log_level=log_level,
        timeout_graceful_shutdown=SHUTDOWN_GRACE,
        proxy_headers=False,
        server_header=False,
    )
    uvicorn.Server(config).run()
