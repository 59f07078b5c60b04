"""Clients of an AkôFlow server (``akoflow server``): :class:`Client` and :class:`AsyncClient`.

They use the CLI client's connection (:mod:`akoflow.cli.client`: the same routes, headers and
timeouts as ``akoflow submit/status/logs/cancel/retry/runtimes --server``) and turn its
errors into typed exceptions: :class:`~akoflow.ValidationRejected` (422, with every problem),
:class:`~akoflow.Unauthorized` (401), :class:`~akoflow.NotFound` (404),
:class:`~akoflow.Conflict` (409), :class:`~akoflow.ServerUnreachable` (no answer), else
:class:`~akoflow.ServerError`. The token is never part of a repr or an error.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, Self

from akoflow.api.errors import (
    Conflict,
    InvalidToken,
    NotFound,
    ServerError,
    ServerUnreachable,
    Unauthorized,
    ValidationRejected,
)
from akoflow.api.status import ActivityStatus, LogChunk, RunStatus, RuntimeStatus
from akoflow.api.workflow import Workflow, read_source
from akoflow.states import ActivityState, WorkflowState

if TYPE_CHECKING:
    from akoflow.cli.client import Api, AsyncApi, ClientError

__all__ = ["AsyncClient", "Client"]

RunRef = int | str
"""A run's id, or a workflow name (its newest run)."""
Submittable = Workflow | str | bytes | os.PathLike[str]
FOLLOW_RECONNECTS = 30  # a dropped log stream is picked up again this many times in a row
# s without a byte on a followed log stream before it is taken as lost and picked up again:
# the server sends a keep-alive comment every 15 s on an idle one.
FOLLOW_READ_TIMEOUT = 60.0


def shown_url(url: str) -> str:
    """``url`` as it may be shown: without a user name or password."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _checked_token(token: str) -> str:
    """The token as a header can carry it, else :class:`InvalidToken` (never showing it):
    a token read from a file keeps its line break, which httpx would refuse with the whole
    header in its message."""
    token = token.strip()
    if not token:
        raise InvalidToken("the API token is empty")
    if not all(" " < c < "\x7f" for c in token):
        raise InvalidToken(
            "the API token holds a line break, a control character, a space or a character "
            "that is not ASCII: a header cannot carry it (the token is not shown)"
        )
    return token


class _Secrets:
    """What an error's text must never hold: the token, the URL's user information."""

    def __init__(self, url: str, token: str) -> None:
        parts = urllib.parse.urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        # A word of a few letters is in ordinary text too (a test's token "t"): not scrubbed.
        words = [w for w in (token, parts.password) if w and len(w) >= 6]
        self.words = [userinfo, *words] if userinfo else words

    def scrub(self, text: str) -> str:
        for word in self.words:
            text = text.replace(word, "***")
        return text


def _typed(exc: ClientError, secrets: _Secrets | None = None) -> ServerError:
    from akoflow.cli.client import EXIT_FAILED, InvalidWorkflow
    from akoflow.spec.loader import SpecError

    detail = str(exc) if secrets is None else secrets.scrub(str(exc))
    if isinstance(exc, InvalidWorkflow):
        errors = [
            SpecError(str(e.get("path") or ""), str(e.get("message") or ""), e.get("line"))
            for e in exc.errors
        ]
        return ValidationRejected(detail, errors)
    if exc.status is None:
        return ServerUnreachable(detail) if exc.code == EXIT_FAILED else ServerError(detail)
    kind = {401: Unauthorized, 404: NotFound, 409: Conflict}.get(exc.status, ServerError)
    return kind(detail, exc.status)


@contextlib.contextmanager
def _errors(secrets: _Secrets | None = None) -> Iterator[None]:
    from akoflow.cli.client import ClientError

    try:
        yield
    except ClientError as exc:
        raise _typed(exc, secrets) from None


def _raise(exc: ClientError) -> NoReturn:
    raise _typed(exc) from None


def _transport(exc: Exception, secrets: _Secrets) -> str:
    """A transport error as it may be shown: httpx's text of a request it could not even
    write (LocalProtocolError) holds the headers, so only its kind is."""
    import httpx

    if isinstance(exc, httpx.LocalProtocolError):
        return "the request could not be sent (a header value a server would refuse)"
    return secrets.scrub(str(exc))


def _submission(workflow: Submittable) -> bytes:
    """The bytes a server is sent: a workflow file's own, YAML text, or a built workflow."""
    if isinstance(workflow, Workflow):
        return workflow.submission_text().encode("utf-8")
    if isinstance(workflow, bytes):
        return workflow
    text, _ = read_source(workflow)
    return text.encode("utf-8")


