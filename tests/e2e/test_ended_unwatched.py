"""An attempt that ends while no engine runs (the engine was killed, or held for a full
disk) is judged when the next engine collects it as a live engine would have judged it: by
its timeout too, not by its exit code alone, and its end is recorded as when it ended, not
when it was collected (found by the hostile pass of the full-disk work).

Each activity writes its own side effects; the tests judge those, not only the store.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from akoflow import service
from akoflow.states import ActivityState, WorkflowState
from tests.conftest import Akoflow
from tests.e2e.test_stop_requests import run_then_kill

A = ActivityState


def _workflow(tmp_path: Path, side: Path, *, timeout: str, runs_for: float) -> Path:
    wf = tmp_path / "wf.yaml"
    wf.write_text(
        "name: unwatched\nspec:\n  activities:\n"
        f"    - name: a\n      timeout: {timeout}\n"
        f"      run: 'touch {side}/started; sleep {runs_for}; echo once >> {side}/a'\n"
        f"    - name: b\n      run: 'echo once >> {side}/b'\n      dependsOn: [a]\n"
    )
    return wf


def test_an_attempt_that_outlived_its_timeout_while_no_engine_ran_is_timed_out(
    tmp_path: Path, akoflow: Akoflow, state_dir: Path
) -> None:
    """``timeout: 1s``, and the script runs 2 s and exits 0 while no engine runs. A live
    engine would have stopped it at 1 s; the next one recorded it succeeded and ran its
    dependent. It is timed out (a failure: no retries here), with when it really ended, and
    the dependent never runs."""
    side = tmp_path / "side"
    side.mkdir()
    record = run_then_kill(_workflow(tmp_path, side, timeout="1s", runs_for=2), state_dir, side)
    ended = record.stat().st_mtime
    time.sleep(1)  # collected a while after its end
    done = akoflow("resume", "1")
    assert done.returncode == 1, done.stdout + done.stderr
    repo = service.open_repository(state_dir)
    (a, b) = repo.list_activities(1)
    assert (a.state, b.state) == (A.FAILED, A.SKIPPED), (a, b)
    (attempt,) = repo.list_attempts(a.id)
    assert str(attempt.state) == "failed" and attempt.exit_code == 0
    ran = re.fullmatch(
        r"timed out after 1s \(it ran ([0-9.]+)s, ending while no engine watched\)",
        attempt.reason or "",
    )
    assert ran is not None and float(ran[1]) >= 2, attempt.reason
    assert attempt.finished_at == ended  # its end, not its collection
    assert repo.get_workflow(1).state is WorkflowState.FAILED  # type: ignore[union-attr]
    assert (side / "a").read_text() == "once\n" and not (side / "b").exists()


def test_one_that_ended_within_its_timeout_while_no_engine_ran_succeeds(
    tmp_path: Path, akoflow: Akoflow, state_dir: Path
) -> None:
    """The same with room to spare (``timeout: 30s``, 1 s of work), collected 2 s after
    its end: a success, its duration what it ran (not up to its collection), and the
    dependent runs once."""
    side = tmp_path / "side"
    side.mkdir()
    record = run_then_kill(_workflow(tmp_path, side, timeout="30s", runs_for=1), state_dir, side)
    ended = record.stat().st_mtime
    time.sleep(2)
    done = akoflow("resume", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    repo = service.open_repository(state_dir)
    (a, b) = repo.list_activities(1)
    assert (a.state, b.state) == (A.SUCCEEDED, A.SUCCEEDED), (a, b)
    (attempt,) = repo.list_attempts(a.id)
    assert attempt.finished_at == ended
    assert attempt.started_at is not None and attempt.started_at <= ended
    assert (side / "a").read_text() == "once\n" and (side / "b").read_text() == "once\n"


def test_a_script_that_touches_its_own_script_file_cannot_shorten_its_run(
    tmp_path: Path, akoflow: Akoflow, state_dir: Path
) -> None:
    """A hostile script moves its script file's time to its end (the start a local attempt's
    files tell), outlives its ``timeout: 3s`` while no engine runs, and exits 0. The start
    the engine stored before it died stands: timed out, and its dependent never runs (found
    by the hostile pass of da95c9c: recorded succeeded in 4 ms)."""
    side = tmp_path / "side"
    side.mkdir()
    wf = tmp_path / "wf.yaml"
    wf.write_text(
        "name: liar\nspec:\n  activities:\n"
        "    - name: a\n      timeout: 3s\n"
        f'      run: \'touch {side}/started; sleep 4; touch "$AKOFLOW_ATTEMPT_FILES.sh"; '
        f"echo once >> {side}/a'\n"
        f"    - name: b\n      run: 'echo once >> {side}/b'\n      dependsOn: [a]\n"
    )
    run_then_kill(wf, state_dir, side, stored_start=True)
    done = akoflow("resume", "1")
    assert done.returncode == 1, done.stdout + done.stderr
    repo = service.open_repository(state_dir)
    (a, b) = repo.list_activities(1)
    assert (a.state, b.state) == (A.FAILED, A.SKIPPED), (a, b)
    assert (a.reason or "").startswith("timed out after 3s (it ran "), a.reason
    assert not (side / "b").exists()
