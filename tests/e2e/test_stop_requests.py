"""Stops the engine asks for (cancel, timeout) hold across a submit in flight and across an
engine killed before the stopped attempt ended (found by the hostile pass of issue 14).

Each activity writes its own side effects into the data dir; the tests judge those, not only
the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from akoflow import service
from akoflow.config import RuntimeConfig
from akoflow.engine import Engine
from akoflow.runtimes.base import JobSpec, RuntimeEvents, RuntimeUnavailable
from akoflow.runtimes.local import LocalRuntime
from akoflow.states import ActivityState, WorkflowState
from tests.conftest import Akoflow, start_cli, wait_for

A = ActivityState


def run_then_kill(wf: Path, state_dir: Path, side: Path, *, stored_start: bool = False) -> Path:
    """Start ``akoflow run`` of ``wf``, SIGKILL it once activity ``a`` started (its script
    touches ``side/started``; with ``stored_start``, once the store has its start too), and
    wait until ``a`` ended (it appends to ``side/a``) and its spawner recorded the end: its
    ``.exit`` record."""
    engine = start_cli(["run", str(wf), "--quiet", "--state-dir", str(state_dir)])
    try:
        wait_for(lambda: (side / "started").exists() or engine.poll() is not None, 60)
        if stored_start:  # its RUNNING record, within a second of its start
            repo = service.open_repository(state_dir)
            wait_for(lambda: repo.list_attempts(repo.list_activities(1)[0].id)[0].started_at, 30)
    finally:
        engine.kill()
        engine.communicate()
    wait_for(lambda: (side / "a").exists(), 30)
    # The spawner records the end right after the script's exit: wait for that record.
    record = next((state_dir / "runs").glob("1-*/attempts/a.1.exit"))
    wait_for(lambda: record.read_text().startswith("exit"), 30)
    return record


class SubmitFailsOnceAfterAGate(LocalRuntime):
    """A network-like runtime (submits run as tasks) whose first submit waits for the test,
    then fails transiently: the daemon went away while the engine was cancelling."""

    instant_submit = False
    gate: asyncio.Event
    submits: list[str]

    async def submit(self, job: JobSpec) -> dict[str, object]:
        self.submits.append(job.key)
        if len(self.submits) == 1:
            await self.gate.wait()
            raise RuntimeUnavailable("daemon went away during the submit")
        return await super().submit(job)


@pytest.mark.parametrize("scope", ["workflow", "activity"])
def test_a_cancel_while_a_submit_is_in_flight_that_then_fails_ends_the_run(
    tmp_path: Path, scope: str
) -> None:
    gate = asyncio.Event()
    submits: list[str] = []

    def factory(name: str, events: RuntimeEvents, config: RuntimeConfig | None) -> LocalRuntime:
        runtime = SubmitFailsOnceAfterAGate(name, config or RuntimeConfig.from_env(name), events)
        runtime.gate, runtime.submits = gate, submits
        return runtime

    data = tmp_path / "data"
    text = (
        "name: inflight\nspec:\n  activities:\n"
        f"    - name: a\n      run: echo ran >> {data}/ran.a\n"
        f"    - name: b\n      run: echo ran >> {data}/ran.b\n"
    )

    async def scenario() -> dict[str, ActivityState]:
        state = tmp_path / "state"
        repo = service.open_repository(state)
        wf_id = service.store(repo, state, service.validate_text(text, "t.yaml"), data)
        engine = Engine(repo, state, runtime_factory=factory, health_interval=0.2)
        await engine.start()
        try:
            wf = await engine.attach(wf_id)
            while "wf1-a-a1" not in submits:
                await asyncio.sleep(0.01)
            engine.cancel(wf_id, "a" if scope == "activity" else None)
            gate.set()
            final = await asyncio.wait_for(engine.wait(wf_id), 30)
            assert final is (WorkflowState.CANCELLED), {
                a.name: a.state for a in wf.activities.values()
            }
            return {a.name: a.state for a in wf.activities.values()}
        finally:
            await engine.stop()

    states = asyncio.run(scenario())
    assert states["a"] is A.CANCELLED
    assert not (data / "ran.a").exists()  # cancelled before it started: never started
    assert submits.count("wf1-a-a1") == 1 and "wf1-a-a2" not in submits
    if scope == "activity":  # the other activity was not the target
        assert states["b"] is A.SUCCEEDED and (data / "ran.b").read_text() == "ran\n"


TRAPPING = """\
      run: |
        trap 'echo stopping >> {data}/log; sleep 2; echo stopped-early >> {data}/log; exit 0' TERM
        echo start >> {data}/log
        sleep 30 &
        wait
        echo finished >> {data}/log
