"""Another process holds the state database's write lock longer than the store waits (30 s;
1 s here, AKOFLOW_STORE_BUSY_MS):
a submission is refused with 503 and the reason, not a 500 "a bug" with a traceback; nothing
is stored, and once the lock is gone the same submission is stored and runs once.

A real server process and a real second SQLite connection holding BEGIN IMMEDIATE.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from tests.server.conftest import API, Server, b64, submit, wait_workflow


def test_a_locked_database_refuses_a_submission_with_503_and_stores_nothing(
    tmp_path: Path, start_server: Callable[..., Server]
) -> None:
    side = tmp_path / "side"
    side.mkdir()
    text = f"name: locked\nspec:\n  activities:\n    - name: a\n      run: 'echo $$ >> {side}/a'\n"
    state = tmp_path / "state"
    server = start_server(state_dir=state, AKOFLOW_STORE_BUSY_MS="1000")
    with server.client() as api:
        holder = sqlite3.connect(state / "akoflow.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            res = api.post(f"{API}/workflows/", json={"workflow": b64(text)}, timeout=60)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert res.status_code == 503, res.text
        assert "locked by another process" in res.json()["detail"], res.text
        assert res.headers.get("retry-after") == "5"
        listed = api.get(f"{API}/workflows/")
        assert listed.status_code == 200, listed.text
        assert "locked" not in listed.text  # nothing stored
        wf_id = submit(api, text)
        assert wait_workflow(api, wf_id)["state"] == "succeeded"
    output = server.output()
    server.stop()
    assert (side / "a").read_text().count("\n") == 1
    assert "Traceback" not in output, output


def test_a_lock_held_while_runs_go_stops_nothing_twice_and_says_it_in_one_line(
    tmp_path: Path, start_server: Callable[..., Server]
) -> None:
    """The lock held past the wait while a run goes: the engine cannot record an end, stops
    and a new one takes over once the lock is gone. Each activity runs once, and each line
    of the server's log says the database is locked: no traceback, no "internal error"
    (before: 10 or more tracebacks, and the engine 'stopped on an internal error')."""
    side = tmp_path / "side"
    side.mkdir()
    steps = [
        f"    - name: s{i}\n      run: 'echo $$ >> {side}/s{i}; sleep 0.1'\n"
        + (f"      dependsOn: [s{i - 1}]\n" if i else "")
        for i in range(20)
    ]
    text = "name: held\nspec:\n  activities:\n" + "".join(steps)
    state = tmp_path / "state"
    server = start_server(state_dir=state, AKOFLOW_STORE_BUSY_MS="500")
    with server.client() as api:
        wf_id = submit(api, text)
        while not (side / "s2").exists():
            time.sleep(0.05)
        holder = sqlite3.connect(state / "akoflow.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        time.sleep(3)  # longer than the wait: what the engine writes meanwhile fails
        holder.execute("ROLLBACK")
        holder.close()
        assert wait_workflow(api, wf_id, timeout=120)["state"] == "succeeded"
    output = server.output()
    server.stop()
    assert {p.name: p.read_text().count("\n") for p in side.iterdir()} == {
        f"s{i}": 1 for i in range(20)
    }
    assert "Traceback" not in output, output
    assert "internal error" not in output, output
