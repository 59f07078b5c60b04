"""Run the server: uvicorn, one worker, the asyncio loop (one process owns the engine)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import uvicorn

from akoflow.server.app import create_app
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
    them. ``announce`` is called once with the token (the CLI shows a new one, once)."""
    token = load_or_create_token(state_dir)
    # Activities inherit the server's environment: keep the API token out of it.
    os.environ.pop(TOKEN_ENV, None)
    announce(token)
    app = create_app(state_dir, token.value, cors_origins=cors_origins)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="asyncio",
        workers=1,
        lifespan="on",
        log_level=log_level,
        timeout_graceful_shutdown=SHUTDOWN_GRACE,
        proxy_headers=False,
        server_header=False,
    )
    uvicorn.Server(config).run()
