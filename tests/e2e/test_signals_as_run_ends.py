"""Signals in the loop turns between a run's end being stored and `akoflow run` learning it
change nothing of its outcome: the command leaves with the stored run's exit code, cancels
nothing, says nothing of cancelling, runs nothing again, prints no traceback. Before, those
turns still had the handlers of a running run: two Ctrl-C (or SIGTERM) left a run stored
succeeded with exit code 1, and one said "cancelling" for nothing (found reading the code:
the handlers of the stop were installed only once the command learnt the outcome)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import cli_env
from tests.scenarios import attempt_rows


def signalled_as_it_ends(
    tmp_path: Path, signals: str, *options: str
) -> subprocess.CompletedProcess[str]:
    state = tmp_path / "state"
    wf = tmp_path / "w.yaml"
    wf.write_text("name: w\nspec:\n  activities:\n    - name: a\n      run: 'true'\n")
    res = subprocess.run(
        [sys.executable, "-m", "tests.e2e.signalled_as_run_ends", signals, "run", str(wf)]
        + ["--state-dir", str(state), *options],
        capture_output=True,
        text=True,
        timeout=120,
        env=cli_env(),
    )
    assert "Traceback" not in res.stderr, res.stderr
    assert attempt_rows(state, "a") == [(1, "succeeded", None)]  # nothing cancelled, nor run again
    assert res.returncode == 0, res.stderr  # the stored run's
    return res


@pytest.mark.parametrize("signals", ["INT,INT", "TERM,TERM", "INT,TERM"])
def test_two_signals_as_the_run_ends_leave_with_its_exit_code(tmp_path: Path, signals: str) -> None:
    res = signalled_as_it_ends(tmp_path, signals, "--json")
    assert "cancelling" not in res.stderr
    run = json.loads(res.stdout)["workflow"]  # left at once: its document all the same
    assert (run["id"], run["state"]) == (1, "succeeded")


@pytest.mark.parametrize("signals", ["INT", "TERM", "HUP,INT"])
def test_a_signal_as_the_run_ends_cancels_nothing(tmp_path: Path, signals: str) -> None:
    res = signalled_as_it_ends(tmp_path, signals, "--quiet")
    assert "cancelling" not in res.stderr
    assert "stopping the engine" in res.stderr  # what the signal waits for
