"""Docker: a stop whose answer was lost counts as having reached the container; a success a
deadline's stop came too late for is judged by when it ended.

The stop reaches a container whose script traps it and exits 0, but the daemon's answer never
comes back (the connection breaks; the kill that follows finds the daemon unreachable too). The
stop is tried again: the daemon now answers "not running" (304), which says nothing of the
first try, which did reach it. The attempt was stopped: cancelled, not a success (a 304 after
a try whose answer is unknown was taken as "no stop reached it").

A real private dockerd; the failures are injected at the SDK calls, and the container's end is
held until the first try has failed (the event stream is down with the daemon).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
import requests

from akoflow import service
from akoflow.engine import Engine
from akoflow.runtimes.docker import DockerRuntime
from akoflow.runtimes.docker import daemon as daemon_mod
from akoflow.states import ActivityState, WorkflowState
from tests.docker_runtime.test_docker_stop_too_late import (
    ENDS_ON_GO,
    TRAPS_THE_STOP,
    HeldEnds,
    _until,
    _workflow,
)
from tests.docker_support.dockerd import IMAGE, PrivateDockerd
from tests.e2e.test_engine_inprocess import engine_with


def test_a_stop_whose_answer_was_lost_is_not_undone_by_a_later_304(
    dockerd: PrivateDockerd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", dockerd.host)
    data = tmp_path / "data"

    async def scenario() -> tuple[ActivityState, int | None, list[bool]]:
        async with engine_with(tmp_path, _workflow(TRAPS_THE_STOP)) as (_, engine, wf_id):
            wf = await engine.attach(wf_id)
            act = wf.activities["w"]
            await _until(lambda: (data / "started").exists())
            rt = engine.runtimes.slots["docker"].runtime
            assert isinstance(rt, DockerRuntime)
            hold = HeldEnds(rt)
            api = await asyncio.to_thread(rt._daemon.client)
            real_stop, real_kill = daemon_mod.stop, api.kill
            tries: list[str] = []
            failed: list[bool] = []

            def answer_lost(api_: Any, ref: str, timeout: int) -> bool:
                tries.append(ref)
                answer = real_stop(api_, ref, timeout)  # it reaches the container
                if len(tries) == 1:
                    raise requests.exceptions.ConnectionError("Connection aborted.")
                return answer

            def unreachable(ref: str, *args: Any, **kwargs: Any) -> None:
                if len(tries) == 1:
                    failed.append(True)
                    raise requests.exceptions.ConnectionError("Connection refused")
                real_kill(ref, *args, **kwargs)

            monkeypatch.setattr(daemon_mod, "stop", answer_lost)
            api.kill = unreachable
            try:
                engine.cancel(wf_id)
                await _until(lambda: failed and hold.held)  # trapped, exited 0; end held
                await asyncio.sleep(0.2)  # the failed try is seen; the stop is tried again
            finally:
                hold.release()  # the event stream is back: its end is read
            await asyncio.wait_for(engine.wait(wf_id), timeout=60)
            return act.state, act.exit_code, hold.answers

    state, code, answers = asyncio.run(scenario())
    assert (data / "side").read_text() == "stopped\n"  # the stop reached it: it trapped it
    assert answers == [False]  # the second try: "not running"
    assert (state, code) == (ActivityState.CANCELLED, 0)  # stopped, not a success


def test_a_success_its_deadlines_stop_came_too_late_for_is_not_timed_out(
    dockerd: PrivateDockerd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It exits 0 well within its 3 s; its end, read at once, reaches the engine after its
    deadline (held here), whose stop the daemon answers "not running". It ended in time: a
    success, run once (it was recorded 'timed out after 3s' and run again by its retry)."""
    monkeypatch.setenv("DOCKER_HOST", dockerd.host)
    data = tmp_path / "data"
    lines = "".join(f"        {line}\n" for line in ENDS_ON_GO.splitlines())
    text = (
        f"name: late\nspec:\n  image: {IMAGE}\n  runtime: docker\n  activities:\n"
        f"    - name: w\n      timeout: 3s\n      retries: 1\n      run: |\n{lines}"
    )

    async def scenario() -> tuple[ActivityState, list[tuple[str, str | None]], list[bool]]:
        async with engine_with(tmp_path, text) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            act = wf.activities["w"]
            await _until(lambda: (data / "started").exists())
            rt = engine.runtimes.slots["docker"].runtime
            assert isinstance(rt, DockerRuntime)
            hold = HeldEnds(rt)
            try:
                (data / "go").touch()
                await _until(lambda: hold.held)  # ended on its own, the engine not told
                await _until(lambda: hold.answers, 10)  # its deadline's stop answered
            finally:
                hold.release()
            await asyncio.wait_for(engine.wait(wf_id), timeout=60)
            attempts = [(str(a.state), a.reason) for a in repo.list_attempts(act.id)]
            return act.state, attempts, hold.answers

    state, attempts, answers = asyncio.run(scenario())
    assert answers == [False]  # "not running": the stop reached nothing
    assert (data / "side").read_text() == "ran\n"  # once
    assert (state, len(attempts)) == (ActivityState.SUCCEEDED, 1), attempts


