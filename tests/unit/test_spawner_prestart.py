"""Spawners started ahead (``akoflow run`` starts them while it imports): a link takes one
that is alive, skips one that died, and those no one took leave when discarded."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from akoflow.runtimes import spawner_start
from akoflow.runtimes.local_spawner import Frames, frame


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    yield
    for pid in spawner_start.discard():
        os.waitpid(pid, 0)


def messages(sock: socket.socket, until: str) -> list[tuple[object, ...]]:
    frames, seen = Frames(), []
    sock.settimeout(30)
    while not any(m[0] == until for m in seen):
        data = sock.recv(65536)
        assert data, f"the spawner closed its link before {until!r}: {seen}"
        seen += frames.feed(data)
    return seen


def run_true(sock: socket.socket, tmp: Path) -> list[tuple[object, ...]]:
    prefix = str(tmp / "a.1")
    sock.sendall(frame(("base", {"PATH": os.environ["PATH"]})))
    request = ("a.1", prefix, b"echo ran > out\n", prefix + ".sh", "/bin/bash")
    request += (["bash", prefix + ".sh"], {}, str(tmp), 0o022, None)
    sock.sendall(frame(("spawn", *request)))
    return messages(sock, "ended")


def test_a_spawner_started_ahead_is_taken_and_runs_attempts(tmp_path: Path) -> None:
    spawner_start.prestart(2)
    taken = spawner_start.take({})
    assert taken is not None
    pid, sock = taken
    with sock:
        seen = run_true(sock, tmp_path)
    assert [m[0] for m in seen if m[0] in ("started", "ended")] == ["started", "ended"]
    assert (tmp_path / "out").read_text() == "ran\n"
    assert (tmp_path / "a.1.exit").read_text() == "exit 0\n"
    os.waitpid(pid, 0)  # its link closed with nothing running: it left
    assert len(spawner_start.discard()) == 1  # the other one, never taken


def test_one_that_died_is_skipped_and_a_link_with_an_environment_starts_its_own() -> None:
    spawner_start.prestart(1)
    [(pid, _)] = spawner_start._ready
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert spawner_start.take({}) is None  # dead: skipped (and reaped)
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    spawner_start.prestart(1)
    assert spawner_start.take({"X": "1"}) is None  # started ahead with another environment


def test_discarded_spawners_leave_having_started_nothing() -> None:
    spawner_start.prestart(2)
    pids = spawner_start.discard()
    assert len(pids) == 2
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    assert spawner_start.take({}) is None
