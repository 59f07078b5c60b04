"""Hostile cases around the go of a container adopted after an engine's SIGKILL (c6c5bea):
only a container still waiting at its gate reports the go as its start. One whose command
already ran keeps its stored start, so that its timeout fires on resume as it would have; a
container with no gate (observation off) too."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import start_cli, wait_for
from tests.docker_runtime.test_docker_gate import (
    attempts_of,
    go_lost_workflow,
    held_engine,
    kill_then_resume,
    killed_with_its_go_lost,
)
from tests.docker_support.dockerd import IMAGE, PrivateDockerd


@pytest.mark.parametrize("observe", ["on", "off"])
def test_a_container_whose_command_ran_before_the_kill_keeps_its_stored_start(
    observe: str,
    docker_env: dict[str, str],
    dockerd: PrivateDockerd,
    state_dir: Path,
    tmp_path: Path,
) -> None:
    """Killed while the command runs, resumed after its timeout would have fired: the
    resumed engine stops it as timed out (from the stored start, kept), and its retry runs
    once; each attempt's command ran once."""
    name = f"ran{observe}"
    wf = tmp_path / "ran.yaml"
    wf.write_text(
        f"name: {name}\nspec:\n  image: {IMAGE}\n  runtime: docker\n  activities:\n"
        "    - name: a\n      retries: 1\n      timeout: 3s\n"
        "      run: |\n"
        '        echo "run $AKOFLOW_ATTEMPT" >> count.a\n'
        '        if [ "$AKOFLOW_ATTEMPT" = 1 ]; then sleep 600; fi\n'
        '        echo "end $AKOFLOW_ATTEMPT" >> count.a\n'
    )
    data = tmp_path / "data"
    env = {**docker_env, "AKOFLOW_OBSERVE": observe}
    engine = start_cli(
        ["run", str(wf), "--state-dir", str(state_dir), "--data-dir", str(data), "--quiet"], env
    )
    try:
        wait_for(lambda: (data / "count.a").exists(), timeout=60)
        wait_for(lambda: attempts_of(state_dir, "a")[0].started_at is not None, timeout=30)
        (stored,) = attempts_of(state_dir, "a")
        os.kill(engine.pid, signal.SIGKILL)  # before its timeout fires
        engine.communicate(timeout=10)
        assert stored.stop_reason is None, stored
        wait_for(lambda: time.time() > stored.started_at + 4, timeout=10)  # expired
        code, output = kill_then_resume(engine, state_dir, env)
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.communicate()
        for c in dockerd.containers(**{"akoflow.workflow-name": name}):
            dockerd.api.remove_container(c["Id"], force=True)
    assert code == 0, output
    attempts = attempts_of(state_dir, "a")
    assert [(a.state, a.stop_reason) for a in attempts] == [
        ("failed", "timeout"),
        ("succeeded", None),
    ], attempts
    assert attempts[0].started_at == stored.started_at  # the start it ran from, kept
    assert (data / "count.a").read_text() == "run 1\nrun 2\nend 2\n"


@pytest.mark.parametrize("after", [0.0, 0.2, 0.6])
def test_a_resume_killed_right_after_letting_a_container_go_leaves_it_its_new_start(
    after: float,
    docker_env: dict[str, str],
    dockerd: PrivateDockerd,
    state_dir: Path,
    tmp_path: Path,
) -> None:
    """The go was lost with the first engine; the resume that lets the container go is
    SIGKILLed once it has stored the go as the start (``after`` seconds later); the next
    resume counts the timeout from that start: one attempt, its command run once."""
    data = tmp_path / "data"
    engine = held_engine(state_dir, data, go_lost_workflow(tmp_path, 3, 1), docker_env, "--go-lost")
    resume = None
    try:
        stored = killed_with_its_go_lost(engine, dockerd, state_dir)
        wait_for(lambda: time.time() > stored.started_at + 4, timeout=10)  # expired
        resume = start_cli(["resume", "--state-dir", str(state_dir), "--quiet"], docker_env)
        wait_for(lambda: attempts_of(state_dir, "a")[0].started_at != stored.started_at)
        time.sleep(after)
        os.kill(resume.pid, signal.SIGKILL)
        resume.communicate(timeout=10)
        code, output = kill_then_resume(resume, state_dir, docker_env)
    finally:
        for p in (engine, resume):
            if p is not None and p.poll() is None:
                p.kill()
                p.communicate()
        for c in dockerd.containers(**{"akoflow.workflow-name": "golost"}):
            dockerd.api.remove_container(c["Id"], force=True)
    assert code == 0, output
    attempts = attempts_of(state_dir, "a")
    assert [(a.state, a.exit_code, a.reason) for a in attempts] == [("succeeded", 0, None)]
    assert (data / "count.a").read_text() == "run\nend\n"