"""


def stop_workflow(path: Path, data: Path, *, timeout: str | None) -> None:
    limit = f"      timeout: {timeout}\n" if timeout else ""
    path.write_text(
        "name: stop\nspec:\n  activities:\n    - name: job\n"
        + limit
        + TRAPPING.format(data=data)
        + f"    - name: consumer\n      dependsOn: [job]\n      run: echo consumed >> {data}/log\n"
    )


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def started_job(state: Path, wf: Path, data: Path) -> Engine:
    """An engine running the stored workflow (id 1) whose script has started."""
    repo = service.open_repository(state)
    wf_id = service.store(repo, state, service.validate_text(wf.read_text(), "w"), data)
    engine = Engine(repo, state)
    await engine.start()
    await engine.attach(wf_id)
    while "start" not in lines(data / "log"):
        await asyncio.sleep(0.02)
    return engine


def assert_stopped_early(log: list[str]) -> None:
    """The script started, was stopped (a resumed engine asks again: the trap may run twice)
    and never finished; its consumer never ran."""
    assert log[0] == "start" and log[-1] == "stopped-early", log
    assert set(log[1:]) == {"stopping", "stopped-early"}, log


def test_an_attempt_stopped_by_its_timeout_is_no_success_after_the_engine_dies(
    tmp_path: Path, state_dir: Path, akoflow: Akoflow
) -> None:
    """The timeout's TERM reaches the script, whose trap cleans up for 2 s and exits 0; the
    engine is SIGKILLed in between. The resumed engine collects exit 0 and must still record
    the timeout (and skip the consumer), as it does without the kill."""
    data, wf = tmp_path / "data", tmp_path / "stop.yaml"
    stop_workflow(wf, data, timeout="1s")
    engine = start_cli(
        ["run", str(wf), "-q", "--state-dir", str(state_dir), "--data-dir", str(data)]
    )
    try:
        wait_for(lambda: "stopping" in lines(data / "log"), timeout=60)
    finally:
        engine.kill()
        engine.communicate()
    wait_for(lambda: "stopped-early" in lines(data / "log"), timeout=30)
    done = akoflow("resume", "1")
    assert done.returncode == 1, done.stdout + done.stderr
    assert_stopped_early(lines(data / "log"))
    repo = service.open_repository(state_dir)
    (job, consumer) = repo.list_activities(1)
    assert (job.state, job.reason) == (A.FAILED, "timed out after 1s")
    assert consumer.state is A.SKIPPED


def test_a_timeout_counts_from_the_attempts_start_across_a_restart(tmp_path: Path) -> None:
    """An engine stops while the attempt runs; a second engine adopts it a while later: the
    timeout left is the limit minus the time it already ran, not the whole limit again."""
    data, wf = tmp_path / "data", tmp_path / "stop.yaml"
    stop_workflow(wf, data, timeout="20s")
    state = tmp_path / "state"
    unwatched = 1.0

    async def start_then_leave() -> None:
        engine = await started_job(state, wf, data)
        await engine.stop()  # the attempt goes on; its start is recorded
        await asyncio.sleep(unwatched)

    async def adopt() -> tuple[float, ActivityState]:
        repo = service.open_repository(state)
        engine = Engine(repo, state)
        await engine.start()
        try:
            run = await engine.attach(1)
            job = run.activities["job"]
            assert job.timer is not None
            left = job.timer.when() - asyncio.get_running_loop().time()
            engine.cancel(1)
            return left, await asyncio.wait_for(engine.wait(1), 60)
        finally:
            await engine.stop()

    asyncio.run(start_then_leave())
    left, final = asyncio.run(adopt())
    assert 0 < left <= 20 - unwatched, left
    assert final is WorkflowState.CANCELLED
    assert "finished" not in lines(data / "log")


def test_a_cancelled_activity_stays_cancelled_when_the_engine_dies_before_it_ends(
    tmp_path: Path,
) -> None:
    """A per-activity cancel (the server's route) whose TERM the script traps and survives
    with exit 0 while the engine is gone: the next engine records it cancelled, and its
    dependent never runs."""
    data, wf = tmp_path / "data", tmp_path / "stop.yaml"
    stop_workflow(wf, data, timeout=None)
    state = tmp_path / "state"

    async def cancel_then_leave() -> None:
        engine = await started_job(state, wf, data)
        engine.cancel(1, "job")
        while "stopping" not in lines(data / "log"):
            await asyncio.sleep(0.02)
        await engine.stop()  # the attempt goes on (its trap), no engine watches it

    async def resume() -> WorkflowState:
        repo = service.open_repository(state)
        engine = Engine(repo, state)
        await engine.start()
        try:
            await engine.attach(1)
            return await asyncio.wait_for(engine.wait(1), 60)
        finally:
            await engine.stop()

    asyncio.run(cancel_then_leave())
    assert asyncio.run(resume()) is WorkflowState.CANCELLED
    repo = service.open_repository(state)
    (job, consumer) = repo.list_activities(1)
    assert job.state is A.CANCELLED and consumer.state is A.SKIPPED
    assert_stopped_early(lines(data / "log"))
    assert [a.stop_reason for a in repo.list_attempts(job.id)] == ["cancel"]


def test_cancelling_a_run_cancels_every_waiting_activity_rather_than_skipping_them(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    text = (
        "name: chain\nspec:\n  activities:\n"
        f"    - name: a\n      run: echo start >> {data}/log; sleep 30\n"
        "    - name: b\n      dependsOn: [a]\n      run: 'true'\n"
        "    - name: c\n      dependsOn: [b]\n      run: 'true'\n"
        "    - name: d\n      run: 'true'\n      dependsOn: [a]\n"
    )

    async def scenario() -> dict[str, tuple[ActivityState, str | None]]:
        state = tmp_path / "state"
        repo = service.open_repository(state)
        wf_id = service.store(repo, state, service.validate_text(text, "t.yaml"), data)
        engine = Engine(repo, state)
        await engine.start()
        try:
            wf = await engine.attach(wf_id)
            while "start" not in lines(data / "log"):
                await asyncio.sleep(0.02)
            engine.cancel(wf_id)
            assert await asyncio.wait_for(engine.wait(wf_id), 30) is WorkflowState.CANCELLED
            return {a.name: (a.state, a.reason) for a in wf.activities.values()}
        finally:
            await engine.stop()

    states = asyncio.run(scenario())
    assert states == {name: (A.CANCELLED, "cancelled") for name in "abcd"}


class SlowToAnswer(LocalRuntime):
    """A network-like runtime whose submit returns its handle only after the attempt ended
    (a container that finishes before the daemon's answer to an inspect arrives)."""

    instant_submit = False
    released: list[tuple[str, dict[str, object]]]

    async def submit(self, job: JobSpec) -> dict[str, object]:
        handle = await super().submit(job)
        exit_file = Path(str(job.attempt_prefix) + ".exit")
        while "exit" not in (exit_file.read_text() if exit_file.exists() else ""):
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # the end event is processed before this returns
        return {**handle, "marker": job.key}

    async def release(self, key: str, handle: Mapping[str, Any], *, succeeded: bool) -> None:
        self.released.append((key, dict(handle)))


def test_an_attempt_that_ends_before_its_submit_returns_is_released_with_its_handle(
    tmp_path: Path,
) -> None:
    released: list[tuple[str, dict[str, object]]] = []

    def factory(name: str, events: RuntimeEvents, config: RuntimeConfig | None) -> LocalRuntime:
        runtime = SlowToAnswer(name, config or RuntimeConfig.from_env(name), events)
        runtime.released = released
        return runtime

    data = tmp_path / "data"
    text = f"name: quick\nspec:\n  activities:\n    - name: a\n      run: echo ran >> {data}/ran\n"

    async def scenario() -> WorkflowState:
        state = tmp_path / "state"
        repo = service.open_repository(state)
        wf_id = service.store(repo, state, service.validate_text(text, "t.yaml"), data)
        engine = Engine(repo, state, runtime_factory=factory)
        await engine.start()
        try:
            await engine.attach(wf_id)
            return await asyncio.wait_for(engine.wait(wf_id), 30)
        finally:
            await engine.stop()

    assert asyncio.run(scenario()) is WorkflowState.SUCCEEDED
    # Released once, with the handle the submit returned (it was released with {}: the
    # container it names was left behind), and before the run was recorded finished.
    assert [(key, handle.get("marker")) for key, handle in released] == [("wf1-a-a1", "wf1-a-a1")]
    assert (data / "ran").read_text() == "ran\n"


def test_an_attempt_that_ended_before_the_cancel_stays_succeeded(
    tmp_path: Path, akoflow: Akoflow, state_dir: Path
) -> None:
    """The engine is killed while an activity runs; the activity ends (exit 0, its side
    effect written) while no engine watches; then the run is cancelled. Its end came before
    the cancel: the next engine collected it, then the cancel stopped it, and it was recorded
    cancelled (exit 0) and would have been run again; it is a success, its dependent is
    cancelled."""
    side = tmp_path / "side"
    side.mkdir()
    wf = tmp_path / "wf.yaml"
    wf.write_text(
        "name: ended-first\nspec:\n  activities:\n"
        f"    - name: a\n      run: 'touch {side}/started; sleep 1; echo once >> {side}/a'\n"
        f"    - name: b\n      run: 'echo once >> {side}/b'\n      dependsOn: [a]\n"
    )
    run_then_kill(wf, state_dir, side)
    cancelled = akoflow("cancel", "1")
    assert cancelled.returncode == 0, cancelled.stderr
    repo = service.open_repository(state_dir)
    (a, b) = repo.list_activities(1)
    assert (a.state, b.state) == (A.SUCCEEDED, A.CANCELLED), (a, b)
    assert [str(t.state) for t in repo.list_attempts(a.id)] == ["succeeded"]
    assert repo.get_workflow(1).state is WorkflowState.CANCELLED  # type: ignore[union-attr]
    assert lines(side / "a") == ["once"] and not (side / "b").exists()
