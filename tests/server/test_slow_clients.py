"""Slow and vanishing clients against the real server, over raw sockets: a request's headers
and body must arrive within the configured timeouts (short ones here, through the server's
environment), the server closes the connection itself, and a client that leaves mid-body is
one line in the log, not an error with a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import cli_env, wait_for
from tests.server.conftest import API, HEALTH, Server, activity, free_port, submit, workflow_yaml

TIMEOUTS = {"AKOFLOW_SERVER_HEADER_TIMEOUT": "0.5", "AKOFLOW_SERVER_BODY_TIMEOUT": "0.5"}
HANG_GUARD = 30.0  # s: only so that a broken server fails the test instead of hanging it


@pytest.fixture(scope="module")
def quick_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(
        state_dir=tmp_path_factory.mktemp("slow") / "state",
        port=free_port(),
        env=cli_env(**TIMEOUTS),
    )
    server.start()
    yield server
    server.stop()


def connect(server: Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.settimeout(HANG_GUARD)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (socket.timeout: it never
    did, and the test fails)."""
    data = b""
    with sock:
        while chunk := sock.recv(65536):
            data += chunk
    return data


def post_head(server: Server, length: int) -> bytes:
    return (
        f"POST {API}/workflows/ HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {server.token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def test_half_a_header_is_answered_408_and_the_connection_closed(quick_server: Server) -> None:
    sock = connect(quick_server)
    sock.sendall(f"GET {HEALTH} HTTP/1.1\r\nHost: te".encode())
    answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"connection: close" in answer.lower()


def test_a_connection_that_sends_nothing_is_closed(quick_server: Server) -> None:
    assert read_until_closed(connect(quick_server)) == b""


def test_the_deadline_starts_again_for_the_next_request_on_a_connection(
    quick_server: Server,
) -> None:
    sock = connect(quick_server)
    sock.sendall(f"GET {HEALTH} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    first = b""
    while not first.endswith(b"ok"):
        first += sock.recv(65536)
    assert first.startswith(b"HTTP/1.1 200 ")
    sock.sendall(f"GET {HEALTH} HTTP/1.1\r\nHo".encode())  # the second request stalls
    assert read_until_closed(sock).startswith(b"HTTP/1.1 408 ")


def test_a_stalled_body_is_answered_408_and_nothing_is_stored(quick_server: Server) -> None:
    sock = connect(quick_server)
    sock.sendall(post_head(quick_server, 1000) + b'{"workflow": "bmFt')
    answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"the request body did not arrive within 0.5 s" in answer
    with quick_server.client() as api:
        assert api.get(API + "/workflows/").json()["total"] == 0


def test_a_body_over_the_limit_is_refused_before_it_is_read(quick_server: Server) -> None:
    sock = connect(quick_server)
    sock.sendall(post_head(quick_server, 200 << 20) + b"x" * 65536)
    answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 413 "), answer
    assert b"request body over 128 MiB" in answer


def test_a_client_leaving_mid_body_is_one_line_in_the_log(quick_server: Server) -> None:
    for _ in range(3):
        with connect(quick_server) as sock:
            sock.sendall(post_head(quick_server, 100_000) + b"x" * 5000)
    note = "disconnected before the request body was complete"
    wait_for(lambda: quick_server.output().count(note) == 3)
    output = quick_server.output()
    assert "Traceback" not in output and "ERROR" not in output, output
    assert httpx.get(quick_server.url + HEALTH).text == "ok"


def test_long_answers_are_not_cut_by_the_timeouts(quick_server: Server) -> None:
    """A followed log stays open while its activity runs, far past both timeouts."""
    text = workflow_yaml(
        "slow-log", activity("tick", "for i in 1 2 3 4; do echo t$i; sleep 0.5; done")
    )
    with quick_server.client() as api:
        wf_id = submit(api, text)
        path = f"{API}/workflows/{wf_id}/activities/tick/logs/stream/"
        with api.stream("GET", path) as res:
            assert res.status_code == 200
            body = "".join(res.iter_text())
    assert all(f"t{i}" in body for i in range(1, 5)), body
    assert "event: end" in body


def test_a_bad_timeout_setting_is_a_clear_error(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "akoflow", "server", "--port", str(free_port())]
        + ["--state-dir", str(tmp_path / "state")],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        env=cli_env(AKOFLOW_SERVER_BODY_TIMEOUT="soon"),
    )
    assert res.returncode == 2
    assert "AKOFLOW_SERVER_BODY_TIMEOUT must be a positive number of seconds, got 'soon'" in (
        res.stderr
    )
    assert "Traceback" not in res.stderr
