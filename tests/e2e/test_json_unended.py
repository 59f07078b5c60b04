"""`--json` prints the run's document (as stored) also when the command cannot follow the run
to its end: a script reading stdout always gets one, whose state says the run did not end
(the exit code is 1, the reason is on stderr). Before, stdout was empty."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Akoflow, cli_env, wait_for
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


def test_a_run_left_with_a_second_ctrl_c_is_still_a_document(
    akoflow: Akoflow, tmp_path: Path, state_dir: Path
) -> None:
    """The first Ctrl-C cancels; its activity ignores the SIGTERM, so the run is still
    cancelling when the second Ctrl-C leaves at once: stdout holds the run as stored."""
    go = tmp_path / "go"
    wf = tmp_path / "w.yaml"
    wf.write_text(
        "name: w\nspec:\n  activities:\n    - name: s\n      run: |\n        trap '' TERM\n"
        f"        for i in $(seq 1200); do [ -e '{go}' ] && break; sleep 0.05; done\n"
    )
    stderr = tmp_path / "stderr"
    with stderr.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "akoflow", "run", str(wf), "--json"]
            + ["--state-dir", str(state_dir)],
            stdout=subprocess.PIPE,
            stderr=sink,
            text=True,
            env=cli_env(),
        )
    try:
        wait_for(lambda: (state_dir / "runs" / "1-w" / "attempts" / "s.1.exit").exists())
        proc.send_signal(signal.SIGINT)
        wait_for(lambda: "cancelling" in stderr.read_text())
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        go.touch()  # the activity that outlived the command ends
        if proc.poll() is None:  # failed: not left running
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, stderr.read_text()
    run = json.loads(out)["workflow"]
    assert (run["id"], run["state"], run["finished_at"]) == (1, "running", None)
    assert akoflow("resume", "1").returncode == 1  # adopted, recorded cancelled
