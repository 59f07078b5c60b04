"""Hostile pass on the Python API's server clients (issue 18): a token a careless user read
with its line break, credentials in the URL, a server that accepts and never answers."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

import akoflow
from tests.conftest import cli_env

SECRET = "s3cr3t-" + "k" * 24


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose connections complete (the kernel's backlog) but are never answered."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def refused_port() -> int:
    with socket.socket() as probe:  # a port nobody listens on: refused at once
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("token", [SECRET + "\n", SECRET + "\r\n", " " + SECRET + "\t"])
def test_a_token_with_a_line_break_never_shows_in_the_error(token: str) -> None:
    """`Client(url, open("api-token").read())`: the file's line break stays in the token. It
    is dropped (surrounding whitespace), the request is sent, and its error is the server's
    absence, without the token."""
    with akoflow.Client(f"http://127.0.0.1:{refused_port()}", token) as client:
        with pytest.raises(akoflow.ServerUnreachable) as caught:
            client.runtimes()
    assert SECRET not in str(caught.value) and SECRET not in repr(caught.value)


@pytest.mark.parametrize(
    "token", ["x\n" + SECRET, SECRET + "\r" + "y", SECRET + "\0", "é" + SECRET, "\n \t"]
)
@pytest.mark.parametrize("client", [akoflow.Client, akoflow.AsyncClient])
def test_a_token_no_header_can_carry_is_a_typed_error_that_never_shows_it(
    token: str, client: type[akoflow.Client] | type[akoflow.AsyncClient]
) -> None:
    with pytest.raises(akoflow.InvalidToken) as caught:
        client(f"http://127.0.0.1:{refused_port()}", token)
    assert SECRET not in str(caught.value) and SECRET not in repr(caught.value)
    assert isinstance(caught.value, akoflow.AkoflowError)


def test_a_token_from_the_environment_is_checked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AKOFLOW_API_TOKEN", "x\n" + SECRET)
    with pytest.raises(akoflow.InvalidToken) as caught:
        akoflow.Client(f"http://127.0.0.1:{refused_port()}")
    assert SECRET not in str(caught.value)


def test_credentials_in_the_url_are_never_shown(silent_port: int) -> None:
    with socket.socket() as probe:  # a port nobody listens on: refused at once
        probe.bind(("127.0.0.1", 0))
        refused = probe.getsockname()[1]
    with akoflow.Client(f"http://user:{SECRET}@127.0.0.1:{refused}", "t") as client:
        shown = repr(client)
        with pytest.raises(akoflow.ServerUnreachable) as caught:
            client.runtimes()
    assert SECRET not in shown and SECRET not in str(caught.value)


HANGING = """\
import socket, sys, time
import akoflow
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(16)
url = f"http://127.0.0.1:{listener.getsockname()[1]}"
with akoflow.Client(url, "t") as client:
    try:
        client.wait(1, timeout=1)
    except (TimeoutError, akoflow.ServerUnreachable) as exc:
        print("raised", type(exc).__name__)
"""


def test_wait_is_bounded_by_its_timeout_on_a_hanging_server() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HANGING)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )
    try:
        out, err = child.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        raise AssertionError("wait(timeout=1) still waiting after 10 s") from None
    assert child.returncode == 0 and out.startswith("raised"), err


def test_an_unreachable_server_is_a_typed_error_at_once() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        refused = probe.getsockname()[1]
    with akoflow.Client(f"http://127.0.0.1:{refused}", SECRET) as client:
        with pytest.raises(akoflow.ServerUnreachable) as caught:
            client.status("anything")
    assert SECRET not in str(caught.value)
