"""``akoflow delete``, ``akoflow gc``, ``akoflow files`` and ``akoflow download``: their work
on a local state dir or through a server (``--server``), and how their results are shown.

Both ways produce the same JSON report (:meth:`akoflow.gc.Report.to_json`), shown the same
way. Exit codes: 0 done, 1 a run was refused (it runs) or the server is unreachable, 2 bad
input (an unknown id, an option that is not one).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from akoflow.cli import client
from akoflow.humanize import fmt_bytes

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2

out = Console()
err = Console(stderr=True)


def _bytes(n: int | None) -> str:
    return "unknown size" if n is None else f"{n:,} bytes ({fmt_bytes(n)})"


def render(doc: dict[str, Any], console: Console) -> None:
    """A gc or delete report for people."""
    would = "would delete" if doc["dryRun"] else "deleted"
    for run in doc["deleted"]:
        console.print(
            f"{would} run {run['id']} ({escape(run['name'])}, {run['state']}): "
            f"{_bytes(run['freedBytes'])} here"
        )
        for note in run["left"]:
            console.print(f"  [yellow]left here:[/] {escape(note)}")
        for remote in run["remote"]:
            _remote_line(remote, console)
    for refused in doc["refused"]:
        console.print(f"[bold red]refused[/] run {refused['id']}: {escape(refused['reason'])}")
    for remote in doc["remote"]:
        console.print(f"earlier deletion of run {remote['workflowId']}:")
        _remote_line(remote, console)
    for orphan in doc["orphans"]:
        what = "would remove" if doc["dryRun"] else "removed"
        console.print(
            f"{what} {escape(orphan['path'])} (no run has it): {_bytes(orphan['freedBytes'])}"
        )
    for note in doc.get("left", []):
        console.print(f"  [yellow]left here:[/] {escape(note)}")
    if not (doc["deleted"] or doc["refused"] or doc["remote"] or doc["orphans"]):
        console.print("nothing to delete")
    total = f"{_bytes(doc['freedBytes'])} {'would be ' if doc['dryRun'] else ''}freed here"
    if not doc["dryRun"]:
        total += f", {_bytes(doc['databaseBytes'])} of database given back"
    console.print(total)


def _remote_line(remote: dict[str, Any], console: Console) -> None:
    name = escape(remote["runtime"])
    if remote["left"] == "(dry run)":
        console.print(f"  {name}: its objects there would be removed")
    elif remote["left"] is not None:
        console.print(
            f"  [yellow]{name}: left there[/] ({escape(remote['left'])}); the next gc tries again"
        )
    else:
        removed = remote["removed"]
        size = "" if remote["bytes"] is None else f", {_bytes(remote['bytes'])}"
        console.print(f"  {name}: removed {len(removed)} object(s){size}")
        for item in removed[:20]:
            console.print(f"    {escape(item)}", soft_wrap=True)
        if len(removed) > 20:
            console.print(f"    ... and {len(removed) - 20} more")


def exit_code(doc: dict[str, Any]) -> int:
    return EXIT_FAILED if doc["refused"] else EXIT_OK


# ------------------------------------------------------------------------------ local


def delete_local(repo: Any, state_dir: Path, ids: list[int], *, dry_run: bool) -> dict[str, Any]:
    from akoflow.gc import Collector

    report = asyncio.run(Collector(repo, state_dir).delete(ids, dry_run=dry_run))
    return report.to_json()


def gc_local(repo: Any, state_dir: Path, options: Any) -> dict[str, Any]:
    from akoflow.gc import Collector

    collector = Collector(repo, state_dir)
    report = asyncio.run(
        collector.collect(
            older_than=options.older_than, keep_last=options.keep_last, dry_run=options.dry_run
        )
    )
    return report.to_json()


# ------------------------------------------------------------------------------ server


def delete_remote(url: str, ids: list[int], *, state_dir: Path | None) -> dict[str, Any]:
    """``DELETE`` each run; the reports merged into one. ClientError for a refused token, an
    unreachable server; a run that is not there or not finished is reported refused."""
    api = client._connect(url, state_dir)
    merged: dict[str, Any] = {
        "dryRun": False,
        "deleted": [],
        "refused": [],
        "remote": [],
        "orphans": [],
        "freedBytes": 0,
        "databaseBytes": 0,
    }
    for wf_id in ids:  # an unknown id: exit 2 before anything is deleted
        api.call("GET", f"/workflows/{wf_id}/", params={"activities": "false"})
    for wf_id in ids:
        try:
            doc = api.call("DELETE", f"/workflows/{wf_id}/")["data"]["report"]
        except client.ClientError as exc:
            if exc.status not in (404, 409):
                raise
            merged["refused"].append({"id": wf_id, "reason": str(exc)})
            continue
        for key in ("deleted", "refused", "remote", "orphans"):
            merged[key] += doc[key]
        merged["freedBytes"] += doc["freedBytes"]
        merged["databaseBytes"] += doc["databaseBytes"]
    return merged


def gc_remote(url: str, options: Any, raw_age: str | None, *, state_dir: Path | None) -> Any:
    api = client._connect(url, state_dir)
    body = {"olderThan": raw_age, "keepLast": options.keep_last, "dryRun": options.dry_run}
    return api.call("POST", "/gc", json=body, timeout=None)["data"]


# ------------------------------------------------------------------------------ files


def show_files(rows: list[dict[str, Any]], *, as_json: bool) -> None:
    if as_json:
        out.print_json(data=rows)
        return
    table = Table(box=None, header_style="bold")
    for column in ("path", "activity", "size", "sha256"):
        table.add_column(column, overflow="fold")
    for row in rows:
        origin = row["activity"] or f"({row['origin']})"
        table.add_row(escape(row["path"]), escape(origin), str(row["size"]), row["sha256"] or "-")
    out.print(table)


def files_remote(url: str, wf: str, *, state_dir: Path | None) -> list[dict[str, Any]]:
    api = client._connect(url, state_dir)
    wf_id = api.workflow_id(wf)
    rows: list[dict[str, Any]] = []
    while True:
        page = api.call(
            "GET", f"/workflows/{wf_id}/files/", params={"limit": 1000, "offset": len(rows)}
        )
        rows += page["data"]
        if not page["data"] or len(rows) >= page["total"]:
            return rows


def files_local(repo: Any, rec: Any) -> list[dict[str, Any]]:
    """The server's own listing (lineage, sizes, hashes), read from the store and data dir."""
    from types import SimpleNamespace

    from akoflow.server.routes.common import Paging
    from akoflow.server.routes.files import _list

    root = os.path.realpath(rec.data_dir)
    listed, _ = _list(SimpleNamespace(repo=repo), rec.id, root, Paging(limit=1 << 62, offset=0))  # type: ignore[arg-type]
    return [f.model_dump() for f in listed]


