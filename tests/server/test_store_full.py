"""A server whose state dir's disk fills mid-run stays up: its engine stops (memory and store
would part), the server says why and starts a new engine once there is room, which resumes
the run; nothing runs twice and the API keeps answering meanwhile.

A real server process with its state dir on a real tmpfs (mounted here, as root: CI runs the
tests as root), filled with one file while the activities run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import flat, wait_for
from tests.server.conftest import API, Server, b64, submit, wait_workflow
from tests.tmpfs import fill_space, tmpfs

WIDTH = 40


@pytest.mark.needs_root  # a tmpfs mount
def test_a_full_store_stops_the_engine_and_a_new_one_goes_on_once_there_is_room(
    tmp_path: Path, start_server: Callable[..., Server]
) -> None:
    side = tmp_path / "side"
    side.mkdir()
    lines = ["name: store-full", "spec:", "  activities:"]
    for i in range(WIDTH):
        lines += [f"    - name: a{i}", f"      run: 'sleep 0.1; echo $$ >> {side}/a{i}'"]
    lines_of_one = "name: later\nspec:\n  activities:\n    - name: x\n      run: 'true'\n"
    with tmpfs(tmp_path / "state", "size=16m,mode=0700") as state:
        server = start_server(state_dir=state)
        with server.client() as api:
            wf_id = submit(api, "\n".join(lines) + "\n")
            wait_for(lambda: len(list(side.iterdir())) >= 5, 60)
            fill_space(state / "fill")
            wait_for(lambda: "a new engine starts once there is room" in flat(server.output()), 60)
            time.sleep(2)  # held: the server stays up and answers
            assert server.proc is not None and server.proc.poll() is None, server.output()
            res = api.get(f"{API}/workflows/{wf_id}/")
            assert res.status_code == 200, res.text
            assert res.json()["data"]["state"] == "running"
            # A write is refused with the reason (it was a 500 "a bug" with a traceback).
            res = api.post(f"{API}/workflows/", json={"workflow": b64(lines_of_one)})
            assert res.status_code == 507, res.text
            assert "disk is full" in res.json()["detail"], res.text
            (state / "fill").unlink()
            doc = wait_workflow(api, wf_id, timeout=120)
            assert doc["state"] == "succeeded", doc
        output = flat(server.output())
        server.stop()
    assert "no room left under the state dir" in output, output
    assert "a new engine took over" in output, output
    assert "Traceback" not in output, output  # a full disk is no internal error
    assert len(list(side.iterdir())) == WIDTH
    for path in side.iterdir():
        assert path.read_text().count("\n") == 1, path  # ran once
