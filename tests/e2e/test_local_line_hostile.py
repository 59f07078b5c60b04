"""The local runtime's own line of attempts when starting a spawner fails.

A spawner that dies (SIGKILL) is replaced by a new one when the next attempt is sent; that
start can fail (here: the engine is out of file descriptors, as a host short of processes or
memory would make it). Before the line, the attempt being submitted failed with the error;
with the line, the attempt is sent from the callback that read an end, and a failed start
left it "starting" forever, with the attempts behind it in line: the run never ended, and a
cancel could not end it either. What must hold: the run ends (those attempts fail with the
error), nothing runs twice, and once starting works again, attempts start again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import select
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from akoflow import service
from akoflow.engine import Engine, WorkflowRun
from akoflow.runtimes.local import LocalRuntime
from akoflow.states import ActivityState, WorkflowState
from akoflow.store import Repository
from tests.e2e.test_engine_inprocess import engine_with
from tests.e2e.test_local_line import _act, _workflow

BOUND = 30.0  # s: a run that does not end in this long hangs


@contextlib.contextmanager
def _no_descriptor_but(fd: int) -> Iterator[None]:
    """Until the end of the block, this process can open one descriptor at a time, and only
    once ``fd`` is closed: every lower number is taken, and none above it may be used."""
    fillers: list[int] = []
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        while True:
            filler = os.open(os.devnull, os.O_RDONLY)
            if filler > fd:
                os.close(filler)
                break
            fillers.append(filler)
        resource.setrlimit(resource.RLIMIT_NOFILE, (fd + 1, hard))
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        for filler in fillers:
            os.close(filler)


def _local(engine: Engine) -> LocalRuntime:
    runtime = engine.runtimes.slots["local"].runtime
    assert isinstance(runtime, LocalRuntime)
    return runtime


async def _until(predicate: Callable[[], object], what: str) -> None:
    for _ in range(int(BOUND / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not reached in {BOUND:g} s: {what}")


async def _ended(engine: Engine, wf_id: int) -> WorkflowState:
    """The run's end, or a failure if it does not come within BOUND (then cancelled, so
    that the test ends)."""
    try:
        return await asyncio.wait_for(engine.wait(wf_id), BOUND)
    except TimeoutError:
        wf = engine.workflows[wf_id]
        states = {a.name: a.state.value for a in wf.activities.values()}
        engine.cancel(wf_id)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(engine.wait(wf_id), 5)
        raise AssertionError(f"the run hung: {states}") from None


def _blocked_line(blocker: str) -> list[str]:
    """Four quick attempts, a blocker running ``blocker``, then four that append to
    count.wN: with MAX_PARALLEL 1, the last four wait in the line while the blocker runs."""
    acts = [_act(f"t{i}", "true") for i in range(4)]
    acts.append(_act("blocker", blocker))
    return acts + [_act(f"w{i}", f"echo run >> count.w{i}") for i in range(4)]


async def _line_waits_behind_blocker(engine: Engine, data: Path) -> None:
    await _until(
        lambda: (data / "blocker.on").exists() and _local(engine).line_length > 0,
        "the blocker runs with attempts in line",
    )


def test_a_spawner_that_cannot_be_started_again_fails_the_line_instead_of_hanging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCAL_MAX_PARALLEL", "1")
    monkeypatch.setenv("LOCAL_SPAWNERS", "1")
    acts = _blocked_line("touch blocker.on; sleep 30")
    data = tmp_path / "data"

    async def scenario() -> None:
        async with engine_with(tmp_path, _workflow(acts)) as (_, engine, wf_id):
            wf = await engine.attach(wf_id)
            await _line_waits_behind_blocker(engine, data)
            link = _local(engine)._links[0]
            assert link.pid is not None and link._sock is not None
            with _no_descriptor_but(link._sock.fileno()):
                os.kill(link.pid, signal.SIGKILL)  # its replacement cannot be started
                state = await _ended(engine, wf_id)
            assert state is WorkflowState.FAILED
            ended = {a.name: (a.state, a.reason or "") for a in wf.activities.values()}
            assert ended["blocker"][0] is ActivityState.FAILED
            for i in range(4):
                state_i, reason = ended[f"w{i}"]
                assert state_i is ActivityState.FAILED
                assert "Too many open files" in reason, reason
            assert _local(engine).line_length == 0 and not _local(engine)._starting

    asyncio.run(scenario())
    assert not list(data.glob("count.w*"))  # none of them ran


def test_a_failed_spawner_start_at_submit_leaves_no_phantom_that_holds_later_attempts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A submit whose spawner cannot be started fails; the attempts after it, once spawners
    can be started again, run (an attempt counted as starting forever kept them in line)."""
    monkeypatch.setenv("LOCAL_MAX_PARALLEL", "1")
    monkeypatch.setenv("LOCAL_SPAWNERS", "1")
    acts = [_act("first", "touch first.on; sleep 30")]
    acts.append(_act("second", "echo run >> count.second"))
    acts.append(_act("later", "echo run >> count.later", "      dependsOn: [second]\n"))
    acts.append(_act("other", "echo run >> count.other", "      dependsOn: [first]\n"))
    acts.append(_act("free", "sleep 0.5; echo run >> count.free"))
    data = tmp_path / "data"

    async def scenario() -> None:
        async with engine_with(tmp_path, _workflow(acts)) as (_, engine, wf_id):
            wf = await engine.attach(wf_id)
            await _until(lambda: (data / "first.on").exists(), "first runs")
            link = _local(engine)._links[0]
            assert link.pid is not None and link._sock is not None
            second = wf.activities["second"]
            with _no_descriptor_but(link._sock.fileno()):
                os.kill(link.pid, signal.SIGKILL)
                # first ends (lost), second is submitted and its spawner cannot start
                await _until(lambda: second.state.is_final, "second ended")
            assert second.state is ActivityState.FAILED, second.reason
            assert "Too many open files" in (second.reason or "")
            state = await _ended(engine, wf_id)
            assert state is WorkflowState.FAILED
            ended = {a.name: a.state for a in wf.activities.values()}
            # `free` was submitted after second failed: it failed alike or, once the engine
            # could open files again, it ran; it never stayed behind a phantom.
            assert ended["free"] in (ActivityState.FAILED, ActivityState.SUCCEEDED)
            assert ended["later"] is ActivityState.SKIPPED
            assert ended["other"] is ActivityState.SKIPPED
            assert not _local(engine)._starting and not _local(engine)._waiting

    asyncio.run(scenario())
    assert not (data / "count.second").exists()
    counts = {p.name: len(p.read_text().splitlines()) for p in data.glob("count.*")}
    assert set(counts.values()) <= {1}