def encoded_path(path: str, *, encoded: bool) -> str:
    """The path as the API takes it: percent-encoded bytes (a name that is not UTF-8 comes
    from the command line as the bytes the shell gave)."""
    if encoded:
        return path
    return urllib.parse.quote(os.fsencode(path), safe="/")


def default_output(path: str, *, encoded: bool) -> Path:
    raw = urllib.parse.unquote_to_bytes(path) if encoded else os.fsencode(path)
    name = raw.rstrip(b"/").rsplit(b"/", 1)[-1]
    return Path(os.fsdecode(name or b"download"))


def download_remote(
    url: str, wf: str, path: str, chunks_to: Any, *, state_dir: Path | None, encoded: bool
) -> None:
    """Stream the file into ``chunks_to`` (a binary file object)."""
    api = client._connect(url, state_dir)
    wf_id = api.workflow_id(wf)
    target = f"{client.API}/workflows/{wf_id}/files/{encoded_path(path, encoded=encoded)}"
    try:
        with api.http.stream("GET", target, timeout=httpx.Timeout(60, read=None)) as resp:
            if resp.status_code >= 400:
                resp.read()
                client._check(resp)
            for chunk in resp.iter_bytes(1 << 20):
                chunks_to.write(chunk)
    except httpx.TransportError as exc:
        raise client.ClientError(f"cannot reach the server at {url}: {exc}", EXIT_FAILED) from None


def download_local(rec: Any, path: str, chunks_to: Any, *, encoded: bool) -> None:
    """Copy the file from the run's data dir as the server serves it (no link followed,
    nothing outside the data dir). ValueError with the reason when it cannot be."""
    from akoflow.server.datadir import NotServed, PathRefused, open_beneath, relative_parts

    try:
        parts = relative_parts(encoded_path(path, encoded=encoded).encode("ascii"))
        fd = open_beneath(os.path.realpath(rec.data_dir), parts)
    except (PathRefused, NotServed, UnicodeEncodeError) as exc:
        raise ValueError(str(exc)) from None
    with os.fdopen(fd, "rb") as source:
        for chunk in iter(lambda: source.read(1 << 20), b""):
            chunks_to.write(chunk)


class Output:
    """Where a download goes: stdout (``-``), or a file written whole under a temporary name
    in its directory and renamed into place (a failed download leaves nothing)."""

    def __init__(self, target: Path | None) -> None:
        self.target = target
        self._tmp: str | None = None

    def __enter__(self) -> Any:
        if self.target is None:
            return sys.stdout.buffer
        directory = self.target.parent
        fd, self._tmp = tempfile.mkstemp(prefix=".akoflow-download-", dir=directory)
        self._file = os.fdopen(fd, "wb")
        return self._file

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        if self.target is None:
            sys.stdout.buffer.flush()
            return
        self._file.close()
        assert self._tmp is not None
        if kind is None:
            os.replace(self._tmp, self.target)
        else:
            os.unlink(self._tmp)


__all__ = [
    "Output",
    "delete_local",
    "delete_remote",
    "download_local",
    "download_remote",
    "exit_code",
    "files_local",
    "files_remote",
    "gc_local",
    "gc_remote",
    "render",
    "show_files",
]
