"""The HTTP transport of the runtime's API clients: httpx2's own, over
:class:`akoflow.http_cancel.CancelSafeBackend` (a request cancelled during its TLS handshake
closes its socket). The runtime cancels requests all the time: watches and log followers when
it stops, health probes on their deadline."""

from __future__ import annotations

import ssl
from typing import cast

import httpcore2
import httpx2
from lightkube.config.client_adapter import ConnectionParams, verify_cluster
from lightkube.config.kubeconfig import SingleConfig

from akoflow.http_cancel import cancel_safe_pool


class CancelSafeTransport(httpx2.AsyncHTTPTransport):
    """``httpx2.AsyncHTTPTransport(verify=ssl_context, trust_env=False)`` (no proxy, HTTP/1.1)
    over :class:`~akoflow.http_cancel.CancelSafeBackend`."""

    def __init__(self, ssl_context: ssl.SSLContext) -> None:
        super().__init__(verify=ssl_context, trust_env=False)
        # The defaults the base class used.
        self._pool = cancel_safe_pool(httpcore2, ssl_context, httpx2.Limits())


def transport_for(cluster: SingleConfig) -> CancelSafeTransport:
    """A :class:`CancelSafeTransport` that verifies TLS as the kubeconfig says (and presents
    its client certificate). One per client: a client closes its transport."""
    assert cluster.user is not None
    tls = verify_cluster(cluster.cluster, cluster.user, cluster.abs_file, trust_env=False)
    return CancelSafeTransport(tls)


def connection_params(cluster: SingleConfig, timeout: httpx2.Timeout) -> ConnectionParams:
    """lightkube's connection parameters for a raw client of ``cluster``: no proxy from the
    environment, its own :func:`transport_for`."""
    # lightkube annotates the sync transport type; its AsyncClient hands it to httpx2's.
    transport = cast(httpx2.BaseTransport, transport_for(cluster))
    return ConnectionParams(timeout=timeout, trust_env=False, transport=transport)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    at: BaseException | None = exc
    while at is not None and at not in seen:
        seen.append(at)
        at = at.__cause__ or at.__context__
    return seen


def is_certificate_failure(exc: BaseException) -> bool:
    """The server's certificate failed verification (not any TLS error: a server that closes
    the connection in the handshake, or that does not speak TLS, is not a CA problem)."""
    return any(
        isinstance(e, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(e)
        for e in _chain(exc)
    )


def why_failed(exc: BaseException) -> str:
    """Why a request to the API server failed, for people: httpx2's errors are often empty
    (``ConnectError()``), the reason is further down their chain."""
    chain = _chain(exc)
    if any(isinstance(e, ssl.SSLEOFError) for e in chain):
        return "it closed the connection during the TLS handshake"
    if any("WRONG_VERSION_NUMBER" in str(e) for e in chain):
        return "it does not answer TLS on that port (an http:// server?)"
    text = next((str(e) for e in chain if str(e)), type(exc).__name__)
    if is_certificate_failure(exc):
        return f"TLS certificate verification failed ({text}); set the cluster's CA"
    return text
