"""A run's files through the API of a real server: the list with each file's lineage, downloads
(whole, one byte range, names that are not UTF-8), tars of a subtree, and every way of asking
for something outside the data dir refused with the reason."""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

import httpx
import pytest

from tests.server.conftest import API, Server, activity, submit, wait_workflow, workflow_yaml

MAKE = r"""mkdir -p sub/deep
echo hello > hello.txt
seq 1 20000 > sub/deep/numbers.txt
printf 'odd' > "$(printf 'bad\377.txt')"
printf 'two lines' > "$(printf 'new\nline.txt')"
ln -s /etc/passwd link-out
ln -s /etc sub/dir-out
ln -s hello.txt inner-link"""
FILES = workflow_yaml(
    "files",
    activity("make", MAKE),
    activity("count", "wc -l < sub/deep/numbers.txt > count.txt", depends=["make"]),
)
BAD = os.fsdecode(b"bad\xff.txt")
NEWLINE = "new\nline.txt"


class Run:
    def __init__(self, server: Server, api: httpx.Client, wf_id: int, data: Path) -> None:
        self.server, self.api, self.id, self.data = server, api, wf_id, data

    @property
    def files(self) -> str:
        return f"{API}/workflows/{self.id}/files/"

    def raw_get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """GET with the path sent byte for byte (httpx would normalise `..` away)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
        try:
            conn.putrequest("GET", path, skip_accept_encoding=True)
            conn.putheader("Authorization", f"Bearer {self.server.token}")
            for key, value in (headers or {}).items():
                conn.putheader(key, value)
            conn.endheaders()
            res = conn.getresponse()
            return res.status, res.read()
        finally:
            conn.close()


@pytest.fixture(scope="module")
def run(shared_server: Server) -> Iterator[Run]:
    with shared_server.client() as api:
        wf_id = submit(api, FILES)
        assert wait_workflow(api, wf_id)["state"] == "succeeded"
        (data,) = (shared_server.state_dir / "runs").glob(f"{wf_id}-*/data")
        yield Run(shared_server, api, wf_id, data)


def listing(run: Run, **params: Any) -> dict[str, Any]:
    res = run.api.get(run.files, params=params)
    assert res.status_code == 200, res.text
    body: dict[str, Any] = res.json()
    return body


def test_the_list_names_each_file_with_its_lineage(run: Run) -> None:
    body = listing(run)
    by_path = {f["path"]: f for f in body["data"]}
    # Regular files only, sorted by their bytes; the links are not listed.
    assert list(by_path) == ["bad\\xff.txt", "count.txt", "hello.txt", "new\\x0aline.txt",
                             "sub/deep/numbers.txt"]  # fmt: skip
    assert body["total"] == 5
    for f in body["data"]:
        on_disk = run.data / os.fsdecode(unquote_to_bytes(f["pathEncoded"]))
        assert f["size"] == on_disk.stat().st_size
        assert f["sha256"] == hashlib.sha256(on_disk.read_bytes()).hexdigest()
        assert f["origin"] == "generated" and f["attempt"] == 1
        assert f["url"] == f"{run.files}{f['pathEncoded']}"
        assert f["locations"] == [
            {"location": "", "size": f["size"], "sha256": f["sha256"], "fresh": False}
        ]
    assert by_path["count.txt"]["activity"] == "count"
    assert {by_path[p]["activity"] for p in by_path if p != "count.txt"} == {"make"}
    assert by_path["bad\\xff.txt"]["pathEncoded"] == "bad%FF.txt"
    assert by_path["new\\x0aline.txt"]["pathEncoded"] == "new%0Aline.txt"

    page = listing(run, limit=2, offset=1)
    assert [f["path"] for f in page["data"]] == ["count.txt", "hello.txt"]
    assert (page["total"], page["limit"], page["offset"]) == (5, 2, 1)


def test_a_file_changed_or_added_after_the_run_has_no_recorded_hash(
    shared_server: Server,
) -> None:
    with shared_server.client() as api:
        wf_id = submit(api, workflow_yaml("later", activity("w", "echo a > a.txt")))
        wait_workflow(api, wf_id)
        (data,) = (shared_server.state_dir / "runs").glob(f"{wf_id}-*/data")
        with (data / "a.txt").open("a") as f:
            f.write("changed\n")
        (data / "extra.txt").write_text("nobody's\n")
        res = api.get(f"{API}/workflows/{wf_id}/files/")
        assert res.status_code == 200, res.text
        got = {f["path"]: f for f in res.json()["data"]}
        assert got["a.txt"]["activity"] == "w" and got["a.txt"]["sha256"] is None
        assert got["a.txt"]["size"] == len("a\nchanged\n")
        assert got["extra.txt"]["origin"] == "unrecorded" and got["extra.txt"]["activity"] is None


def test_every_listed_file_downloads_whole(run: Run) -> None:
    for f in listing(run)["data"]:
        res = run.api.get(f["url"])
        assert res.status_code == 200, res.text
        expected = (run.data / os.fsdecode(unquote_to_bytes(f["pathEncoded"]))).read_bytes()
        assert res.content == expected
        assert res.headers["content-length"] == str(len(expected))
        assert res.headers["content-type"] == "application/octet-stream"
        assert res.headers["x-content-type-options"] == "nosniff"
        assert res.headers["accept-ranges"] == "bytes"
        assert res.headers["content-disposition"].startswith("attachment;")
    # The name that is not UTF-8 goes by its portable form in the suggested file name.
    res = run.api.get(run.files + "bad%FF.txt")
    assert res.content == b"odd" and "filename*=UTF-8''bad%25FF.txt" in res.headers[
        "content-disposition"
    ]  # fmt: skip


def test_one_byte_range_or_416(run: Run) -> None:
    url = run.files + "sub/deep/numbers.txt"
    whole = (run.data / "sub/deep/numbers.txt").read_bytes()
    size = len(whole)
    for spec, (first, last) in {
        "bytes=0-9": (0, 9),
        "bytes=10-": (10, size - 1),
        "bytes=-5": (size - 5, size - 1),
        f"bytes=100-{size + 1000}": (100, size - 1),
    }.items():
        res = run.api.get(url, headers={"Range": spec})
        assert res.status_code == 206, (spec, res.text)
        assert res.content == whole[first : last + 1]
        assert res.headers["content-range"] == f"bytes {first}-{last}/{size}"
    for spec, reason in {
        f"bytes={size}-": "starts past the end",
        "bytes=9-3": "ends before it starts",
        "bytes=0-1,5-6": "one range per request",
        "bytes=1-x": "malformed Range header",
        "bytes=-0": "holds no byte",
    }.items():
        res = run.api.get(url, headers={"Range": spec})
        assert res.status_code == 416, spec
        assert reason in res.json()["detail"]
        assert res.headers["content-range"] == f"bytes */{size}"
    # If-Range with another version's tag: the whole file, as RFC 9110 says.
    etag = run.api.get(url, headers={"Range": "bytes=0-0"}).headers["etag"]
    res = run.api.get(url, headers={"Range": "bytes=0-0", "If-Range": '"old"'})
    assert res.status_code == 200 and res.content == whole
    res = run.api.get(url, headers={"Range": "bytes=0-0", "If-Range": etag})
    assert res.status_code == 206 and res.content == whole[:1]


PASSWD_LINE = b"root:"


@pytest.mark.parametrize(
    ("path", "status", "reason"),
    [
        ("sub/../hello.txt", 400, "'..' are not allowed"),
        ("../../../../etc/passwd", 400, "'..' are not allowed"),
        ("%2e%2e/%2e%2e/%2e%2e/etc/passwd", 400, "'..' are not allowed"),
        ("..%2f..%2f..%2fetc%2fpasswd", 400, "'..' are not allowed"),
        ("%2E%2E%2F%2E%2E%2Fetc%2Fpasswd", 400, "'..' are not allowed"),
        ("./hello.txt", 400, "'.' and '..' are not allowed"),
        ("/etc/passwd", 400, "absolute paths are not served"),
        ("%2Fetc%2Fpasswd", 400, "absolute paths are not served"),
        ("hello.txt%00.png", 400, "NUL"),
        ("%252e%252e/%252e%252e/etc/passwd", 404, "no file %2e%2e"),  # decoded once: a name
        ("link-out", 404, "link-out is a symbolic link"),
        ("inner-link", 404, "inner-link is a symbolic link"),  # links are never followed
        ("sub/dir-out/passwd", 404, "sub/dir-out is a symbolic link"),
        ("sub/dir-out%2Fpasswd", 404, "sub/dir-out is a symbolic link"),
        ("sub/dir-out?archive=tar", 404, "sub/dir-out is a symbolic link"),
        ("sub/deep", 404, "not a regular file (a directory: add ?archive=tar)"),
        ("hello.txt/x", 404, "hello.txt is not a directory"),
        ("nope.txt", 404, "no file nope.txt"),
    ],
)
def test_paths_outside_the_data_dir_are_refused(
    run: Run, path: str, status: int, reason: str
) -> None:
    got, body = run.raw_get(run.files + path)
    assert got == status, body
    assert reason in httpx.Response(got, content=body).json()["detail"]
    assert PASSWD_LINE not in body


def test_a_fifo_or_a_missing_run_is_a_clear_404(run: Run) -> None:
    os.mkfifo(run.data / "pipe")  # opening it for reading must not wait for a writer
    try:
        got, body = run.raw_get(run.files + "pipe")
        assert got == 404 and b"pipe is not a regular file (special)" in body
        assert "pipe" not in [f["path"] for f in listing(run)["data"]]
    finally:
        (run.data / "pipe").unlink()
    res = run.api.get(f"{API}/workflows/999999/files/hello.txt")
    assert res.status_code == 404 and res.json()["detail"] == "workflow 999999 not found"
    with run.server.client(token="wrong") as bad:
        assert bad.get(run.files + "hello.txt").status_code == 401
        assert bad.get(run.files).status_code == 401


def untar(content: bytes) -> dict[bytes, tarfile.TarInfo | bytes]:
    out: dict[bytes, tarfile.TarInfo | bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(content), mode="r:", encoding="utf-8",
                      errors="surrogateescape") as tar:  # fmt: skip
        for member in tar:
            name = os.fsencode(member.name)
            if member.isfile():
                extracted = tar.extractfile(member)
                assert extracted is not None
                out[name] = extracted.read()
            else:
                out[name] = member
    return out


def test_a_tar_of_a_subtree_or_of_the_whole_data_dir(run: Run) -> None:
    res = run.api.get(run.files + "sub", params={"archive": "tar"})
    assert res.status_code == 200, res.text
    assert res.headers["content-type"] == "application/x-tar"
    assert "content-length" not in res.headers  # streamed as it is made
    entries = untar(res.content)
    assert list(entries) == [b"sub", b"sub/deep", b"sub/deep/numbers.txt"]  # no link
    assert entries[b"sub/deep/numbers.txt"] == (run.data / "sub/deep/numbers.txt").read_bytes()

    whole = untar(run.api.get(run.files, params={"archive": "tar"}).content)
    files = {name: data for name, data in whole.items() if isinstance(data, bytes)}
    assert files == {
        os.fsencode(os.path.relpath(p, run.data)): p.read_bytes()
        for p in run.data.rglob("*")
        if p.is_file() and not p.is_symlink()
    }
    assert b"bad\xff.txt" in files and b"new\nline.txt" in files  # names' bytes as they are
    assert not any(name.endswith((b"link-out", b"inner-link", b"dir-out")) for name in whole)


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_downloads_and_tars_are_streamed_in_bounded_memory(run: Run) -> None:
    """128 MiB through a file download and a tar: the server's peak memory grows by far less
    (it would grow by the file's size if either were built in memory)."""
    big = run.data / "sparse" / "big.bin"
    big.parent.mkdir()
    with big.open("wb") as f:
        f.truncate(128 << 20)  # sparse: no disk used, read back as zeros
    assert run.server.proc is not None
    pid = run.server.proc.pid
    before = _peak_rss(pid)
    try:
        tar = {"archive": "tar"}
        for url, params in ((run.files + "sparse/big.bin", {}), (run.files + "sparse", tar)):
            received = 0
            with run.api.stream("GET", url, params=params) as res:
                assert res.status_code == 200
                for chunk in res.iter_bytes():
                    assert not chunk.strip(b"\0") or params  # zeros (a tar has its headers)
                    received += len(chunk)
            assert received >= 128 << 20
        assert _peak_rss(pid) - before < 40 << 20
    finally:
        big.unlink()
        big.parent.rmdir()
