"""`akoflow runtimes check` and the runtime's health of a Kubernetes runtime whose API server
address answers, but not with a TLS server: one that closes each connection as it is accepted
(a load balancer with no backend left) and one that speaks plain HTTP. Neither is a CA
problem: the API server step and the runtime's NOT_READY reason say what happened, and
neither tells the user to set the CA."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import trustme

from akoflow.config import RuntimeConfig
from akoflow.gc.collector import _NoEvents
from akoflow.runtimes.base import Health
from akoflow.runtimes.checks import check_runtime
from akoflow.runtimes.registry import create_runtime

NAME = "k8s-lb"


async def _closes(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


async def _plain_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(100)
    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    await writer.drain()
    writer.close()


def _environ(tmp_path: Path, port: int) -> dict[str, str]:
    ca_file = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca_file))
    return {
        "K8S_LB_API_SERVER_HOST": f"https://127.0.0.1:{port}",
        "K8S_LB_API_SERVER_TOKEN": "t0ken-never-shown",
        "K8S_LB_CA_FILE": str(ca_file),
    }


async def _check(tmp_path: Path, handler: object) -> dict[str, tuple[str, str, str]]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)  # type: ignore[arg-type]
    env = _environ(tmp_path, server.sockets[0].getsockname()[1])
    try:
        report = await check_runtime(NAME, environ=env, timeout=10)
    finally:
        server.close()
        await server.wait_closed()
    assert "t0ken-never-shown" not in repr(report)
    return {s.name: (s.status, s.detail, s.fix) for s in report.steps}


async def _health(tmp_path: Path, handler: object) -> Health:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)  # type: ignore[arg-type]
    env = _environ(tmp_path, server.sockets[0].getsockname()[1])
    runtime = create_runtime(NAME, _NoEvents(), RuntimeConfig.from_env(NAME, env))
    await runtime.start()
    try:
        return await runtime.health()
    finally:
        await runtime.stop()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("handler", "said"),
    [
        (_closes, "closed the connection during the TLS handshake"),
        (_plain_http, "does not answer TLS on that port"),
    ],
    ids=["closes at once", "plain http"],
)
def test_a_server_that_is_not_tls_is_unreachable_not_an_untrusted_certificate(
    tmp_path: Path, handler: object, said: str
) -> None:
    steps = asyncio.run(_check(tmp_path, handler))
    status, detail, fix = steps["API server"]
    assert status == "failed" and said in detail, steps["API server"]
    assert "K8S_LB_API_SERVER_HOST" in fix
    assert steps["TLS"][0] == "skipped", steps["TLS"]  # no CA advice
    assert all("CA_FILE" not in f for _, _, f in steps.values()), steps


@pytest.mark.parametrize(
    ("handler", "said"),
    [
        (_closes, "closed the connection during the TLS handshake"),
        (_plain_http, "does not answer TLS on that port"),
    ],
    ids=["closes at once", "plain http"],
)
def test_the_runtime_not_ready_says_what_the_server_did(
    tmp_path: Path, handler: object, said: str
) -> None:
    health = asyncio.run(_health(tmp_path, handler))
    assert not health.ready and not health.misconfigured
    reason = health.reason or ""
    assert reason.startswith("Kubernetes API at https://127.0.0.1:") and said in reason, reason
    assert "CA" not in reason and "t0ken-never-shown" not in reason, reason
