"""A command in a pod through the API server alone: ``pods/{name}/exec`` over WebSocket.

Kubernetes' remotecommand protocol: ``GET /api/v1/namespaces/{ns}/pods/{name}/exec?command=...``
upgraded to WebSocket with the subprotocol ``v5.channel.k8s.io`` (else ``v4.channel.k8s.io``).
Each message is binary, its first byte the channel: 0 stdin, 1 stdout, 2 stderr, 3 the final
``metav1.Status`` (JSON: ``Success``, or ``Failure`` with reason ``NonZeroExitCode`` and the
exit code in ``details.causes[reason=ExitCode]``), 4 terminal resize. v5 adds 255, "close
channel N": ``[255, 0]`` is stdin's end of file. With v4 (API servers before 1.30) stdin
cannot be closed, so a command must not wait for the end of its input: it must know where
its input ends (:mod:`.pod_copy` gives ``tar -x`` the archive's length).

The connection is made as the runtime's lightkube client makes its requests: the cluster's CA
(TLS verified unless the runtime's settings say otherwise), client certificates, and the
user's credentials (token, token file, exec plugin, basic), tried again once after a 401 when
the credential can be refreshed. Memory stays bounded: stdin is sent chunk by chunk, each send
waiting for the connection to drain; stdout goes to the caller's sink one message at a time
(while the sink is busy, no more is read); stderr keeps its last :data:`STDERR_KEEP` bytes.

Errors are typed so the engine can tell them apart: :class:`ExecTransportError` (the API server
could not be reached or the stream broke before the command's status: wait and retry),
:class:`ExecRefused` (the API server answered with an error, e.g. no such pod) and
:class:`ExecFailed` (the command ran and failed, with its exit code and stderr).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import httpx2
from lightkube.config.client_adapter import user_auth, verify_cluster
from lightkube.config.kubeconfig import SingleConfig
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
)
from websockets.typing import Subprotocol

from akoflow.errors import AkoflowError
from akoflow.runtimes.kubernetes.http import why_failed

V5 = Subprotocol("v5.channel.k8s.io")
V4 = Subprotocol("v4.channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR = 0, 1, 2, 3
CLOSE = 255  # v5: [255, channel] closes that channel
STDERR_KEEP = 64 * 1024
MAX_MESSAGE = 4 << 20  # the API server sends output in messages of tens of KiB


class ExecError(AkoflowError):
    """Any failure of :func:`exec_in_pod`."""


class ExecTransportError(ExecError):
    """The API server could not be reached, or the stream broke before the command's status
    arrived: the command's outcome is unknown. A cluster outage: hold and retry."""


class ExecRefused(ExecError):
    """The API server answered the exec request with an error instead of running it."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(f"{code} {reason}: {message}" if reason else f"{code}: {message}")
        self.code, self.reason, self.message = code, reason, message


class ExecFailed(ExecError):
    """The command ran and failed; ``exit_code`` is None when it could not be started."""

    def __init__(self, exit_code: int | None, stderr: bytes, message: str) -> None:
        tail = stderr.decode("utf-8", "replace").strip()[-2000:]
        super().__init__(f"{message}: {tail}" if tail else message)
        self.exit_code, self.stderr = exit_code, stderr


@dataclass(frozen=True)
class ExecTimeouts:
    """Bounds of one exec: ``connect`` (TCP, TLS and upgrade), ``ping_interval`` and
    ``ping_timeout`` (a connection whose peer stopped answering is dropped), ``close`` (the
    closing handshake)."""

    connect: float = 10.0
    ping_interval: float = 10.0
    ping_timeout: float = 20.0
    close: float = 5.0


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stderr: bytes  # its last STDERR_KEEP bytes
    protocol: str  # the negotiated subprotocol


Sink = Callable[[bytes], Awaitable[object]]


def exec_url(server: str, namespace: str, pod: str, params: Sequence[tuple[str, str]]) -> str:
    """The ``wss://`` URL of a pod's exec (a server URL's path prefix is kept)."""
    parts = urlsplit(server.rstrip("/"))
    scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme)
    path = f"{parts.path}/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(pod, safe='')}"
    query = urlencode(list(params), quote_via=quote)
    return urlunsplit((scheme, parts.netloc, f"{path}/exec", query, ""))


