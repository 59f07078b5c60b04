"""Client mode: the CLI's commands against a server's REST API.

``submit``, ``status``, ``logs``, ``cancel``, ``retry`` and ``runtimes`` talk to the server at
``--server URL`` (or ``$AKOFLOW_SERVER``) with the token from ``$AKOFLOW_API_TOKEN`` or the
state dir's ``api-token`` file. Output and exit codes match the embedded commands: 0 every
activity succeeded, 1 something failed or was cancelled (or the server is unreachable), 2
invalid input (an invalid workflow, an unknown id, a refused token).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from akoflow import __version__, config
from akoflow.cli import progress
from akoflow.cli.console import is_text, shown
from akoflow.errors import AkoflowError
from akoflow.server.token import TOKEN_ENV, read_token_file
from akoflow.states import ActivityState, WorkflowState

SERVER_ENV = "AKOFLOW_SERVER"
DEFAULT_SERVER = "http://127.0.0.1:8080"
EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2
API = "/akoflow-api"
PAGE = 1000
TIMEOUT = httpx.Timeout(60.0, connect=10.0)

out = Console()
err = Console(stderr=True)


class ClientError(AkoflowError):
    def __init__(self, message: str, code: int, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class InvalidWorkflow(ClientError):
    def __init__(self, detail: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(detail, EXIT_INVALID, 422)
        self.errors = errors


def server_url(option: str | None, *, required: bool = False) -> str | None:
    """``--server``, else ``$AKOFLOW_SERVER``; for server-only commands, else the default."""
    url = option or os.environ.get(SERVER_ENV) or (DEFAULT_SERVER if required else None)
    return url.rstrip("/") if url else None


def resolve_token(state_dir: Path | None) -> str:
    env = os.environ.get(TOKEN_ENV, "").strip()
    if env:
        return env
    try:
        sdir = config.state_dir(state_dir)
    except (RuntimeError, OSError) as exc:  # a symlink loop, a name too long
        raise ClientError(f"cannot use the state dir {state_dir}: {exc}", EXIT_INVALID) from None
    stored = read_token_file(sdir)
    if stored:
        return stored
    raise ClientError(
        f"no API token: set {TOKEN_ENV}, or point --state-dir at the server's state dir "
        f"(looked for {sdir / 'api-token'})",
        EXIT_INVALID,
    )


def _check(resp: httpx.Response) -> Any:
    if resp.status_code < 400:
        return resp.json() if resp.content else None
    try:
        body = resp.json()
        detail = str(body.get("detail", resp.reason_phrase))
        errors = list(body.get("errors") or [])
    except (ValueError, AttributeError):
        detail, errors = resp.text or resp.reason_phrase, []
    if resp.status_code == 422:
        raise InvalidWorkflow(detail, errors)
    code = EXIT_INVALID if resp.status_code in (400, 401, 403, 404) else EXIT_FAILED
    raise ClientError(detail, code, resp.status_code)


class Api:
    """A thin synchronous client; one connection per command."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.headers = {"Authorization": f"Bearer {token}", "User-Agent": f"akoflow/{__version__}"}
        self.http = httpx.Client(base_url=url, headers=self.headers, timeout=TIMEOUT)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = self.http.request(method, API + path, **kwargs)
        except httpx.TransportError as exc:
            raise ClientError(
                f"cannot reach the server at {self.url}: {exc}", EXIT_FAILED
            ) from None
        return _check(resp)

    def workflow_id(self, ref: str) -> int:
        """An id, or the newest workflow with that name (as the embedded commands accept)."""
        if ref.isascii() and ref.isdigit():
            return int(ref)
        if not is_text(ref):
            raise ClientError(f"no workflow {shown(ref)}", EXIT_INVALID, 404)
        page = self.call(
            "GET", "/workflows/", params={"name": ref, "per_page": 1, "activities": "false"}
        )
        if not page["data"]:
            raise ClientError(f"no workflow {ref}", EXIT_INVALID, 404)
        return int(page["data"][0]["id"])

    def picked(self, wf_id: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """The ``limit`` activities `akoflow status ID` shows of a run, picked by the server's
        store (not succeeded first, in file order), and how many it has in all."""
        page = self.call(
            "GET", f"/workflows/{wf_id}/activities/", params={"picked": "true", "limit": limit}
        )
        return page["data"], int(page["total"])

    def activities(self, wf_id: int) -> list[dict[str, Any]]:
        acts: list[dict[str, Any]] = []
        after = -1
        while True:
            page = self.call(
                "GET", f"/workflows/{wf_id}/activities/", params={"limit": PAGE, "after": after}
            )
            acts += page["data"]
            if page["nextAfter"] is None:
                return acts
            after = page["nextAfter"]


def _report(exc: ClientError, source: str = "workflow") -> int:
    if isinstance(exc, InvalidWorkflow):
        n = len(exc.errors)
        err.print(f"[bold red]invalid workflow[/] {escape(source)}: {n} error{'s' * (n != 1)}")
        for e in exc.errors:
            line = e.get("line")
            where = f"{source}:{line}" if line else source
            path = f"[bold]{escape(str(e.get('path')))}[/]: " if e.get("path") else ""
            err.print(f"  {escape(where)}: {path}{escape(str(e.get('message', '')))}")
        if not exc.errors:
            err.print(f"  {escape(str(exc))}")
    else:
        hint = ""  # the server's detail stays the error's message (the Python API's too)
        if exc.status == 401:
            hint = f" (the server refused the token: check {TOKEN_ENV} or --state-dir)"
        err.print(f"[bold red]error:[/] {escape(str(exc) + hint)}")
    return exc.code


def _connect(url: str, state_dir: Path | None, token: str | None = None) -> Api:
    try:
        scheme = httpx.URL(url).scheme
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise ClientError(f"invalid server URL {url!r}: {exc}", EXIT_INVALID) from None
    if scheme not in ("http", "https"):
        raise ClientError(
            f"invalid server URL {url!r}: it starts with http:// or https://", EXIT_INVALID
        )
    return Api(url, token or resolve_token(state_dir))


# --------------------------------------------------------------------- snapshot of a run


@dataclass(eq=False)
class RemoteActivity:
    name: str
    runtime: str
    state: ActivityState
    attempt: int
    exit_code: int | None
    reason: str | None
    started_at: float | None
    finished_at: float | None
    node: str | None = None


@dataclass(eq=False)
class RemoteRun:
    """What the progress views need, refreshed from the server."""

    id: int
    name: str
    state: WorkflowState
    data_dir: Path
    started_at: float | None
    finished_at: float | None
    activities: dict[str, RemoteActivity] = field(default_factory=dict)


def _activity(a: Mapping[str, Any]) -> RemoteActivity:
    return RemoteActivity(
        name=a["name"],
        runtime=a["runtime"],
        state=ActivityState(a["state"]),
        attempt=a["attempt"],
        exit_code=a["exitCode"],
        reason=a["reason"],
        started_at=a["startedAt"],
        finished_at=a["finishedAt"],
        node=a.get("node"),
    )


class AsyncApi:
    def __init__(self, api: Api) -> None:
        self.url = api.url
        self.http = httpx.AsyncClient(base_url=api.url, headers=api.headers, timeout=TIMEOUT)

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = await self.http.request(method, API + path, **kwargs)
        except httpx.TransportError as exc:
            raise ClientError(
                f"cannot reach the server at {self.url}: {exc}", EXIT_FAILED
            ) from None
        return _check(resp)

    async def refresh(self, run: RemoteRun | None, wf_id: int) -> RemoteRun:
        doc = (await self.call("GET", f"/workflows/{wf_id}/", params={"activities": "false"}))[
            "data"
        ]
        acts: dict[str, RemoteActivity] = {}
        after = -1
        while True:
            page = await self.call(
                "GET", f"/workflows/{wf_id}/activities/", params={"limit": PAGE, "after": after}
            )
            for a in page["data"]:
                acts[a["name"]] = _activity(a)
            if page["nextAfter"] is None:
                break
            after = page["nextAfter"]
        times = doc["times"]
        if run is None:
            run = RemoteRun(
                id=doc["id"],
                name=doc["name"],
                state=WorkflowState(doc["state"]),
                data_dir=Path(doc["dataDir"]),
                started_at=times["startedAt"],
                finished_at=times["finishedAt"],
            )
        run.state = WorkflowState(doc["state"])
        run.started_at, run.finished_at = times["startedAt"], times["finishedAt"]
        run.activities = acts
        return run

    async def stderr_tail(self, wf_id: int, act: RemoteActivity, lines: int) -> list[str]:
        page = await self.call(
            "GET",
            f"/workflows/{wf_id}/activities/{act.name}/logs/",
            params={"attempt": max(1, act.attempt), "stream": "stderr"},
        )
        text = "".join(c["data"] for c in page["data"])
        return text.rstrip("\n").splitlines()[-lines:]


def _result_json(run: RemoteRun) -> dict[str, Any]:
    return progress.run_json(
        id=run.id,
        name=run.name,
        state=run.state,
        data_dir=str(run.data_dir),
        started_at=run.started_at,
        finished_at=run.finished_at,
        activities=run.activities.values(),
    )


async def _failure_details(api: AsyncApi, run: RemoteRun, *, most: int = 3) -> None:
    """As the embedded ``run`` shows them: the end of stderr of the first failed activities."""
    failed = [a for a in run.activities.values() if a.state is ActivityState.FAILED][:most]
    for act in failed:
        tail = await api.stderr_tail(run.id, act, 5)
        out.print(
            Text.assemble(
                ("✗ ", "bold red"),
                (act.name, "bold"),
                f" ({act.reason or 'failed'}); ",
                (f"akoflow logs {run.id} {act.name} --server {api.url}", "cyan"),
            )
        )
        for line in tail:
            out.print(Text("    " + line, style="dim"))


async def _watch(api: Api, wf_id: int, *, quiet: bool, as_json: bool) -> int:
    """Follow a run on the server to its end with the embedded views; the exit code of
    ``akoflow run``."""
    remote = AsyncApi(api)
    try:
        run = await remote.refresh(None, wf_id)
        done: asyncio.Future[WorkflowState] = asyncio.get_running_loop().create_future()

        async def poll() -> None:
            try:
                while not run.state.is_final:
                    interval = 0.5 if len(run.activities) <= PAGE else 2.0
                    await asyncio.sleep(interval)
                    await remote.refresh(run, wf_id)
                done.set_result(run.state)
            except Exception as exc:
                done.set_exception(exc)

        poller = asyncio.create_task(poll())
        if not quiet and not as_json:
            await progress.follow(run, out, done)
        await poller
        state = await done
        if as_json:
            out.print_json(json.dumps(_result_json(run)))
        elif not quiet:
            progress.summary(run, out)
            await _failure_details(remote, run)
        return EXIT_OK if state is WorkflowState.SUCCEEDED else EXIT_FAILED
    finally:
        await remote.http.aclose()


def _wait(api: Api, wf_id: int, *, quiet: bool, as_json: bool) -> int:
    try:
        return asyncio.run(_watch(api, wf_id, quiet=quiet, as_json=as_json))
    except KeyboardInterrupt:
        err.print(
            f"[yellow]stopped watching: workflow {wf_id} goes on on the server "
            f"(akoflow cancel {wf_id} --server {api.url} stops it)[/]"
        )
        return EXIT_FAILED


# -------------------------------------------------------------------------------- commands


def submit(
    url: str, file: Path, *, state_dir: Path | None, wait: bool, quiet: bool, as_json: bool
) -> int:
    from akoflow.service import read_workflow_bytes, shown_path
    from akoflow.spec import WorkflowValidationError

    try:  # bounded, and no hang on a FIFO, as `akoflow run` reads it
        data = read_workflow_bytes(file)
    except WorkflowValidationError as exc:
        for e in exc.errors:
            err.print(f"[bold red]error:[/] {escape(shown_path(file))}: {escape(e.message)}")
        return EXIT_INVALID
    try:
        api = _connect(url, state_dir)
        res = api.call(
            "POST", "/workflows/", json={"workflow": base64.b64encode(data).decode("ascii")}
        )
        wf_id = int(res["workflow_id"])
        if not wait:
            if as_json:
                out.print_json(json.dumps(res))
            elif not quiet:
                out.print(
                    f"submitted [bold cyan]{escape(res['workflow_entity'])} #{wf_id}[/] "
                    f"to {escape(url)}"
                )
            return EXIT_OK
        if not quiet and not as_json:
            err.print(f"submitted {escape(res['workflow_entity'])} #{wf_id} to {escape(url)}")
        return _wait(api, wf_id, quiet=quiet, as_json=as_json)
    except ClientError as exc:
        return _report(exc, shown_path(file))


def status(
    url: str,
    ref: str | None,
    *,
    state_dir: Path | None,
    as_json: bool,
    limit: int,
    show_all: bool = False,
) -> int:
    try:
        api = _connect(url, state_dir)
        if ref is None:
            _status_list(api, as_json, limit)
        else:
            _status_one(api, api.workflow_id(ref), as_json, show_all)
        return EXIT_OK
    except ClientError as exc:
        return _report(exc)


def _status_list(api: Api, as_json: bool, limit: int) -> None:
    rows = api.call(
        "GET", "/workflows/", params={"per_page": max(1, min(limit, 1000)), "activities": "false"}
    )["data"]
    runs = [
        progress.RunRow(
            w["id"],
            w["name"],
            w["state"],
            w["times"]["createdAt"],
            w["times"]["startedAt"],
            w["times"]["finishedAt"],
            sum(n for s, n in w["activityStates"].items() if ActivityState(s).is_final),
            w["activityCount"],
        )
        for w in rows
    ]
    progress.print_runs(out, runs, as_json=as_json)


def _status_one(api: Api, wf_id: int, as_json: bool, show_all: bool) -> None:
    w = api.call("GET", f"/workflows/{wf_id}/", params={"activities": "false"})["data"]
    if as_json or show_all:
        acts = [_activity(a) for a in api.activities(wf_id)]
        total = len(acts)
    else:  # the rows shown only, never every activity of a big run
        picked, total = api.picked(wf_id, progress.STATUS_ROWS)
        acts = [_activity(a) for a in picked]
    t = w["times"]
    holds = [  # a server older than this client sends none
        progress.Hold(h["runtime"], h["reason"], h["notReadyFor"], h["activities"])
        for h in w.get("holds", [])
    ]
    if as_json:
        doc = progress.run_json(
            id=w["id"],
            name=w["name"],
            state=w["state"],
            data_dir=w["dataDir"],
            started_at=t["startedAt"],
            finished_at=t["finishedAt"],
            activities=acts,
            holds=holds,
        )
        out.print_json(json.dumps(doc))
        return
    out.print(
        f"[bold]workflow[/] [bold cyan]{escape(w['name'])} #{w['id']}[/] ",
        progress.styled(w["state"]),
    )
    out.print(f"[dim]data: {escape(w['dataDir'])}[/]")
    counts = {ActivityState(s): n for s, n in w["activityStates"].items()}
    progress.print_status(out, acts, total - len(acts), counts)
    for hold in holds:
        out.print(progress.hold_line(hold))


def logs(
    url: str,
    ref: str,
    activity: str,
    *,
    state_dir: Path | None,
    attempt: int | None,
    stream: str | None,
    follow: bool,
) -> int:
    try:
        api = _connect(url, state_dir)
        wf_id = api.workflow_id(ref)
        missing = ClientError(f"workflow {wf_id} has no activity {shown(activity)}", EXIT_INVALID)
        if not is_text(activity):
            raise missing
        name = urllib.parse.quote(activity, safe="")
        try:
            act = api.call("GET", f"/workflows/{wf_id}/activities/{name}/")["data"]
        except ClientError as exc:
            if exc.status == 404:
                raise missing from None
            raise
        base = f"/workflows/{wf_id}/activities/{name}/logs/"
        params: dict[str, Any] = {"stream": stream} if stream else {}
        if follow:
            if attempt is not None:
                params["attempt"] = attempt
            _follow(api, base + "stream/", params, split=stream is None)
            return EXIT_OK
        params["attempt"] = attempt or act["attempt"] or 1
        after = 0
        while True:
            page = api.call("GET", base, params={**params, "after": after, "limit": 10_000})
            for chunk in page["data"]:
                _write(chunk, split=stream is None)
            after = page["nextAfter"]
            if not page["data"] or page["complete"]:
                return EXIT_OK
    except ClientError as exc:
        return _report(exc)


def _write(chunk: Mapping[str, Any], *, split: bool) -> None:
    target = sys.stderr if split and chunk["stream"] == "stderr" else sys.stdout
    target.write(chunk["data"])
    target.flush()


def _sse_events(lines: Iterator[str]) -> Iterator[tuple[str, str, str | None]]:
    """(event, data, id) of a Server-Sent Events stream."""
    event, event_id = "message", None
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield event, "\n".join(data), event_id
            event, data, event_id = "message", [], None
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
            elif name == "id":
                event_id = value


def _follow(api: Api, path: str, params: dict[str, Any], *, split: bool) -> None:
    """Print the live stream until the activity ends; reconnect (from the last chunk) when the
    connection drops, e.g. while the server restarts."""
    last = 0
    shown_attempt: int | None = None
    failures = 0
    timeout = httpx.Timeout(TIMEOUT.connect, read=None)
    while True:
        try:
            with api.http.stream(
                "GET", API + path, params={**params, "after": last}, timeout=timeout
            ) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    _check(resp)
                failures = 0
                for event, data, _ in _sse_events(resp.iter_lines()):
                    if event == "end":
                        return
                    if event != "log":
                        continue
                    chunk = json.loads(data)
                    if shown_attempt is not None and chunk["attempt"] != shown_attempt:
                        err.print(f"[dim]--- attempt {chunk['attempt']} ---[/]")
                    shown_attempt = chunk["attempt"]
                    last = chunk["id"]
                    _write(chunk, split=split)
        except httpx.TransportError as exc:
            failures += 1
            if failures > 30:
                raise ClientError(f"lost the server at {api.url}: {exc}", EXIT_FAILED) from None
            time.sleep(1.0)


def cancel(url: str, ref: str, *, state_dir: Path | None) -> int:
    try:
        api = _connect(url, state_dir)
        wf_id = api.workflow_id(ref)
        try:
            res = api.call("POST", f"/workflows/{wf_id}/cancel/")["data"]
        except ClientError as exc:
            if exc.status != 409:
                raise
            err.print(escape(str(exc)))
            return EXIT_OK
        out.print(f"cancel requested: the server is stopping run {res['id']} ({res['name']})")
        return EXIT_OK
    except ClientError as exc:
        return _report(exc)


def retry(url: str, ref: str, *, state_dir: Path | None, quiet: bool, as_json: bool) -> int:
    try:
        api = _connect(url, state_dir)
        wf_id = api.workflow_id(ref)
        try:
            api.call("POST", f"/workflows/{wf_id}/retry/")
        except ClientError as exc:
            if exc.status == 409:
                exc.code = EXIT_FAILED
            raise
        return _wait(api, wf_id, quiet=quiet, as_json=as_json)
    except ClientError as exc:
        return _report(exc)


def runtimes(url: str, *, state_dir: Path | None, as_json: bool) -> int:
    try:
        api = _connect(url, state_dir)
        rows = api.call("GET", "/runtimes/")["data"]
    except ClientError as exc:
        return _report(exc)
    if as_json:
        out.print_json(json.dumps(rows))
        return EXIT_OK
    table = Table(box=None, header_style="bold")
    for col in ("runtime", "kind", "status", "reason", "config"):
        table.add_column(col)
    for r in rows:
        ready = r["state"] == "READY"
        table.add_row(
            escape(r["name"]),
            escape(r["kind"]),
            Text(r["state"], style="green" if ready else "bold red"),
            escape(r["reason"] or ""),
            escape(" ".join(f"{k}={v}" for k, v in sorted(r["metadata"].items()))),
        )
    out.print(table)
    return EXIT_OK


def check_runtime(
    url: str, name: str, *, state_dir: Path | None, image: str | None, as_json: bool
) -> int:
    """``akoflow runtimes check NAME --server URL``: the server checks its runtime (with its
    settings and its view of the network) and the result shows as the embedded one does."""
    from akoflow.cli.checks import render

    if not is_text(name):
        return _report(ClientError(f"no runtime {shown(name)}", EXIT_INVALID, 404))
    params = {"image": image} if image is not None else {}
    try:
        api = _connect(url, state_dir)
        path = f"/runtimes/{urllib.parse.quote(name, safe='')}/check"
        report = api.call("GET", path, params=params)["data"]
    except ClientError as exc:
        return _report(exc)
    if as_json:
        out.print_json(json.dumps(report))
    else:
        render(report, out)
    return EXIT_OK if report["ok"] else EXIT_FAILED
