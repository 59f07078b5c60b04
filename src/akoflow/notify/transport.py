"""The webhooks' HTTP transport: httpx's own, over
:class:`akoflow.http_cancel.CancelSafeBackend` (a request cancelled during its TLS handshake
closes its socket). A try is cut by cancelling it (its ``asyncio.timeout``, or the engine
stopping), so a receiver that accepts connections and never answers the handshake kept one
socket per try.

Proxies from the environment keep httpx's own transports (their mounts are made by the
client).
"""

from __future__ import annotations

import httpcore
import httpx

from akoflow.http_cancel import cancel_safe_pool


class CancelSafeTransport(httpx.AsyncHTTPTransport):
    """``httpx.AsyncHTTPTransport()`` (TLS verified with the default CAs, or those named by
    SSL_CERT_FILE / SSL_CERT_DIR; HTTP/1.1) over :class:`~akoflow.http_cancel.CancelSafeBackend`."""

    def __init__(self) -> None:
        super().__init__()
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)  # httpx's
        tls = httpx.create_ssl_context(verify=True, trust_env=True)
        self._pool = cancel_safe_pool(httpcore, tls, limits)
