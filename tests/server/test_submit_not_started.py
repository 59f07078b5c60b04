"""A submission the server stored and could not start (no inode left for its run dir: the
database still had room) is deleted before the error is answered: the 507 says "try again",
and it must be true. It was answered 507 while stored and half attached, so a client that
sent it again ran it twice, and the first one stalled, owned by the live server.

A real server process with its state dir on a real tmpfs of few inodes (mounted here, as
root: CI runs the tests as root).
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.server.conftest import API, Server, b64, submit, wait_workflow
from tests.tmpfs import fill_inodes, tmpfs


@pytest.mark.needs_root  # a tmpfs mount
def test_a_submission_that_cannot_start_is_not_kept_and_runs_once_when_sent_again(
    tmp_path: Path, start_server: Callable[..., Server]
) -> None:
    side = tmp_path / "side"
    side.mkdir()
    text = (
        "name: once\nspec:\n  activities:\n"
        f"    - name: a\n      run: 'echo $$ >> {side}/a'\n"
        "    - name: b\n      dependsOn: [a]\n"
        f"      run: 'echo $$ >> {side}/b'\n"
    )
    with tmpfs(tmp_path / "state", "size=64m,nr_inodes=400,mode=0700") as state:
        server = start_server(state_dir=state)
        with server.client() as api:
            filler = fill_inodes(state / "fill")
            res = api.post(f"{API}/workflows/", json={"workflow": b64(text)})
            assert res.status_code == 507, res.text + server.output()
            assert "try again" in res.json()["detail"], res.text
            with sqlite3.connect(state / "akoflow.db") as db:
                stored = db.execute("SELECT COUNT(*) FROM workflows WHERE name = 'once'")
                assert stored.fetchone()[0] == 0  # nothing kept: sending it again is right
            assert filler
            shutil.rmtree(state / "fill")
            wf_id = submit(api, text)
            doc = wait_workflow(api, wf_id, timeout=60)
            assert doc["state"] == "succeeded", doc
        output = server.output()
        server.stop()
    assert {p.name: p.read_text().count("\n") for p in side.iterdir()} == {"a": 1, "b": 1}
    assert "Traceback" not in output, output