def test_a_cancel_takes_attempts_out_of_the_line_in_its_own_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancel (the first Ctrl-C or a SIGTERM: Engine.cancel in a signal handler) left the
    attempts in line until the runtime's cancel, a task, ran in a later turn of the event
    loop. An end read before that, in the same turn (by serve() while the engine records a
    batch, or by the spawner's reader), sent the next of them to the spawner: `akoflow run`
    sent attempts from its line 40-70 ms after a SIGTERM's cancel was recorded (the first
    Ctrl-C's message is printed meanwhile), and some of them ran."""
    monkeypatch.setenv("LOCAL_MAX_PARALLEL", "1")
    acts = _blocked_line("touch blocker.on; until [ -e go ]; do sleep 0.01; done")
    data = tmp_path / "data"

    async def scenario() -> None:
        async with engine_with(tmp_path, _workflow(acts)) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            runtime = _local(engine)
            await _line_waits_behind_blocker(engine, data)
            blocker = wf.activities["blocker"]
            record = Path(str(blocker.handle["prefix"]) + ".exit")
            socks = [link._sock for link in runtime._links if link._sock is not None]
            (data / "go").touch()
            # From here on the event loop is held: the blocker ends, its end waits unread.
            for _ in range(int(BOUND / 0.005)):
                if record.read_bytes().startswith(b"exit "):
                    break
                time.sleep(0.005)
            assert select.select(socks, [], [], BOUND)[0], "the spawner never said it ended"
            engine.cancel(wf_id)
            runtime.serve()  # the end is read in the cancel's own turn
            assert runtime.line_length == 0 and not runtime._starting
            assert await _ended(engine, wf_id) is WorkflowState.CANCELLED
            waited = [a for a in wf.activities.values() if a.name.startswith("w")]
            assert {a.state for a in waited} == {ActivityState.CANCELLED}
            handed = [att for a in waited for att in repo.list_attempts(a.id)]
            assert handed, "no attempt waited in the line: this test proves nothing"
            assert [att.started_at for att in handed] == [None] * len(handed)

    asyncio.run(scenario())
    assert not list(data.glob("count.w*"))  # none of them ran


def test_a_cancel_while_a_batch_is_staged_submits_none_of_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A batch's attempts are staged at once (their files copied), then submitted together.
    Each checked for a cancel after its own copies, but a cancel that came while the others'
    were awaited (a Ctrl-C's handler between two turns) was not seen by those done already:
    they were handed to the runtime and ran (2 of 10 hostile trials: attempts sent 160-250 ms
    after the cancel was recorded)."""
    monkeypatch.setenv("LOCAL_MAX_PARALLEL", "4")
    text = _workflow([_act(f"s{i}", f"echo run >> count.s{i}") for i in range(3)])
    data = tmp_path / "data"

    async def scenario() -> None:
        async with engine_with(tmp_path, text) as (repo, engine, wf_id):
            plane = engine.attempts._data
            real_stage_in = plane.stage_in

            async def stage_in(act: Any, runtime: Any) -> None:
                await real_stage_in(act, runtime)
                if act.name == "s2":  # the last copy ends after a cancel
                    await asyncio.sleep(0.05)
                    engine.cancel(wf_id)

            monkeypatch.setattr(plane, "stage_in", stage_in)
            monkeypatch.setattr(plane, "may_stage_in", lambda act, runtime: True)  # copies
            wf = await engine.attach(wf_id)
            assert await _ended(engine, wf_id) is WorkflowState.CANCELLED
            assert {a.state for a in wf.activities.values()} == {ActivityState.CANCELLED}
            for act in wf.activities.values():
                assert [att.started_at for att in repo.list_attempts(act.id)] in ([], [None])

    asyncio.run(scenario())
    assert not list(data.glob("count.s*"))  # none of them ran
    # Not started because cancelled: no "failed to submit" error with a traceback.
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@contextlib.asynccontextmanager
async def warm_engine(
    tmp_path: Path, **engine_kwargs: Any
) -> AsyncIterator[tuple[Repository, Engine]]:
    """An engine whose local runtime ran one activity: its spawners are started."""
    warm = _workflow([_act("warm", "true")])
    async with engine_with(tmp_path, warm, **engine_kwargs) as (repo, engine, warm_id):
        await engine.attach(warm_id)
        assert await _ended(engine, warm_id) is WorkflowState.SUCCEEDED
        yield repo, engine


@contextlib.asynccontextmanager
async def starts_held_by_a_stopped_spawner(
    engine: Engine, repo: Repository, tmp_path: Path, n: int
) -> AsyncIterator[tuple[int, WorkflowRun]]:
    """A run of ``n`` activities (``echo once >> aI`` in tmp_path/data) whose starts were
    all sent to the local runtime's spawner (one, started already) while it was stopped
    (SIGSTOP): it never reads them. The spawner is killed (SIGKILL) when the block ends,
    whatever happens in it: never left stopped."""
    runtime = _local(engine)
    pid = runtime._links[0].pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        text = _workflow([_act(f"a{i}", f"echo once >> a{i}") for i in range(n)])
        prepared = service.validate_text(text, "test.yaml")
        wf_id = service.store(repo, tmp_path / "state", prepared, tmp_path / "data")
        wf = await engine.attach(wf_id)
        await _until(lambda: len(runtime._starting) == n, "the starts sent to the spawner")
        yield wf_id, wf
    finally:
        os.kill(pid, signal.SIGKILL)


def test_starts_a_dead_spawner_never_read_run_again_as_new_attempts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The spawner is stopped (SIGSTOP) while the engine sends it six starts, then killed:
    # it never read them. Each counted as ended with its exit code lost (the run failed,
    # though none had run); the engine now claims each (the proof it never ran and never
    # will) and runs it again as a new attempt on a new spawner, no retry spent.
    monkeypatch.setenv("LOCAL_MAX_PARALLEL", "8")
    monkeypatch.setenv("LOCAL_SPAWNERS", "1")
    n = 6
    data = tmp_path / "data"

    async def scenario() -> None:
        async with warm_engine(tmp_path) as (repo, engine):
            runtime = _local(engine)
            pid = runtime._links[0].pid
            async with starts_held_by_a_stopped_spawner(engine, repo, tmp_path, n) as (wf_id, wf):
                pass  # killed here
            assert await _ended(engine, wf_id) is WorkflowState.SUCCEEDED
            for act in wf.activities.values():
                attempts = [(a.number, a.state) for a in repo.list_attempts(act.id)]
                assert attempts == [(1, "lost"), (2, "succeeded")], (act.name, attempts)
            assert runtime._links[0].pid not in (None, pid)  # a new spawner ran them

    asyncio.run(scenario())
    for i in range(n):
        assert (data / f"a{i}").read_text() == "once\n"
