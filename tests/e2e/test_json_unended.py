"""`--json` prints the run's document (as stored) also when the command cannot follow the run
to its end: a script reading stdout always gets one, whose state says the run did not end
(the exit code is 1, the reason is on stderr). Before, stdout was empty."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Akoflow
from tests.scenarios import run_held_open


@pytest.mark.parametrize("command", ["run", "resume"])
def test_a_run_busy_elsewhere_is_still_a_document(
    akoflow: Akoflow, tmp_path: Path, state_dir: Path, command: str
) -> None:
    with run_held_open(tmp_path, state_dir) as wf:
        res = akoflow(*(["run", str(wf)] if command == "run" else ["resume", "1"]), "--json")
        assert res.returncode == 1
        assert "is being run by process" in res.stderr
        doc = json.loads(res.stdout)
        run = doc["workflow"]
        assert (run["id"], run["name"], run["state"], run["finished_at"]) == (
            1,
            "w",
            "running",
            None,
        )
        # As stored: its start is recorded a moment after it began (RUNNING_RECORD_AFTER).
        [act] = doc["activities"]
        assert act["name"] == "s" and act["state"] in ("submitted", "running")