def _body(workflow: Submittable) -> dict[str, str]:
    return {"workflow": base64.b64encode(_submission(workflow)).decode("ascii")}


def _activity_path(wf_id: int, activity: str) -> str:
    return f"/workflows/{wf_id}/activities/{urllib.parse.quote(activity, safe='')}/"


def _activity_status(a: Mapping[str, Any]) -> ActivityStatus:
    return ActivityStatus(
        name=a["name"],
        runtime=a["runtime"],
        state=ActivityState(a["state"]),
        attempts=a["attempt"],
        exit_code=a["exitCode"],
        reason=a["reason"],
        node=a.get("node"),
        started_at=a["startedAt"],
        finished_at=a["finishedAt"],
    )


def _run_status(doc: Mapping[str, Any], acts: Sequence[Mapping[str, Any]]) -> RunStatus:
    times = doc["times"]
    return RunStatus(
        id=doc["id"],
        name=doc["name"],
        state=WorkflowState(doc["state"]),
        data_dir=Path(doc["dataDir"]),
        started_at=times["startedAt"],
        finished_at=times["finishedAt"],
        activities={a["name"]: _activity_status(a) for a in acts},
    )


def _runtime_status(r: Mapping[str, Any]) -> RuntimeStatus:
    return RuntimeStatus(
        name=r["name"],
        kind=r["kind"],
        ready=r["state"] == "READY",
        reason=r["reason"],
        settings=dict(r["metadata"]),
    )


