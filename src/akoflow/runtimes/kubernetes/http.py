"""The HTTP transport of the runtime's API clients: httpx2's own, except that a request
cancelled during its TLS handshake closes its socket.

httpcore2 closes a stream whose handshake fails, but not one whose handshake is cancelled
(``except Exception``), and the connection is not yet the pool's: the socket stays open
until the garbage collector finds it. The runtime cancels requests all the time (watches
and log followers when it stops, health probes on their deadline), so an API server that is
slow to answer a handshake would leave sockets behind.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import Any, cast

import httpcore2
import httpx2
from lightkube.config.client_adapter import ConnectionParams, verify_cluster
from lightkube.config.kubeconfig import SingleConfig


class _ClosedOnCancel(httpcore2.AsyncNetworkStream):
    def __init__(self, stream: httpcore2.AsyncNetworkStream) -> None:
        self._stream = stream

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._stream.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        try:
            return await self._stream.start_tls(ssl_context, server_hostname, timeout)
        except BaseException:
            await self._stream.aclose()  # closes the socket before its first await
            raise

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _CancelSafeBackend(httpcore2.AsyncNetworkBackend):
    def __init__(self) -> None:
        self._backend = httpcore2.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        stream = await self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
        return _ClosedOnCancel(stream)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore2.AsyncNetworkStream:
        stream = await self._backend.connect_unix_socket(path, timeout, socket_options)
        return _ClosedOnCancel(stream)

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


class CancelSafeTransport(httpx2.AsyncHTTPTransport):
    """``httpx2.AsyncHTTPTransport(verify=ssl_context, trust_env=False)`` (no proxy, HTTP/1.1)
    over :class:`_CancelSafeBackend`."""

    def __init__(self, ssl_context: ssl.SSLContext) -> None:
        super().__init__(verify=ssl_context, trust_env=False)
        limits = httpx2.Limits()  # the defaults the base class used
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_CancelSafeBackend(),
        )


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
