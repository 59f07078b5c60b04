"""A run's files: the list of its data dir (with what the lineage knows of each), a download
(streamed, one byte range), and a tar of a subtree (streamed). See :mod:`..datadir` for how
paths are read and opened safely."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.convertors import PathConvertor, register_url_convertor
from starlette.types import Receive, Scope, Send

from akoflow.provenance.names import display, encoded, is_text, portable_name
from akoflow.server import views
from akoflow.server.auth import require_token
from akoflow.server.context import ServerContext, get_context
from akoflow.server.datadir import (
    DiskFile,
    NotServed,
    PathRefused,
    RangeNotSatisfiable,
    open_beneath,
    parse_range,
    raw_tail,
    read_span,
    relative_parts,
    tar_stream,
    walk_files,
)
from akoflow.server.errors import ApiError
from akoflow.server.routes.common import E400, E401, E404, Paging, WorkflowId, find_workflow, paging
from akoflow.server.schemas import ErrorBody, Page
from akoflow.store import Repository

Ctx = Annotated[ServerContext, Depends(get_context)]
Archive = Annotated[
    Literal["tar"] | None,
    Query(description="`tar`: a tar of this directory (the data dir itself on `files/`)."),
]


class AnyPath(PathConvertor):
    """Starlette's ``path`` with newlines too (``.*`` stops at one; a name may hold one)."""

    regex = r"[\s\S]*"


register_url_convertor("anypath", AnyPath())

router = APIRouter(
    prefix="/akoflow-api",
    tags=["files"],
    dependencies=[Depends(require_token)],
    responses={**E400, **E401, **E404},
)

# A file is served as bytes to save, never as a page of this origin (an activity's HTML
# would run with the UI's token otherwise).
DOWNLOAD_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cache-Control": "no-cache",
}


class LocationOut(BaseModel):
    location: str = Field(description="'' for the engine host's data dir, else a cluster's.")
    size: int
    sha256: str | None
    fresh: bool = Field(description="Newer there than on the engine host (not fetched yet).")


class FileOut(BaseModel):
    path: str = Field(description="The path for people (`\\xNN` where not plain text).")
    pathEncoded: str = Field(description="The path's bytes percent-encoded: lossless.")
    url: str = Field(description="Its download: GET this path with the token.")
    size: int
    mtime: float
    sha256: str | None = Field(
        description="The recorded hash of the version now on disk (None when no recorded "
        "version has its size and time: provenance off, or changed since)."
    )
    origin: Literal["generated", "input", "ambiguous", "copied", "unrecorded"]
    activity: str | None = Field(description="The activity that generated it (the lineage's).")
    attempt: int | None
    candidates: list[str] = Field(description="Ambiguous: the activities that may have.")
    copiedFrom: str | None = Field(description="The location it was copied from, if copied.")
    locations: list[LocationOut]


@dataclass(frozen=True, slots=True)
class _Version:
    """A recorded version of a path on the engine host, and where it came from."""

    origin: str
    at: float  # when it was made (its time, or the copy's end): the latest one wins
    size: int
    mtime: float | None  # None: a copy, whose host file's time is not recorded
    sha256: str | None
    activity: str | None = None
    attempt: int | None = None
    candidates: tuple[str, ...] = ()


def _versions(repo: Repository, wf_id: int) -> dict[str, tuple[_Version, str | None]]:
    """Path -> (its latest recorded version on the engine host, the location it was copied
    from or None), from the lineage's records."""
    latest: dict[str, tuple[_Version, str | None]] = {}
    remote: dict[tuple[str, str], _Version] = {}

    def keep(path: str, version: _Version, source: str | None = None) -> None:
        seen = latest.get(path)
        if seen is None or version.at >= seen[0].at:
            latest[path] = (version, source)

    for i in repo.list_initial_files(wf_id):
        if not i.location:
            keep(i.path, _Version("input", i.mtime, i.size, i.mtime, i.sha256))
    for f in repo.list_files(wf_id):
        if f.role != "generated":
            continue
        version = _Version("generated", f.mtime, f.size, f.mtime, f.sha256, f.activity, f.attempt)
        if f.location:
            remote[(f.location, f.path)] = version
        else:
            keep(f.path, version)
    for a in repo.list_ambiguous_files(wf_id):
        if not a.location:
            names = tuple(c.activity for c in a.candidates)
            keep(
                a.path, _Version("ambiguous", a.mtime, a.size, a.mtime, a.sha256, candidates=names)
            )
    for c in repo.list_data_copies(wf_id):
        if c.destination:
            continue
        made = remote.get((c.source, c.path))
        keep(
            c.path,
            _Version(
                "copied",
                c.ended_at,
                c.bytes,
                None,
                c.sha256,
                made.activity if made else None,
                made.attempt if made else None,
            ),
            c.source,
        )
    return latest