def _log_params(attempt: int | None, stream: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if attempt is not None:
        params["attempt"] = attempt
    if stream is not None:
        params["stream"] = stream
    return params


def _chunk(data: str) -> tuple[int, LogChunk]:
    import json

    c = json.loads(data)
    return int(c["id"]), LogChunk(int(c["attempt"]), str(c["stream"]), str(c["data"]))


def _connect(
    url: str | None, token: str | None, state_dir: str | os.PathLike[str] | None
) -> tuple[Api, _Secrets]:
    """The CLI client's connection, with the token checked (wherever it came from) and the
    URL shown without its user information (in messages too)."""
    from akoflow.cli import client as cli

    address = cli.server_url(url, required=True)
    assert address is not None
    if token is not None:
        token = _checked_token(token)
    secrets = _Secrets(address, token or "")
    with _errors(secrets):
        api = cli._connect(address, None if state_dir is None else Path(state_dir), token)
    if token is None:  # from $AKOFLOW_API_TOKEN or the state dir's file
        try:
            token = _checked_token(api.headers["Authorization"].removeprefix("Bearer "))
        except InvalidToken:
            api.http.close()
            raise
        secrets = _Secrets(address, token)
    api.url = shown_url(address)
    return api, secrets


def _limited(left: float | None) -> Any:
    """A request's timeouts, none longer than ``left`` seconds (None: the defaults)."""
    if left is None:
        return None
    import httpx

    from akoflow.cli.client import TIMEOUT

    left = max(left, 0.001)
    return httpx.Timeout(
        min(TIMEOUT.read or left, left),
        connect=min(TIMEOUT.connect or left, left),
        pool=min(TIMEOUT.pool or left, left),
    )


class Client:
    """A server's API, synchronously: ``Client(url, token)``.

    ``url`` defaults to ``$AKOFLOW_SERVER``, else http://127.0.0.1:8080; ``token`` to
    ``$AKOFLOW_API_TOKEN``, else the ``api-token`` file of ``state_dir`` (default
    ``$AKOFLOW_HOME``, else ``~/.akoflow``). Use it as a context manager, or :meth:`close` it.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        state_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self._api, self._secrets = _connect(url, token, state_dir)
        self.url: str = self._api.url  # without user information

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def close(self) -> None:
        self._api.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, method: str, path: str, *, left: float | None = None, **kwargs: Any) -> Any:
        if left is not None:
            kwargs["timeout"] = _limited(left)
        with _errors(self._secrets):
            return self._api.call(method, path, **kwargs)

    def _id(self, run: RunRef) -> int:
        if isinstance(run, int):
            return run
        with _errors(self._secrets):
            return self._api.workflow_id(run)

    def submit(self, workflow: Submittable) -> int:
        """Send a workflow to run on the server; its run id. ``workflow``: a
        :class:`Workflow`, a file's path, YAML text (``str`` with a line break) or bytes.
        Raises :class:`~akoflow.ValidationRejected` with every problem (nothing stored)."""
        return int(self._call("POST", "/workflows/", json=_body(workflow))["workflow_id"])

    def status(self, run: RunRef) -> RunStatus:
        """The run's state and each activity's."""
        return self._status(self._id(run), None)

    def _status(self, wf_id: int, deadline: float | None) -> RunStatus:
        """Each request's timeouts end by ``deadline`` (monotonic; None: the defaults)."""
        from akoflow.cli.client import PAGE

        def left() -> float | None:
            return None if deadline is None else deadline - time.monotonic()

        params: dict[str, Any] = {"activities": "false"}
        doc = self._call("GET", f"/workflows/{wf_id}/", params=params, left=left())["data"]
        acts: list[Mapping[str, Any]] = []
        after = -1
        while True:
            page = self._call(
                "GET",
                f"/workflows/{wf_id}/activities/",
                params={"limit": PAGE, "after": after},
                left=left(),
            )
            acts += page["data"]
            if page["nextAfter"] is None:
                return _run_status(doc, acts)
            after = page["nextAfter"]

    def wait(
        self, run: RunRef, *, timeout: float | None = None, interval: float = 0.5
    ) -> RunStatus:
        """The run's status once it ended; :class:`TimeoutError` after ``timeout`` seconds
        (no request waits longer than the time left)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        wf_id = self._id(run)
        while True:
            try:
                status = self._status(wf_id, deadline)
            except ServerUnreachable as exc:
                if deadline is None or time.monotonic() < deadline:
                    raise
                raise TimeoutError(f"run {wf_id}: no answer within {timeout} s") from exc
            if status.done:
                return status
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"run {wf_id} is still {status.state} after {timeout} s")
            pause = interval if deadline is None else min(interval, deadline - time.monotonic())
            time.sleep(max(pause, 0.0))

    def logs(
        self, run: RunRef, activity: str, *, attempt: int | None = None, stream: str | None = None
    ) -> str:
        """An activity's output so far: its last attempt (or ``attempt``), both streams in
        the order written (or ``stream``: ``"stdout"``/``"stderr"``)."""
        wf_id = self._id(run)
        base = _activity_path(wf_id, activity)
        if attempt is None:
            attempt = self._call("GET", base)["data"]["attempt"] or 1
        params = _log_params(attempt, stream)
        parts: list[str] = []
        after = 0
        while True:
            page = self._call("GET", base + "logs/", params={**params, "after": after})
            parts += (c["data"] for c in page["data"])
            after = page["nextAfter"]
            if not page["data"] or page["complete"]:
                return "".join(parts)

    def follow_logs(
        self, run: RunRef, activity: str, *, attempt: int | None = None, stream: str | None = None
    ) -> Iterator[LogChunk]:
        """An activity's output as it is written, until it ends (every attempt, or
        ``attempt``); a dropped connection is picked up where it stopped."""
        import httpx

        from akoflow.cli.client import API, TIMEOUT, _sse_events

        wf_id = self._id(run)
        path = API + _activity_path(wf_id, activity) + "logs/stream/"
        params = _log_params(attempt, stream)
        last, failures = 0, 0
        timeout = httpx.Timeout(TIMEOUT.connect, read=FOLLOW_READ_TIMEOUT)
        while True:
            try:
                with self._api.http.stream(
                    "GET", path, params={**params, "after": last}, timeout=timeout
                ) as resp:
                    if resp.status_code >= 400:
                        resp.read()
                        self._check(resp)
                    failures = 0
                    for event, data, _ in _sse_events(resp.iter_lines()):
                        if event == "end":
                            return
                        if event == "log":
                            last, chunk = _chunk(data)
                            yield chunk
            except httpx.TransportError as exc:
                failures += 1
                if failures > FOLLOW_RECONNECTS:
                    raise ServerUnreachable(
                        f"lost the server at {self.url}: {_transport(exc, self._secrets)}"
                    ) from None
                time.sleep(1.0)

    @staticmethod
    def _check(resp: Any) -> None:
        from akoflow.cli.client import ClientError, _check

        try:
            _check(resp)
        except ClientError as exc:
            _raise(exc)

    def cancel(self, run: RunRef) -> WorkflowState:
        """Ask the server to cancel the run (running activities stop); its state then.
        :class:`~akoflow.Conflict` when it already ended."""
        wf_id = self._id(run)
        return WorkflowState(self._call("POST", f"/workflows/{wf_id}/cancel/")["data"]["state"])

    def retry(self, run: RunRef) -> WorkflowState:
        """Run a failed or cancelled run again from where it stopped (succeeded activities
        kept); :class:`~akoflow.Conflict` for one that did not fail."""
        wf_id = self._id(run)
        return WorkflowState(self._call("POST", f"/workflows/{wf_id}/retry/")["data"]["state"])

    def runtimes(self) -> list[RuntimeStatus]:
        """The server's runtimes and their health."""
        return [_runtime_status(r) for r in self._call("GET", "/runtimes/")["data"]]


