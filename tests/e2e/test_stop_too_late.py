"""A stop that reaches an attempt after it ended on its own does not undo its success.

A hostile pass (h89) pressed Ctrl-C during a run of 3,000 short activities: the few that had
just exited 0, their ends not read yet, were recorded ``cancelled`` (exit code 0), and
``akoflow retry`` ran them again (their side effects twice). The engine had asked the local
runtime to stop them; the spawner signalled a process that was already a zombie.

Now the spawner signals only a child that has not ended and says, with its end, whether a
stop reached it: an end no stop reached is the attempt's own, a success included. A script
that traps the stop and exits 0 was stopped: not a success (as before).

Real spawners, real SIGSTOP/SIGCONT of them to hold the end unread while the stop is asked.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import psutil

from akoflow.states import ActivityState
from tests.e2e.test_engine_inprocess import engine_with
from tests.late_stop import ENDS_ON_GO, TRAPS_THE_STOP
from tests.late_stop import until as _until


def _workflow(script: str, extra: str = "") -> str:
    lines = "".join(f"        {line}\n" for line in script.splitlines())
    return f"name: late\nspec:\n  activities:\n    - name: w\n{extra}      run: |\n{lines}"


def _zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_an_end_the_stop_came_too_late_for_stays_a_success(tmp_path: Path) -> None:
    data = tmp_path / "data"

    async def scenario() -> tuple[ActivityState, int | None, int]:
        async with engine_with(tmp_path, _workflow(ENDS_ON_GO)) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            act = wf.activities["w"]
            await _until(lambda: (data / "started").exists())
            runtime = engine.runtimes.slots["local"].runtime
            await _until(lambda: act.key in runtime._jobs)  # its pid known
            pid = runtime._jobs[act.key].pid
            spawners = [link.pid for link in runtime._links if link.pid is not None]
            for spawner in spawners:  # its end stays unread while it is asked to stop
                os.kill(spawner, signal.SIGSTOP)
            try:
                (data / "go").touch()
                await _until(lambda: _zombie(pid))  # ended on its own, not reaped
                engine.cancel(wf_id)
                await asyncio.sleep(0.3)  # the stop is on its way to the spawner
            finally:
                for spawner in spawners:
                    os.kill(spawner, signal.SIGCONT)
            await asyncio.wait_for(engine.wait(wf_id), timeout=60)
            attempts = repo.list_attempts(act.id)
            return act.state, act.exit_code, len(attempts)

    state, code, attempts = asyncio.run(scenario())
    assert (state, code, attempts) == (ActivityState.SUCCEEDED, 0, 1)
    assert (data / "side").read_text() == "ran\n"  # ran once; a retry has nothing to run


def test_a_script_that_traps_the_stop_and_exits_0_was_stopped(tmp_path: Path) -> None:
    data = tmp_path / "data"

    async def scenario() -> tuple[ActivityState, int | None]:
        async with engine_with(tmp_path, _workflow(TRAPS_THE_STOP)) as (_, engine, wf_id):
            wf = await engine.attach(wf_id)
            await _until(lambda: (data / "started").exists())
            engine.cancel(wf_id)
            await asyncio.wait_for(engine.wait(wf_id), timeout=60)
            return wf.activities["w"].state, wf.activities["w"].exit_code

    state, code = asyncio.run(scenario())
    assert (data / "side").read_text() == "stopped\n"  # the stop reached it, it exited 0
    assert (state, code) == (ActivityState.CANCELLED, 0)


def test_an_end_heard_after_the_deadline_it_came_before_stays_a_success(tmp_path: Path) -> None:
    """The attempt exits 0 before its timeout; its end reaches the engine only after the
    deadline (the engine's loop was busy): the timeout's stop finds it ended. Before, it was
    recorded timed out and run again (h91: 6 activities in 2 of 15 timeout runs)."""
    data = tmp_path / "data"

    async def scenario() -> tuple[ActivityState, int | None, int]:
        text = _workflow(ENDS_ON_GO, extra="      timeout: 2s\n")
        async with engine_with(tmp_path, text) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            act = wf.activities["w"]
            await _until(lambda: (data / "started").exists())
            runtime = engine.runtimes.slots["local"].runtime
            await _until(lambda: act.key in runtime._jobs)
            prefix = runtime._jobs[act.key].prefix
            loop = asyncio.get_running_loop()
            links = [link for link in runtime._links if link._sock is not None]
            for link in links:  # what the spawners say waits unread; the engine still sends
                loop.remove_reader(link._sock.fileno())
            try:
                (data / "go").touch()
                # Its spawner saw it end and recorded it, in time.
                await _until(lambda: Path(prefix + ".exit").read_bytes().startswith(b"exit 0"))
                await _until(lambda: act.timed_out, seconds=10)  # the deadline, its end unread
                await asyncio.sleep(0.3)  # the stop is on its way to the spawner
            finally:
                for link in links:
                    loop.add_reader(link._sock.fileno(), link._readable)
            await asyncio.wait_for(engine.wait(wf_id), timeout=60)
            return act.state, act.exit_code, len(repo.list_attempts(act.id))

    state, code, attempts = asyncio.run(scenario())
    assert (state, code, attempts) == (ActivityState.SUCCEEDED, 0, 1)
    assert (data / "side").read_text() == "ran\n"
