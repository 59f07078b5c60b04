"""Docker: a stop that reaches a container after it ended on its own does not undo its success.

The engine asks the runtime to stop an attempt (a cancel) whose container had already exited 0,
its end read by the runtime's watcher but not yet by the engine. The daemon answers the stop
"not running" (304): the stop reached nothing, the success stands and a retry has nothing to
run (it was recorded cancelled and run again: its side effects twice). A script that traps the
stop and exits 0 was stopped: cancelled, as before.

A real private dockerd; the end is held between the watcher and the engine while the stop is
asked and answered.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from akoflow.runtimes.docker import DockerRuntime
from akoflow.states import ActivityState, WorkflowState
from tests.docker_support.dockerd import IMAGE, PrivateDockerd
from tests.e2e.test_engine_inprocess import engine_with
from tests.late_stop import ENDS_ON_GO, TRAPS_THE_STOP
from tests.late_stop import until as _until


def _workflow(script: str) -> str:
    lines = "".join(f"        {line}\n" for line in script.splitlines())
    return (
        f"name: late\nspec:\n  image: {IMAGE}\n  runtime: docker\n  activities:\n"
        f"    - name: w\n      run: |\n{lines}"
    )


class HeldEnds:
    """The runtime's ends held on their way to the engine, and the daemon's answers to its
    stops (False: "not running")."""

    def __init__(self, rt: DockerRuntime) -> None:
        self.rt = rt
        self.finished = rt._finished
        self.held: list[tuple[Any, Any]] = []
        self.holding = True
        self.answers: list[bool] = []
        stop_or_kill = rt._stop_or_kill

        def finished(job: Any, end: Any) -> None:
            if self.holding:
                self.held.append((job, end))
            else:
                self.finished(job, end)

        def answered(key: str, ref: str) -> bool:
            answer = stop_or_kill(key, ref)
            self.answers.append(answer)
            return answer

        rt._finished = finished  # type: ignore[method-assign]
        rt._stop_or_kill = answered  # type: ignore[method-assign]

    def release(self) -> None:
        self.holding = False
        held, self.held = self.held, []
        for job, end in held:
            self.finished(job, end)


def test_an_end_the_stop_came_too_late_for_stays_a_success(
    dockerd: PrivateDockerd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", dockerd.host)
    data = tmp_path / "data"

    async def scenario() -> tuple[ActivityState, int | None, int, list[bool]]:
        async with engine_with(tmp_path, _workflow(ENDS_ON_GO)) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            act = wf.activities["w"]
            await _until(lambda: (data / "started").exists())
            rt = engine.runtimes.slots["docker"].runtime
            assert isinstance(rt, DockerRuntime)
            hold = HeldEnds(rt)
            try:
                (data / "go").touch()
                await _until(lambda: hold.held)  # ended on its own, the engine not told
                (_, end), cid = hold.held[0], act.handle["id"]
                assert end.code == 0
                assert not dockerd.api.inspect_container(cid)["State"]["Running"]
                engine.cancel(wf_id)
                await _until(lambda: hold.answers)  # the daemon answered the stop
            finally:
                hold.release()
            await asyncio.wait_for(engine.wait(wf_id), timeout=60)
            if repo.get_workflow(wf_id).state is WorkflowState.CANCELLED:  # type: ignore[union-attr]
                await engine.retry(wf_id)  # nothing left to run
                await asyncio.wait_for(engine.wait(wf_id), timeout=60)
            attempts = repo.list_attempts(act.id)
            return act.state, act.exit_code, len(attempts), hold.answers

    state, code, attempts, answers = asyncio.run(scenario())
    assert (state, code, attempts) == (ActivityState.SUCCEEDED, 0, 1)
    assert (data / "side").read_text() == "ran\n"  # ran once; the retry had nothing to run
    assert answers == [False]  # "not running": the stop reached nothing


def test_a_script_that_traps_the_stop_and_exits_0_was_stopped(
    dockerd: PrivateDockerd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", dockerd.host)
    data = tmp_path / "data"

    async def scenario() -> tuple[ActivityState, int | None, list[bool]]:
        async with engine_with(tmp_path, _workflow(TRAPS_THE_STOP)) as (_, engine, wf_id):
            wf = await engine.attach(wf_id)
            await _until(lambda: (data / "started").exists())
            rt = engine.runtimes.slots["docker"].runtime
            assert isinstance(rt, DockerRuntime)
            hold = HeldEnds(rt)
            hold.release()  # ends go through at once; the stop's answer is recorded
            engine.cancel(wf_id)
            await asyncio.wait_for(engine.wait(wf_id), timeout=60)
            return wf.activities["w"].state, wf.activities["w"].exit_code, hold.answers

    state, code, answers = asyncio.run(scenario())
    assert (data / "side").read_text() == "stopped\n"  # it trapped the stop and exited 0
    assert (state, code) == (ActivityState.CANCELLED, 0)
    assert answers == [True]  # it was running: the stop reached it


def test_an_end_read_before_the_stop_is_answered_waits_for_the_answer(
    dockerd: PrivateDockerd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stop reaches the container, which traps it and exits 0; its die event is read
    before the daemon's answer to the stop (held here): the end waits for the answer, and
    the attempt was stopped (it would otherwise count as ended on its own)."""
    monkeypatch.setenv("DOCKER_HOST", dockerd.host)
    data = tmp_path / "data"

    async def scenario() -> tuple[ActivityState, list[bool]]:
        async with engine_with(tmp_path, _workflow(TRAPS_THE_STOP)) as (_, engine, wf_id):
            wf = await engine.attach(wf_id)
            act = wf.activities["w"]
            await _until(lambda: (data / "started").exists())
            rt = engine.runtimes.slots["docker"].runtime
            assert isinstance(rt, DockerRuntime)
            job = rt._jobs[act.key or ""]
            answer = threading.Event()
            answers: list[bool] = []
            stop_or_kill = rt._stop_or_kill

            def held_answer(key: str, ref: str) -> bool:
                answers.append(stop_or_kill(key, ref))
                answer.wait(30)
                return answers[-1]

            rt._stop_or_kill = held_answer  # type: ignore[method-assign]
            try:
                engine.cancel(wf_id)
                # Its end read by the runtime: waiting for the answer, or told already.
                await _until(lambda: job.waiting is not None or rt._jobs.get(job.key) is not job)
            finally:
                answer.set()
            await asyncio.wait_for(engine.wait(wf_id), timeout=60)
            return act.state, answers

    state, answers = asyncio.run(scenario())
    assert (data / "side").read_text() == "stopped\n"
    assert state is ActivityState.CANCELLED
    assert answers == [True]
