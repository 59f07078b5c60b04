"""An attempt still recorded as submitted (its RUNNING record, which carries its handle, is
written only once it has run a while) that ran and ended while no engine watched: the resumed
engine collects its end and stores its output, as for one recorded running."""

from __future__ import annotations

import json
import os
from pathlib import Path

from akoflow import service
from tests.conftest import Akoflow, wait_for
from tests.scenarios import spawn_attempt, spawner_in_process, store_intent_engine_gone


def test_output_of_an_attempt_that_ended_before_its_running_record_is_kept(
    akoflow: Akoflow, tmp_path: Path, state_dir: Path
) -> None:
    wf = tmp_path / "one.yaml"
    script = "echo out-of-only; echo err-of-only >&2; echo run >> count.only\n"
    wf.write_text(f"name: one\nspec:\n  activities:\n    - name: only\n      run: '{script}'\n")
    data = tmp_path / "data"
    data.mkdir()
    # The engine's state when SIGKILLed right after the attempt started: its intent stored
    # (no handle, no start), its spawner running it.
    wf_id, act = store_intent_engine_gone(state_dir, wf, data)
    attempts = state_dir / "runs" / f"{wf_id}-one" / "attempts"
    attempts.mkdir(parents=True, exist_ok=True)
    prefix = str(attempts / "only.1")
    # The spawner (a real one, in this process) starts it and records its end, engine gone.
    with spawner_in_process() as (spawner, _):
        spawn_attempt(spawner, prefix, script.encode(), data)
        assert spawner.children
        wait_for(lambda: spawner.reap() or not spawner.children)
    assert Path(f"{prefix}.exit").read_text() == "exit 0\n"

    res = akoflow("resume", "--json")
    assert res.returncode == 0, res.stderr
    (only,) = json.loads(res.stdout)["activities"]
    assert (only["state"], only["attempts"]) == ("succeeded", 1)
    assert (data / "count.only").read_text() == "run\n"
    out = akoflow("logs", str(wf_id), "only")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "out-of-only\n"
    err = akoflow("logs", str(wf_id), "only", "--stream", "stderr")
    assert err.stdout == "err-of-only\n"
    # Its start, never stored by the engine, is when its script was written (just before
    # bash started): its duration shows.
    repo = service.open_repository(state_dir)
    try:
        (attempt,) = repo.list_attempts(act.id)
    finally:
        repo.close()
    assert attempt.started_at == os.stat(f"{prefix}.sh").st_mtime
    assert attempt.finished_at is not None and attempt.finished_at >= attempt.started_at
