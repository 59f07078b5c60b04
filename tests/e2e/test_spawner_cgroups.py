"""The spawner removes an ended attempt's cgroup before it tells the engine of the end, and
says whether it could: the engine empties and removes only those it could not (their
processes left the session the end killed)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from akoflow.runtimes import cgroups, spawner_start
from akoflow.runtimes.local_spawner import frame
from tests.conftest import wait_for
from tests.unit.test_spawner_prestart import messages

pytestmark = pytest.mark.needs_root  # creates cgroups


@pytest.fixture
def spawner() -> Iterator[socket.socket]:
    pid, sock = spawner_start.start({})
    with sock:
        sock.sendall(frame(("base", {"PATH": os.environ["PATH"]})))
        yield sock
    os.waitpid(pid, 0)  # its link closed with nothing running: it leaves


@pytest.fixture
def base() -> str:
    found = cgroups.usable_base()
    assert found is not None, "the tests run where cgroups can be created"
    return found


def ended(
    sock: socket.socket, tmp: Path, name: str, script: bytes, cgroup: str
) -> tuple[object, ...]:
    prefix = str(tmp / f"{name}.1")
    request = (f"{name}.1", prefix, script, prefix + ".sh", "/bin/bash")
    request += (["bash", prefix + ".sh"], {}, str(tmp), 0o022, cgroup)
    sock.sendall(frame(("spawn", *request)))
    [end] = [m for m in messages(sock, "ended") if m[0] == "ended"]
    return end


def test_an_empty_cgroup_is_gone_when_the_engine_hears_of_the_end(
    spawner: socket.socket, base: str, tmp_path: Path
) -> None:
    cgroup = cgroups.attempt_cgroup(base, str(tmp_path / "a.1"))
    end = ended(spawner, tmp_path, "a", b"echo ran > out\n", cgroup)
    assert end[2] == 0 and end[5] is True, end
    assert not os.path.exists(cgroup)
    assert (tmp_path / "out").read_text() == "ran\n"


def test_a_cgroup_with_escaped_processes_is_left_to_the_engine(
    spawner: socket.socket, base: str, tmp_path: Path
) -> None:
    cgroup = cgroups.attempt_cgroup(base, str(tmp_path / "b.1"))
    script = b"setsid -f bash -c 'echo $$ > esc.pid; exec sleep 300'\n"
    script += b"while [ ! -s esc.pid ]; do sleep 0.02; done\n"
    try:
        end = ended(spawner, tmp_path, "b", script, cgroup)
        assert end[2] == 0 and end[5] is False, end
        escaped = int((tmp_path / "esc.pid").read_text())
        assert escaped in cgroups.members(cgroup)  # still there: for the engine to kill
    finally:
        cgroups.kill(cgroup)
        wait_for(lambda: cgroups.remove(cgroup), timeout=10)
