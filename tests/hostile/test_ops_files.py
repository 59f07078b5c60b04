"""Hostile pass on a run's files through the API and the CLI (issue 19): Range headers a
careless or hostile client sends, special files an activity leaves in its data dir, links
swapped while a download is served, and names an activity chose printed by the CLI."""

from __future__ import annotations

import ctypes
import http.client
import io
import os
import struct
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import cli_env
from tests.server.conftest import (  # noqa: F401
    API,
    Server,
    activity,
    shared_server,
    submit,
    wait_workflow,
    workflow_yaml,
)

MAKE = r"""echo hello > hello.txt
mkfifo fifo
mkdir sub
echo inner > sub/inner.txt
mkfifo sub/pipe
printf x > "$(printf 'esc\033[31mred\033[0m.txt')"
"""
FILES = workflow_yaml("opsfiles", activity("make", MAKE, extra="      cache: false\n"))
ESCAPE_NAME = "esc%1B%5B31mred%1B%5B0m.txt"  # the name above, percent-encoded


class Run:
    def __init__(self, server: Server, wf_id: int, data: Path) -> None:
        self.server, self.id, self.data = server, wf_id, data

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """GET with the path sent byte for byte."""
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

    def file(self, name: str) -> str:
        return f"{API}/workflows/{self.id}/files/{name}"


@pytest.fixture(scope="module")
def run(shared_server: Server) -> Iterator[Run]:  # noqa: F811
    with shared_server.client() as api:
        wf_id = submit(api, FILES)
        assert wait_workflow(api, wf_id)["state"] == "succeeded"
    (data,) = (shared_server.state_dir / "runs").glob(f"{wf_id}-*/data")
    yield Run(shared_server, wf_id, data)


# ---------------------------------------------------------------------------- ranges


def test_a_range_bound_of_thousands_of_digits_is_a_416_not_a_500(run: Run) -> None:
    huge = "9" * 5000  # fits easily in one header line (h11 allows 16 KiB)
    status, body = run.get(run.file("hello.txt"), {"Range": f"bytes=0-{huge}"})
    assert (status, body) == (206, b"hello\n")
    status, body = run.get(run.file("hello.txt"), {"Range": f"bytes={huge}-"})
    assert status == 416, body[:300]
    status, body = run.get(run.file("hello.txt"), {"Range": f"bytes=-{huge}"})
    assert (status, body) == (206, b"hello\n")
    assert b"Traceback" not in run.server.output().encode()


def test_a_range_bound_just_under_the_limit_is_served(run: Run) -> None:
    """The same header with 4000 digits (under the conversion limit) is fine: the bug above
    is the limit only."""
    status, body = run.get(run.file("hello.txt"), {"Range": "bytes=0-" + "9" * 4000})
    assert (status, body) == (206, b"hello\n")


def test_a_range_of_an_unknown_unit_is_ignored(run: Run) -> None:
    status, body = run.get(run.file("hello.txt"), {"Range": "items=0-1"})
    assert (status, body) == (200, b"hello\n")
    status, body = run.get(run.file("hello.txt"), {"Range": "items=0-1,2-3"})
    assert (status, body) == (200, b"hello\n")


# ----------------------------------------------------------------- special files


class OpenWatch:
    """inotify IN_OPEN on some paths: whether anything opened them (the kernel queues the
    event during the open call itself, so reading after the request is not a race)."""

    IN_OPEN, IN_NONBLOCK, IN_CLOEXEC = 0x20, os.O_NONBLOCK, os.O_CLOEXEC

    def __init__(self, *paths: Path) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(self.IN_NONBLOCK | self.IN_CLOEXEC)
        assert self.fd >= 0, os.strerror(ctypes.get_errno())
        for path in paths:
            wd = self.libc.inotify_add_watch(self.fd, os.fsencode(path), self.IN_OPEN)
            assert wd >= 0, os.strerror(ctypes.get_errno())

    def opens(self) -> int:
        count = 0
        while True:
            try:
                data = os.read(self.fd, 4096)
            except BlockingIOError:
                return count
            offset = 0
            while offset < len(data):
                _wd, mask, _cookie, size = struct.unpack_from("iIII", data, offset)
                count += bool(mask & self.IN_OPEN)
                offset += 16 + size

    def close(self) -> None:
        os.close(self.fd)