def test_a_stop_that_reached_the_wrapper_after_its_command_ended_is_too_late(
    dockerd: PrivateDockerd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command exited 0; its wrapper, still copying its counters (held here: the file it
    writes them to is a FIFO no one reads yet), gets the stop (the daemon answers 204: the
    container ran). The stop reached nothing of the command, which the wrapper had reaped:
    the success stands, run once (it was recorded cancelled; a retry ran it again)."""
    monkeypatch.setenv("DOCKER_HOST", dockerd.host)
    data = tmp_path / "data"

    async def scenario() -> tuple[ActivityState, int, list[bool]]:
        async with engine_with(tmp_path, _workflow(ENDS_ON_GO)) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            act = wf.activities["w"]
            await _until(lambda: (data / "started").exists())
            rt = engine.runtimes.slots["docker"].runtime
            assert isinstance(rt, DockerRuntime)
            usage = Path(rt._jobs[act.key or ""].prefix + ".out") / "usage"
            os.mkfifo(usage)  # the wrapper blocks there once its command has ended
            hold = HeldEnds(rt)
            try:
                (data / "go").touch()
                await _until(lambda: (data / "side").exists())
                await asyncio.sleep(0.3)  # the command has exited; the wrapper waits
                engine.cancel(wf_id)
                await asyncio.sleep(0.5)  # the stop reached the wrapper

                # Its writer let go (if it still waits to open it), read to its end.
                fd = os.open(usage, os.O_RDONLY | os.O_NONBLOCK)
                try:
                    for _ in range(200):
                        await asyncio.sleep(0.05)
                        try:
                            if not os.read(fd, 65536):
                                break  # closed (or the wrapper gave up its open)
                        except BlockingIOError:
                            continue
                finally:
                    os.close(fd)
                await _until(lambda: hold.held)  # it ended: its end read and held
                usage.unlink()  # (its counters are not read from a FIFO)
            finally:
                hold.release()
            await asyncio.wait_for(engine.wait(wf_id), timeout=60)
            if repo.get_workflow(wf_id).state is WorkflowState.CANCELLED:  # type: ignore[union-attr]
                await engine.retry(wf_id)
                await asyncio.wait_for(engine.wait(wf_id), timeout=60)
            return act.state, len(repo.list_attempts(act.id)), hold.answers

    state, attempts, answers = asyncio.run(scenario())
    assert answers == [True]  # the container was running: the wrapper got the stop
    assert (data / "side").read_text() == "ran\n"  # once
    assert (state, attempts) == (ActivityState.SUCCEEDED, 1)


@pytest.mark.parametrize("script", ["traps the stop", "ended before it"])
def test_an_adopted_end_after_a_stop_is_judged_by_its_wrapper(
    dockerd: PrivateDockerd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str
) -> None:
    """The engine asks to stop the attempt and stops (its end, held, never recorded); the
    next engine adopts the ended container. One whose script trapped the stop and exited 0
    was stopped: cancelled. One that had ended on its own (its wrapper reaped its command
    before any signal came) keeps its success, run once (it was recorded cancelled)."""
    monkeypatch.setenv("DOCKER_HOST", dockerd.host)
    data = tmp_path / "data"
    traps = script == "traps the stop"

    async def first() -> int:
        text = _workflow(TRAPS_THE_STOP if traps else ENDS_ON_GO)
        async with engine_with(tmp_path, text) as (_, engine, wf_id):
            await engine.attach(wf_id)
            await _until(lambda: (data / "started").exists())
            rt = engine.runtimes.slots["docker"].runtime
            assert isinstance(rt, DockerRuntime)
            hold = HeldEnds(rt)  # never released: this engine records no end
            if not traps:
                (data / "go").touch()
                await _until(lambda: hold.held)
            engine.cancel(wf_id)
            await _until(lambda: hold.held and hold.answers)
            return wf_id

    wf_id = asyncio.run(first())

    async def second() -> tuple[ActivityState, int]:
        state = tmp_path / "state"
        repo = service.open_repository(state)
        engine = Engine(repo, state)
        await engine.start()
        try:
            wf = await engine.attach(wf_id)
            await asyncio.wait_for(engine.wait(wf_id), 60)
            act = wf.activities["w"]
            cancelled = repo.get_workflow(wf_id).state is WorkflowState.CANCELLED  # type: ignore[union-attr]
            if cancelled and not traps:  # (the trapping script would run for ever)
                await engine.retry(wf_id)
                await asyncio.wait_for(engine.wait(wf_id), 60)
            return act.state, len(repo.list_attempts(act.id))
        finally:
            await engine.stop()

    state, attempts = asyncio.run(second())
    if traps:
        assert (data / "side").read_text() == "stopped\n"
        assert state is ActivityState.CANCELLED
    else:
        assert (data / "side").read_text() == "ran\n"  # once
        assert (state, attempts) == (ActivityState.SUCCEEDED, 1)
