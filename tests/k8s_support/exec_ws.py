"""``pods/{name}/exec`` over WebSocket, served as the real API server serves it.

The protocol (Kubernetes' remotecommand over WebSocket): ``GET .../pods/{name}/exec?command=a&
command=b&stdin=true&stdout=true&stderr=true&container=c`` upgraded to WebSocket with the
subprotocol the client offers first among ``v5.channel.k8s.io`` and ``v4.channel.k8s.io``. Every
message is binary, its first byte the channel: 0 stdin (client to server), 1 stdout, 2 stderr,
3 the final ``metav1.Status`` as JSON, 4 terminal resize (ignored: no tty here). v5 adds 255,
"close channel N" (``[255, N]``): the client ends stdin with ``[255, 0]``; with v4 stdin cannot
be closed. The server first sends an empty message on the lowest output channel opened (the
client's sign that the streams are up), then the output, then the status, then a close frame.
Errors before the upgrade (no token, no such pod, bad query, container not running) are a
``Status`` with their HTTP code and no upgrade.

The command runs for real in the pod's container (``docker exec`` through the kubelet), so it
sees the pod's volumes at their mount paths. Memory stays bounded in both directions: output is
read in chunks and each send waits for the connection to drain; stdin is written with
``drain()``, and the server reads the next message only once the last one was written.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import QueryParams
from starlette.websockets import WebSocket

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
PROTOCOLS = (V5, V4)
STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE = 255  # v5: [255, channel] closes that channel
CHUNK = 32 * 1024


class Refused(Exception):
    """An exec request answered with an error ``Status`` instead of an upgrade."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


@dataclass(frozen=True)
class ExecRequest:
    command: list[str]
    container: str | None
    stdin: bool
    stdout: bool
    stderr: bool
    protocol: str


@dataclass
class StdinGate:
    """For tests that must act in the middle of a copy: every session passes its first
    ``after`` bytes of stdin to the command and holds the rest; once ``released``, the
    command's stdin ends there and the rest is dropped (a stream cut at that byte: the
    bytes a dead client left in the kernel's buffers would otherwise still arrive)."""

    after: int
    released: asyncio.Event


# (namespace, pod, container, request) -> the started process (raises Refused)
Starter = Callable[[str, str, str, ExecRequest], Awaitable[asyncio.subprocess.Process]]


def _flag(query: QueryParams, key: str) -> bool:
    # Go's strconv.ParseBool, which the API server's query decoder uses
    return query.get(key, "") in ("1", "t", "T", "true", "TRUE", "True")


def parse_request(query: QueryParams, offered: Sequence[str]) -> ExecRequest:
    command = query.getlist("command")
    if not command:
        raise Refused(400, "BadRequest", "you must specify at least 1 command")
    stdin, stdout, stderr = _flag(query, "stdin"), _flag(query, "stdout"), _flag(query, "stderr")
    if not (stdin or stdout or stderr):
        raise Refused(400, "BadRequest", "you must specify at least 1 of stdin, stdout, stderr")
    if _flag(query, "tty"):
        raise Refused(400, "BadRequest", "the test cluster runs no terminals (tty=true)")
    # The first of the client's protocols that the server speaks, as wsstream's handshake
    protocol = next((p for p in offered if p in PROTOCOLS), None)
    if protocol is None:
        raise Refused(
            400,
            "BadRequest",
            f"requested protocol(s) are not supported: {list(offered)}; supports {list(PROTOCOLS)}",
        )
    return ExecRequest(command, query.get("container") or None, stdin, stdout, stderr, protocol)


def container_of(pod: dict[str, Any], requested: str | None) -> str:
    names = [c["name"] for c in pod["spec"]["containers"]]
    name = pod["metadata"]["name"]
    if requested is None:
        if len(names) == 1:
            return str(names[0])
        raise Refused(
            400,
            "BadRequest",
            f"a container name must be specified for pod {name}, choose one of: {names}",
        )
    if requested not in names:
        raise Refused(400, "BadRequest", f"container {requested} is not valid for pod {name}")
    return requested


def exit_status(code: int, command: Sequence[str]) -> dict[str, Any]:
    """The ``metav1.Status`` the API server writes on channel 3 when the command ended."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": (
            "command terminated with non-zero exit code: error executing command "
            f"{list(command)}, exit code {code}"
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


async def _to_client(ws: WebSocket, stream: asyncio.StreamReader, channel: int) -> None:
    header = bytes([channel])
    while data := await stream.read(CHUNK):
        await ws.send_bytes(header + data)  # waits while the client does not read


async def _from_client(
    ws: WebSocket,
    process: asyncio.subprocess.Process,
    request: ExecRequest,
    gate: StdinGate | None = None,
) -> None:
    """Client messages until it disconnects: stdin data, v5's close of stdin."""
    stdin = process.stdin
    passed = 0
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        data = message.get("bytes")
        if not data:
            continue  # empty and text messages carry nothing here
        channel, payload = data[0], data[1:]
        if channel == STDIN and stdin is not None and payload:
            try:
                if gate is not None and passed + len(payload) > gate.after:
                    stdin.write(payload[: max(gate.after - passed, 0)])
                    await stdin.drain()
                    await gate.released.wait()
                    stdin.close()
                    stdin = None
                    continue
                passed += len(payload)
                stdin.write(payload)
                await stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                stdin = None  # the command stopped reading: the rest is discarded
        elif channel == CLOSE and request.protocol == V5 and payload == bytes([STDIN]):
            if stdin is not None:
                stdin.close()
                stdin = None


async def serve(
    ws: WebSocket,
    process: asyncio.subprocess.Process,
    request: ExecRequest,
    closing: asyncio.Event,
    gate: StdinGate | None = None,
) -> None:
    """One exec session: streams until the command ended and its output was sent, then the
    status and a close frame. A client that goes away ends the command."""
    tasks: list[asyncio.Task[Any]] = []
    try:
        await ws.accept(subprotocol=request.protocol)
        first = STDOUT if request.stdout else STDERR if request.stderr else ERROR
        await ws.send_bytes(bytes([first]))
        outputs = [
            asyncio.create_task(_to_client(ws, stream, channel))
            for stream, channel in ((process.stdout, STDOUT), (process.stderr, STDERR))
            if stream is not None
        ]
        ended = asyncio.gather(process.wait(), *outputs)
        client = asyncio.create_task(_from_client(ws, process, request, gate))
        stop = asyncio.create_task(closing.wait())
        tasks = [*outputs, client, stop]
        await asyncio.wait([ended, client, stop], return_when=asyncio.FIRST_COMPLETED)
        if not ended.done():
            ended.cancel()
            return  # the client left or the server is going away: no status
        ended.result()
        code = process.returncode
        assert code is not None
        status = json.dumps(exit_status(code, request.command)).encode()
        await ws.send_bytes(bytes([ERROR]) + status)
        await ws.close(1000)
    except (OSError, RuntimeError):  # uvicorn's ClientDisconnected, starlette's "closed"
        return  # the connection broke while sending
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if process.stdin is not None:
            process.stdin.close()
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