def exit_code_of(status: dict[str, Any]) -> int | None:
    """0 for ``Success``; the ``ExitCode`` cause of a ``NonZeroExitCode``; None otherwise."""
    if status.get("status") == "Success":
        return 0
    if status.get("reason") == "NonZeroExitCode":
        for cause in (status.get("details") or {}).get("causes") or []:
            if cause.get("reason") == "ExitCode":
                with contextlib.suppress(TypeError, ValueError):
                    return int(cause.get("message"))
    return None


def _status_of(body: bytes) -> tuple[str, str]:
    """(reason, message) of an error response's ``Status`` body, or of its text."""
    try:
        status = json.loads(body)
        return str(status.get("reason") or ""), str(status.get("message") or "")
    except (ValueError, AttributeError):
        return "", body.decode("utf-8", "replace").strip()[:500]


def _unreachable(server: str, exc: BaseException) -> ExecTransportError:
    return ExecTransportError(
        f"Kubernetes API at {server} is not reachable for exec: {why_failed(exc)}"
    )


async def _open(
    cluster: SingleConfig, url: str, timeouts: ExecTimeouts, protocols: Sequence[str]
) -> tuple[ClientConnection, str]:
    server = cluster.cluster.server
    assert cluster.user is not None
    try:
        tls = verify_cluster(cluster.cluster, cluster.user, cluster.abs_file, trust_env=False)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise _unreachable(server, exc) from None
    auth = user_auth(cluster.user)
    # The credential as lightkube's client would send it: its auth flow fills the headers,
    # and is told about a 401 once (a token file re-read, an exec plugin run again).
    request = httpx2.Request("GET", url.replace("wss://", "https://", 1))
    flow: AsyncGenerator[httpx2.Request, httpx2.Response] | None = None
    if auth is not None:
        flow = auth.async_auth_flow(request)
        request = await flow.__anext__()
    try:
        for attempt in range(2):
            headers = {k: v for k, v in request.headers.items() if k.lower() == "authorization"}
            try:
                ws = await connect(
                    url,
                    ssl=tls if url.startswith("wss://") else None,
                    additional_headers=headers,
                    subprotocols=[Subprotocol(p) for p in protocols],
                    compression=None,
                    proxy=None,  # as the runtime's client (trust_env=False)
                    open_timeout=timeouts.connect,
                    ping_interval=timeouts.ping_interval,
                    ping_timeout=timeouts.ping_timeout,
                    close_timeout=timeouts.close,
                    max_size=MAX_MESSAGE,
                    max_queue=4,
                )
            except InvalidStatus as exc:
                code = exc.response.status_code
                if code == 401 and attempt == 0 and flow is not None:
                    try:
                        request = await flow.asend(httpx2.Response(401, request=request))
                        continue
                    except StopAsyncIteration:
                        pass
                reason, message = _status_of(bytes(exc.response.body or b""))
                if code >= 500 or code == 429:
                    raise ExecTransportError(
                        f"Kubernetes API at {server} answered exec with {code} {reason}: {message}"
                    ) from None
                raise ExecRefused(code, reason, message) from None
            except (OSError, TimeoutError, InvalidHandshake, ssl.SSLError) as exc:
                raise _unreachable(server, exc) from None
            protocol = ws.subprotocol
            if protocol not in (V5, V4):
                await ws.close()
                raise ExecRefused(
                    101, "UnsupportedProtocol", f"the API server chose {protocol!r}, not v5/v4"
                )
            return ws, protocol
        raise AssertionError("unreachable")
    finally:
        if flow is not None:
            await flow.aclose()