def _list(ctx: ServerContext, wf_id: int, root: str, page: Paging) -> tuple[list[FileOut], int]:
    files = walk_files(root)
    shown_files = files[page.offset : page.offset + page.limit]
    versions = _versions(ctx.repo, wf_id)
    replicas: dict[str, list[LocationOut]] = {}
    for (location, path), r in sorted(ctx.repo.data_replicas(wf_id).items()):
        there = LocationOut(location=location, size=r.size, sha256=r.sha256, fresh=r.fresh)
        replicas.setdefault(path, []).append(there)
    return [_file_out(wf_id, f, versions.get(f.path), replicas) for f in shown_files], len(files)


def _file_out(
    wf_id: int,
    f: DiskFile,
    found: tuple[_Version, str | None] | None,
    replicas: dict[str, list[LocationOut]],
) -> FileOut:
    version, source = found if found else (None, None)
    same = (
        version is not None
        and version.size == f.size
        and (version.mtime is None or abs(version.mtime - f.mtime) < 1e-6)
    )
    sha256 = version.sha256 if same and version else None
    path_encoded = encoded(f.path)
    return FileOut(
        path=display(f.path),
        pathEncoded=path_encoded,
        url=f"/akoflow-api/workflows/{wf_id}/files/{path_encoded}",
        size=f.size,
        mtime=f.mtime,
        sha256=sha256,
        origin=version.origin if version else "unrecorded",  # type: ignore[arg-type]
        activity=version.activity if version else None,
        attempt=version.attempt if version else None,
        candidates=list(version.candidates) if version else [],
        copiedFrom=source,
        locations=[
            LocationOut(
                location="",
                size=f.size,
                sha256=sha256,
                fresh=False,
            ),  # fmt: skip
            *replicas.get(f.path, []),
        ],
    )


def _root(ctx: ServerContext, wf_id: int) -> str:
    return os.path.realpath(find_workflow(ctx, wf_id).data_dir)  # the data dir itself: trusted


@router.get(
    "/workflows/{workflow_id}/files/",
    response_model=Page[FileOut],
    summary="The files of a run's data dir (links left out), with their lineage; "
    "?archive=tar: a tar of them all",
)
async def list_files(
    ctx: Ctx,
    workflow_id: WorkflowId,
    page: Annotated[Paging, Depends(paging(1000))],
    archive: Archive = None,
) -> Any:
    """Sorted by path (its bytes). Each file: its path for people and percent-encoded (its
    download is `files/<pathEncoded>`), size and time on disk, the activity that generated it
    (`origin` `generated`), or `input` (there before the run), `ambiguous` (with the
    candidates), `copied` (fetched from a cluster, with the activity that wrote it there),
    `unrecorded` (no record: provenance off, or written by no activity); its recorded hash
    when the version on disk is the recorded one; and every location that holds a copy."""
    root = _root(ctx, workflow_id)
    if archive == "tar":
        return await _tar(root, [], workflow_id)
    data, total = await asyncio.to_thread(_list, ctx, workflow_id, root, page)
    return Page(data=data, timestamp=views.now(), total=total, limit=page.limit,
                offset=page.offset)  # fmt: skip


E416: dict[int | str, dict[str, Any]] = {
    416: {"model": ErrorBody, "description": "A Range that cannot be served (one range only)."}
}


