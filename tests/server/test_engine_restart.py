"""A server whose engine fails starts a new one: no stalled workflow, nothing run twice.

The app runs in-process with its real lifespan, store and local runtime; the store's record of
a finished attempt fails once (as on a full disk), which ends that engine. The server must
replace it, resume the interrupted run (collecting the activity's exit, not running it again)
and keep taking new workflows.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from akoflow.server import supervisor
from akoflow.server.app import create_app
from akoflow.store import Repository
from tests.server.conftest import API, b64

TOKEN = "test-token"
WORKFLOW = (
    "name: {name}\nspec:\n  activities:\n"
    "    - name: a\n      run: echo a >> ../ledger; echo a > a.txt\n"
    "    - name: b\n      dependsOn: [a]\n      run: echo b >> ../ledger; cat a.txt\n"
)


def wait_state(client: TestClient, wf_id: int, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = client.get(f"{API}/workflows/{wf_id}/").json()["data"]
        if doc["state"] in ("succeeded", "failed", "cancelled"):
            return str(doc["state"])
        time.sleep(0.05)
    raise AssertionError(f"workflow {wf_id} did not end")


@pytest.mark.timeout(120)
def test_failed_engine_is_replaced_and_its_run_resumed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(supervisor, "RESTART_FIRST_DELAY", 0.1)
    original = Repository.attempt_finished
    failures = [1]

    def attempt_finished(self: Repository, *args: Any, **kwargs: Any) -> None:
        if failures[0]:
            failures[0] -= 1
            raise sqlite3.OperationalError("disk I/O error")
        original(self, *args, **kwargs)

    monkeypatch.setattr(Repository, "attempt_finished", attempt_finished)
    state = tmp_path / "state"
    app = create_app(state, TOKEN)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with caplog.at_level(logging.WARNING), TestClient(app, headers=headers) as client:
        first_engine = app.state.context.engine
        res = client.post(f"{API}/workflows/", json={"workflow": b64(WORKFLOW.format(name="one"))})
        assert res.status_code == 200, res.text
        first = int(res.json()["workflow_id"])
        assert wait_state(client, first) == "succeeded"
        assert app.state.context.engine is not first_engine
        assert first_engine.failure is not None
        # The new engine takes new work too.
        res = client.post(f"{API}/workflows/", json={"workflow": b64(WORKFLOW.format(name="two"))})
        second = int(res.json()["workflow_id"])
        assert wait_state(client, second) == "succeeded"
    assert failures == [0]
    for wf_id, name in ((first, "one"), (second, "two")):
        ledger = (state / "runs" / f"{wf_id}-{name}" / "ledger").read_text().split()
        assert ledger == ["a", "b"]  # each activity ran exactly once
    assert "disk I/O error" in caplog.text and "starting a new engine" in caplog.text
