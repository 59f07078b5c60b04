"""A container left by a crash after its activity's end was stored is released on resume,
even when every activity of the run is already final (found by the docker torture test: a
cancel stored, the engine SIGKILLed before it removed the container, and the resumed engine
never started the docker runtime, so it never looked)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from akoflow import service
from akoflow.states import ActivityState, AttemptState
from tests.conftest import Akoflow, wait_for
from tests.docker_runtime.test_docker_cli import run_until_a_container_runs, write
from tests.docker_support.dockerd import IMAGE, PrivateDockerd


def test_a_container_of_a_final_activity_left_by_a_crash_is_removed_on_resume(
    akoflow: Akoflow,
    docker_env: dict[str, str],
    dockerd: PrivateDockerd,
    tmp_path: Path,
    state_dir: Path,
) -> None:
    wf = write(
        tmp_path / "stopped.yaml",
        f"name: stopped\nspec:\n  image: {IMAGE}\n  runtime: docker\n  activities:\n"
        "    - name: sleeper\n      run: sleep 60\n",
    )
    cli, labels = run_until_a_container_runs(
        wf, "stopped", state_dir, docker_env, dockerd, "--quiet"
    )
    os.kill(cli.pid, signal.SIGKILL)
    cli.communicate(timeout=30)
    # What the engine had done when it died: the cancel stored and the activity's end with
    # it, the container stopped but not removed yet.
    (container,) = dockerd.containers(**labels)
    dockerd.api.kill(container["Id"], signal="SIGTERM")
    wait_for(lambda: all(c["State"] == "exited" for c in dockerd.containers(**labels)))
    repo = service.open_repository(state_dir)
    try:
        repo.request_cancel(1)
        (act,) = repo.list_activities(1)
        repo.attempt_finished(
            act.id,
            1,
            attempt_state=str(AttemptState.CANCELLED),
            activity_state=ActivityState.CANCELLED,
            exit_code=143,
            reason="cancelled",
            finished_at=time.time(),
        )
    finally:
        repo.close()

    res = akoflow("resume", env=docker_env)
    assert res.returncode == 1, res.stderr  # the run ends cancelled
    assert dockerd.containers(**labels) == [], res.stderr