async def _send_stdin(ws: ClientConnection, source: AsyncIterable[bytes], protocol: str) -> None:
    """Stdin from ``source``, then (v5) its end of file. A command that ended without reading
    it all closes the stream: what is left is not sent."""
    try:
        async for chunk in source:
            if chunk:
                await ws.send(bytes([STDIN]) + chunk)  # waits for the connection to drain
        if protocol == V5:
            await ws.send(bytes([CLOSE, STDIN]))
    except ConnectionClosed:
        return


async def _receive(
    ws: ClientConnection, stdout: Sink | None, stderr: bytearray, server: str
) -> dict[str, Any]:
    """Output until the command's status (channel 3), which is returned."""
    status = bytearray()
    try:
        async for message in ws:
            if isinstance(message, str) or not message:
                continue
            channel, data = message[0], message[1:]
            if channel == STDOUT and data and stdout is not None:
                await stdout(data)
            elif channel == STDERR and data:
                stderr += data
                del stderr[:-STDERR_KEEP]
            elif channel == ERROR and data:
                status += data
                with contextlib.suppress(ValueError):
                    parsed = json.loads(status)
                    if isinstance(parsed, dict):
                        return parsed
    except ConnectionClosed as exc:
        raise ExecTransportError(
            f"the exec stream from the Kubernetes API at {server} broke before the command "
            f"ended ({exc})"
        ) from None
    raise ExecTransportError(
        f"the Kubernetes API at {server} closed the exec stream without the command's status"
    )


async def exec_in_pod(
    cluster: SingleConfig,
    namespace: str,
    pod: str,
    command: Sequence[str],
    *,
    container: str | None = None,
    stdin: AsyncIterable[bytes] | None = None,
    stdout: Sink | None = None,
    check: bool = True,
    timeouts: ExecTimeouts = ExecTimeouts(),
    protocols: Sequence[str] = (V5, V4),
) -> ExecResult:
    """Runs ``command`` (an argv, no shell) in the pod's container, stdin read from ``stdin``
    (an async iterable of chunks; None: no stdin) and stdout given to ``stdout`` chunk by chunk
    (None: not requested); ``protocols`` are offered in that order. Returns the exit code and
    stderr; with ``check`` a non-zero exit raises :class:`ExecFailed`. An exception of the
    source or the sink ends the exec and is raised as it is."""
    if not command:
        raise ValueError("exec needs a command")
    params = [("command", arg) for arg in command]
    if container:
        params.append(("container", container))
    params += [
        ("stdin", "true" if stdin is not None else "false"),
        ("stdout", "true" if stdout is not None else "false"),
        ("stderr", "true"),
    ]
    server = cluster.cluster.server
    url = exec_url(server, namespace, pod, params)
    ws, protocol = await _open(cluster, url, timeouts, protocols)
    stderr = bytearray()
    reading = asyncio.ensure_future(_receive(ws, stdout, stderr, server))
    sending = asyncio.ensure_future(_send_stdin(ws, stdin, protocol)) if stdin else None
    tasks = [t for t in (reading, sending) if t is not None]
    try:
        while not reading.done():
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if sending is not None and sending.done():
                sending.result()  # the source's own error ends the exec
                tasks = [reading]
        status = reading.result()
    finally:
        for task in (reading, sending):
            if task is not None and not task.done():
                task.cancel()
        await asyncio.gather(*(t for t in (reading, sending) if t), return_exceptions=True)
        with contextlib.suppress(Exception):
            await ws.close()
    code = exit_code_of(status)
    if code is None:
        message = str(status.get("message") or status.get("reason") or "exec failed")
        raise ExecFailed(None, bytes(stderr), f"{' '.join(command[:1])}: {message}")
    if check and code != 0:
        raise ExecFailed(code, bytes(stderr), f"{command[0]} exited with code {code}")
    return ExecResult(code, bytes(stderr), protocol)