def test_a_fifo_in_the_data_dir_is_never_opened(run: Run) -> None:
    watch = OpenWatch(run.data / "fifo", run.data / "sub" / "pipe")
    try:
        status, body = run.get(run.file("fifo"))
        assert status == 404 and b"not a regular file" in body
        status, body = run.get(run.file("sub") + "?archive=tar")
        assert status == 200
        names = tarfile.open(fileobj=io.BytesIO(body)).getnames()
        assert "sub/inner.txt" in names and "sub/pipe" not in names
        assert watch.opens() == 0, "the server opened a FIFO of the data dir"
    finally:
        watch.close()


def test_the_listing_does_not_open_special_files(run: Run) -> None:
    """Listing only stats (the guard of the test above stays meaningful)."""
    watch = OpenWatch(run.data / "fifo", run.data / "sub" / "pipe")
    try:
        status, _ = run.get(f"{API}/workflows/{run.id}/files/")
        assert status == 200
        assert watch.opens() == 0
    finally:
        watch.close()


# --------------------------------------------------------------- links swapped in


def test_a_file_swapped_for_a_link_between_requests_is_refused(run: Run) -> None:
    """A download in progress keeps the inode it opened; the next request sees the link."""
    target = run.data / "swap.txt"
    target.write_bytes(b"a" * 300_000)  # more than one chunk
    conn = http.client.HTTPConnection("127.0.0.1", run.server.port, timeout=30)
    try:
        conn.request(
            "GET", run.file("swap.txt"), headers={"Authorization": f"Bearer {run.server.token}"}
        )
        res = conn.getresponse()
        first = res.read(1000)
        os.rename(target, run.data / "swap.old")
        os.symlink("/etc/passwd", target)
        rest = res.read()
        assert first + rest == b"a" * 300_000
    finally:
        conn.close()
    status, body = run.get(run.file("swap.txt"))
    assert status == 404 and b"symbolic link" in body
    status, body = run.get(run.file("swap.txt") + "?archive=tar")
    assert status == 404


def test_a_data_dir_swapped_for_a_link_to_root_serves_nothing_outside(run: Run) -> None:
    """A subdirectory replaced by a link to / while the server runs: refused, as a link."""
    (run.data / "moved").mkdir()
    (run.data / "moved" / "x").write_text("x")
    os.rename(run.data / "moved", run.data / "moved.old")
    os.symlink("/", run.data / "moved")
    for path in ("moved/etc/passwd", "moved/etc", "moved"):
        status, body = run.get(run.file(path))
        assert status == 404, (path, body)
    status, body = run.get(run.file("moved") + "?archive=tar")
    assert status == 404
    status, body = run.get(f"{API}/workflows/{run.id}/files/?archive=tar")
    assert status == 200
    names = tarfile.open(fileobj=io.BytesIO(body)).getnames()
    assert not any(n.startswith("moved/") or n == "moved" for n in names), names


# ------------------------------------------------------------------- the CLI


def test_download_prints_a_name_with_escape_sequences_escaped(run: Run, tmp_path: Path) -> None:
    env = cli_env(AKOFLOW_API_TOKEN=run.server.token)
    argv = [sys.executable, "-m", "akoflow", "download", str(run.id), ESCAPE_NAME, "--encoded"]
    argv += ["--server", run.server.url]
    res = subprocess.run(argv, capture_output=True, cwd=tmp_path, env=env, timeout=60)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "esc\x1b[31mred\x1b[0m.txt").read_bytes() == b"x"
    assert b"\x1b" not in res.stdout + res.stderr, res.stderr
    assert b"wrote esc\\x1b[31mred" in res.stderr
    res = subprocess.run(argv, capture_output=True, cwd=tmp_path, env=env, timeout=60)
    assert res.returncode == 2
    assert b"\x1b" not in res.stdout + res.stderr, res.stderr
    assert b"esc\\x1b[31mred" in res.stderr and b"exists" in res.stderr


def test_files_lists_escape_sequences_escaped(run: Run) -> None:
    env = cli_env(AKOFLOW_API_TOKEN=run.server.token)
    argv = [sys.executable, "-m", "akoflow", "files", str(run.id), "--server", run.server.url]
    res = subprocess.run(argv, capture_output=True, env=env, timeout=60)
    assert res.returncode == 0, res.stderr
    assert b"\x1b" not in res.stdout and b"esc\\x1b[31mred" in res.stdout


def test_the_api_answers_no_file_of_another_run_through_an_encoded_segment(run: Run) -> None:
    """`%77orkflows`: the router decodes it, the raw path does not match: 404, nothing else."""
    status, _ = run.get(f"/akoflow-api/%77orkflows/{run.id}/files/hello.txt")
    assert status == 404
    with httpx.Client(base_url=run.server.url) as anon:
        assert anon.get(run.file("hello.txt")).status_code == 401