@router.get(
    "/workflows/{workflow_id}/files/{path:anypath}",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "The file's bytes."},
        206: {"description": "The requested range."},
        **E416,
    },
    summary="Download a file of a run's data dir (one Range), or ?archive=tar a directory",
)
async def download(
    request: Request, ctx: Ctx, workflow_id: WorkflowId, path: str, archive: Archive = None
) -> Any:
    """`path` is relative to the data dir, percent-encoded as `pathEncoded` in the list (any
    byte of a name). Refused: `..`, `.`, an absolute path, NUL (400); a symbolic link at any
    depth, a missing file (404). Links are never followed, nor archived."""
    root = _root(ctx, workflow_id)
    try:
        parts = relative_parts(raw_tail(request.scope.get("raw_path") or _fallback(request)))
    except PathRefused as exc:
        raise ApiError(400, str(exc)) from None
    except NotServed as exc:
        raise ApiError(404, str(exc)) from None
    if archive == "tar":
        return await _tar(root, parts, workflow_id)
    fd = await _open(root, parts, workflow_id, directory=False)
    try:
        return _file_response(fd, parts, request.headers)
    except BaseException:
        os.close(fd)
        raise


def _fallback(request: Request) -> bytes:
    return quote(request.scope["path"], safe="/").encode()


async def _open(root: str, parts: list[str], wf_id: int, *, directory: bool) -> int:
    try:
        return await asyncio.to_thread(open_beneath, root, parts, directory=directory)
    except NotServed as exc:
        raise ApiError(404, f"workflow {wf_id}: {exc}") from None


def _file_response(fd: int, parts: list[str], headers: Any) -> StreamingResponse:
    info = os.fstat(fd)
    size = info.st_size
    etag = f'"{info.st_ino:x}-{size:x}-{info.st_mtime_ns:x}"'
    out = {
        **DOWNLOAD_HEADERS,
        "Accept-Ranges": "bytes",
        "ETag": etag,
        "Content-Disposition": _disposition(parts[-1]),
    }
    wanted = headers.get("range")
    if_range = headers.get("if-range")
    span = None
    if wanted is not None and (if_range is None or if_range.strip() == etag):
        try:
            span = parse_range(wanted, size)
        except RangeNotSatisfiable as exc:
            raise ApiError(416, str(exc), headers={"Content-Range": f"bytes */{size}"}) from None
    if span is not None:
        first, last = span
        length = last - first + 1
        out |= {"Content-Range": f"bytes {first}-{last}/{size}", "Content-Length": str(length)}
        return FileStream(fd, read_span(fd, first, length), 206, out)
    out["Content-Length"] = str(size)
    return FileStream(fd, read_span(fd, 0, size), 200, out)


def _disposition(name: str) -> str:
    """RFC 6266: an ASCII fallback and the UTF-8 name (a name that is not UTF-8 goes by its
    portable form)."""
    text = name if is_text(name) else portable_name(name)
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_"
                       for c in text)  # fmt: skip
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(text, safe='')}"


async def _tar(root: str, parts: list[str], wf_id: int) -> StreamingResponse:
    fd = await _open(root, parts, wf_id, directory=True)
    base = "/".join(parts)
    name = (parts[-1] if parts else f"workflow-{wf_id}-files") + ".tar"
    headers = {**DOWNLOAD_HEADERS, "Content-Disposition": _disposition(name)}
    return FileStream(fd, tar_stream(fd, base), 200, headers, media_type="application/x-tar")


class FileStream(StreamingResponse):
    """A streamed body that closes its file descriptor however the response ends (sent,
    client gone, never started)."""

    def __init__(
        self,
        fd: int | None,
        chunks: AsyncGenerator[bytes, None],
        status: int,
        headers: dict[str, str],
        media_type: str = "application/octet-stream",
    ) -> None:
        super().__init__(chunks, status_code=status, headers=headers, media_type=media_type)
        self.fd = fd
        self.chunks = chunks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.chunks.aclose()
            if self.fd is not None:
                os.close(self.fd)