class AsyncClient:
    """:class:`Client` for ``asyncio`` (httpx): the same methods, awaited; use it as an
    ``async with`` block, or :meth:`aclose` it."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        state_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        from akoflow.cli.client import AsyncApi

        api, self._secrets = _connect(url, token, state_dir)
        api.http.close()  # only its address and headers are used
        shown = api.url
        api.url = str(api.http.base_url).rstrip("/")  # the address itself, to connect
        self._api: AsyncApi = AsyncApi(api)
        self._api.url = self.url = shown  # without user information

    def __repr__(self) -> str:
        return f"AsyncClient({self.url!r})"

    async def aclose(self) -> None:
        await self._api.http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        with _errors(self._secrets):
            return await self._api.call(method, path, **kwargs)

    async def _id(self, run: RunRef) -> int:
        if isinstance(run, int):
            return run
        from akoflow.cli.console import is_text

        params = {"name": run, "per_page": 1, "activities": "false"}
        page = await self._call("GET", "/workflows/", params=params) if is_text(run) else None
        if not page or not page["data"]:
            raise NotFound(f"no workflow {run!r}", 404)
        return int(page["data"][0]["id"])

    async def submit(self, workflow: Submittable) -> int:
        """See :meth:`Client.submit`."""
        body = _body(workflow)
        return int((await self._call("POST", "/workflows/", json=body))["workflow_id"])

    async def status(self, run: RunRef) -> RunStatus:
        """See :meth:`Client.status`."""
        from akoflow.cli.client import PAGE

        wf_id = await self._id(run)
        doc = await self._call("GET", f"/workflows/{wf_id}/", params={"activities": "false"})
        acts: list[Mapping[str, Any]] = []
        after = -1
        while True:
            page = await self._call(
                "GET", f"/workflows/{wf_id}/activities/", params={"limit": PAGE, "after": after}
            )
            acts += page["data"]
            if page["nextAfter"] is None:
                return _run_status(doc["data"], acts)
            after = page["nextAfter"]

    async def wait(
        self, run: RunRef, *, timeout: float | None = None, interval: float = 0.5
    ) -> RunStatus:
        """See :meth:`Client.wait`."""
        wf_id = await self._id(run)
        async with asyncio.timeout(timeout):
            while True:
                status = await self.status(wf_id)
                if status.done:
                    return status
                await asyncio.sleep(interval)

    async def logs(
        self, run: RunRef, activity: str, *, attempt: int | None = None, stream: str | None = None
    ) -> str:
        """See :meth:`Client.logs`."""
        wf_id = await self._id(run)
        base = _activity_path(wf_id, activity)
        if attempt is None:
            attempt = (await self._call("GET", base))["data"]["attempt"] or 1
        params = _log_params(attempt, stream)
        parts: list[str] = []
        after = 0
        while True:
            page = await self._call("GET", base + "logs/", params={**params, "after": after})
            parts += (c["data"] for c in page["data"])
            after = page["nextAfter"]
            if not page["data"] or page["complete"]:
                return "".join(parts)

    async def follow_logs(
        self, run: RunRef, activity: str, *, attempt: int | None = None, stream: str | None = None
    ) -> AsyncIterator[LogChunk]:
        """See :meth:`Client.follow_logs`."""
        import httpx

        from akoflow.cli.client import API, TIMEOUT, _sse_events

        wf_id = await self._id(run)
        path = API + _activity_path(wf_id, activity) + "logs/stream/"
        params = _log_params(attempt, stream)
        last, failures = 0, 0
        timeout = httpx.Timeout(TIMEOUT.connect, read=FOLLOW_READ_TIMEOUT)
        while True:
            try:
                async with self._api.http.stream(
                    "GET", path, params={**params, "after": last}, timeout=timeout
                ) as resp:
                    if resp.status_code >= 400:
                        await resp.aread()
                        Client._check(resp)
                    failures = 0
                    lines: list[str] = []
                    async for line in resp.aiter_lines():
                        lines.append(line)
                        if line:
                            continue
                        # One event is complete: parsed as the CLI parses its stream.
                        for event, data, _ in _sse_events(iter(lines)):
                            if event == "end":
                                return
                            if event == "log":
                                last, chunk = _chunk(data)
                                yield chunk
                        lines = []
            except httpx.TransportError as exc:
                failures += 1
                if failures > FOLLOW_RECONNECTS:
                    raise ServerUnreachable(
                        f"lost the server at {self.url}: {_transport(exc, self._secrets)}"
                    ) from None
                await asyncio.sleep(1.0)

    async def cancel(self, run: RunRef) -> WorkflowState:
        """See :meth:`Client.cancel`."""
        wf_id = await self._id(run)
        res = await self._call("POST", f"/workflows/{wf_id}/cancel/")
        return WorkflowState(res["data"]["state"])

    async def retry(self, run: RunRef) -> WorkflowState:
        """See :meth:`Client.retry`."""
        wf_id = await self._id(run)
        res = await self._call("POST", f"/workflows/{wf_id}/retry/")
        return WorkflowState(res["data"]["state"])

    async def runtimes(self) -> list[RuntimeStatus]:
        """See :meth:`Client.runtimes`."""
        return [_runtime_status(r) for r in (await self._call("GET", "/runtimes/"))["data"]]
