"""A request of the Kubernetes runtime cancelled while its TLS handshake waits closes its
socket at once (httpcore2 leaves it open until the garbage collector finds it: an unclosed
transport, and a connection the API server keeps).

The API server here accepts connections and never answers the handshake."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import trustme

from akoflow.config import RuntimeConfig
from akoflow.gc.collector import _NoEvents
from akoflow.runtimes.base import Runtime
from akoflow.runtimes.checks import check_runtime
from akoflow.runtimes.registry import create_runtime
from tests.mute_peer import mute_peer

NAME = "k8s-mute"


Request = Callable[[Runtime, Mapping[str, str]], Awaitable[Any]]


def _health(runtime: Runtime, environ: Mapping[str, str]) -> Awaitable[Any]:
    return runtime.health()  # the raw client (lightkube's adapter)


def _nodes(runtime: Runtime, environ: Mapping[str, str]) -> Awaitable[Any]:
    return runtime.nodes()  # lightkube's typed client


def _check(runtime: Runtime, environ: Mapping[str, str]) -> Awaitable[Any]:
    return check_runtime(NAME, environ=environ, timeout=60)  # `akoflow runtimes check`


async def _cancelled_in_handshake(tmp_path: Path, request: Request) -> bytes:
    """What the mute API server read from the runtime's connection until its end of file,
    which must come once the request is cancelled (bounded: 10 s)."""
    ca_file = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca_file))
    async with mute_peer() as (port, accepted):
        env = {
            "K8S_MUTE_API_SERVER_HOST": f"https://127.0.0.1:{port}",
            "K8S_MUTE_API_SERVER_TOKEN": "t0ken",
            "K8S_MUTE_CA_FILE": str(ca_file),
        }
        runtime = create_runtime(NAME, _NoEvents(), RuntimeConfig.from_env(NAME, env))
        await runtime.start()
        try:
            call = asyncio.ensure_future(request(runtime, env))
            reader = await asyncio.wait_for(accepted.get(), 10)
            hello = await asyncio.wait_for(reader.read(5), 10)  # the ClientHello's header
            assert hello[:1] == b"\x16", hello  # a TLS handshake record
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await call
            try:
                return hello + await asyncio.wait_for(reader.read(), 10)
            except TimeoutError:
                pytest.fail("the cancelled request's socket is still open 10 s later")
        finally:
            await runtime.stop()


@pytest.mark.parametrize(
    "request_of", [_health, _nodes, _check], ids=["raw client", "typed client", "check"]
)
def test_a_request_cancelled_in_its_tls_handshake_closes_its_socket(
    tmp_path: Path, request_of: Request
) -> None:
    read = asyncio.run(_cancelled_in_handshake(tmp_path, request_of))
    assert read.startswith(b"\x16\x03")  # the ClientHello, then nothing more: closed
