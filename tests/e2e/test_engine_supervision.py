"""No engine loop ends silently: failures injected into each loop of a real engine.

The runtime is the real local runtime; the tests replace one method of it (or of the store)
with one that raises or hangs, the way a broken backend or a full disk would, and check that
the run still finishes, or fails with the reason, and that the traceback is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from akoflow import service
from akoflow.config import RuntimeConfig
from akoflow.engine import Engine
from akoflow.engine.loops import EngineFailure
from akoflow.provenance.recorder import ProvenanceRecorder
from akoflow.runtimes.base import Health, Metrics, RuntimeEvents
from akoflow.runtimes.local import LocalRuntime
from akoflow.states import ActivityState, WorkflowState
from akoflow.store import Repository
from tests.e2e.test_engine_inprocess import engine_with as inprocess_engine_with

pytestmark = pytest.mark.timeout(120)

LEDGER_WORKFLOW = (
    "name: sup\nspec:\n  activities:\n"
    "    - name: a\n      run: echo a >> ../ledger; sleep 0.3; echo a > a.txt\n"
    "    - name: b\n      dependsOn: [a]\n      run: echo b >> ../ledger; cat a.txt > b.txt\n"
)


def ledger(tmp_path: Path) -> list[str]:
    path = tmp_path / "ledger"
    return path.read_text().split() if path.exists() else []


@contextlib.asynccontextmanager
async def engine_with(
    tmp_path: Path, text: str = LEDGER_WORKFLOW, repo: Repository | None = None, **kwargs: Any
) -> AsyncIterator[tuple[Repository, Engine, int]]:
    async with inprocess_engine_with(tmp_path, text, repo, **kwargs) as started:
        yield started


def local_factory(cls: type[LocalRuntime]) -> Callable[..., Any]:
    def factory(name: str, events: RuntimeEvents, config: RuntimeConfig | None) -> Any:
        return cls(name, config or RuntimeConfig.from_env(name), events)

    return factory


class FlakyLocal(LocalRuntime):
    """Health fails once in two; logs and metrics always fail."""

    calls = 0

    async def health(self) -> Health:
        FlakyLocal.calls += 1
        if FlakyLocal.calls % 2 == 0:
            raise RuntimeError("health probe exploded")
        return await super().health()

    async def logs(self, key: str, handle: Mapping[str, Any], offsets: Mapping[str, int]) -> Any:
        raise RuntimeError("log backend exploded")

    async def metrics(self, jobs: Mapping[str, Mapping[str, Any]]) -> dict[str, Metrics]:
        raise RuntimeError("metrics backend exploded")


def test_failing_health_logs_and_metrics_do_not_stop_the_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with engine_with(
            tmp_path,
            runtime_factory=local_factory(FlakyLocal),
            health_interval=0.05,
            log_interval=0.05,
            metrics_interval=0.05,
        ) as (_, engine, wf_id):
            await engine.attach(wf_id)
            assert await asyncio.wait_for(engine.wait(wf_id), 60) is WorkflowState.SUCCEEDED
            # The loops are still alive after their failures.
            assert all(not t.done() for t in engine._tasks)

    with caplog.at_level(logging.INFO):
        asyncio.run(scenario())
    assert ledger(tmp_path) == ["a", "b"]
    assert "log backend exploded" in caplog.text
    assert "metrics backend exploded" in caplog.text
    assert "health probe exploded" in caplog.text


class HangingLocal(LocalRuntime):
    """``local-slow``'s health check never answers once the test says so; ``local`` is down
    (NOT_READY) while a switch file exists, like a stopped daemon."""

    hang = False
    slow_timeout = 3600.0
    switch: Path | None = None

    @property
    def health_timeout(self) -> float:
        return HangingLocal.slow_timeout if self.name == "local-slow" else 10.0

    async def health(self) -> Health:
        if self.name == "local-slow" and HangingLocal.hang:
            await asyncio.Event().wait()
        if self.name == "local" and HangingLocal.switch and HangingLocal.switch.exists():
            return Health(False, "switched off by the test")
        return await super().health()


async def runtime_status(repo: Repository, name: str, want: str) -> str:
    for _ in range(400):
        rt = repo.get_runtime(name)
        if rt is not None and rt.status == want:
            return rt.reason or ""
        await asyncio.sleep(0.05)
    raise AssertionError(f"runtime {name} never {want}")


def test_hanging_health_check_never_delays_another_runtime(tmp_path: Path) -> None:
    # local-slow's check hangs for an hour: local must still go down and come back, twice,
    # on its own health period (checked one after the other, it would wait for the hour).
    HangingLocal.hang, HangingLocal.slow_timeout = False, 3600.0
    switch = HangingLocal.switch = tmp_path / "local-down"
    text = LEDGER_WORKFLOW.replace("run: echo b", "runtime: local-slow\n      run: echo b")

    async def scenario() -> None:
        factory = local_factory(HangingLocal)
        async with engine_with(tmp_path, text, runtime_factory=factory, health_interval=0.05) as (
            repo,
            engine,
            wf_id,
        ):
            await engine.attach(wf_id)
            HangingLocal.hang = True
            await asyncio.sleep(0.2)  # local-slow's check is now stuck
            for _ in range(2):
                switch.touch()
                await runtime_status(repo, "local", "NOT_READY")
                switch.unlink()
                await runtime_status(repo, "local", "READY")
            HangingLocal.hang = False

    asyncio.run(scenario())


def test_health_check_that_times_out_turns_not_ready_then_recovers(tmp_path: Path) -> None:
    HangingLocal.hang, HangingLocal.slow_timeout = False, 0.3
    HangingLocal.switch = None
    text = LEDGER_WORKFLOW.replace("run: echo b", "runtime: local-slow\n      run: echo b")

    async def scenario() -> None:
        factory = local_factory(HangingLocal)
        async with engine_with(tmp_path, text, runtime_factory=factory, health_interval=0.05) as (
            repo,
            engine,
            wf_id,
        ):
            HangingLocal.hang = True
            await engine.attach(wf_id)
            reason = await runtime_status(repo, "local-slow", "NOT_READY")
            assert reason == "health check timed out after 0.3 s"
            for _ in range(400):
                if ledger(tmp_path) == ["a"]:
                    break
                await asyncio.sleep(0.05)
            assert ledger(tmp_path) == ["a"]  # b waits: its runtime does not answer
            HangingLocal.hang = False  # it answers again: the run completes
            assert await asyncio.wait_for(engine.wait(wf_id), 60) is WorkflowState.SUCCEEDED

    asyncio.run(scenario())
    assert ledger(tmp_path) == ["a", "b"]


def test_health_timeout_setting() -> None:
    class Events:
        def job_running(self, key: str, node: str | None) -> None: ...
        def job_finished(self, key: str, outcome: Any) -> None: ...

    def timeout(value: str | None) -> float:
        env = {} if value is None else {"LOCAL_X_HEALTH_TIMEOUT": value}
        rt = LocalRuntime("local-x", RuntimeConfig.from_env("local-x", env), Events())
        return rt.health_timeout

    assert timeout(None) == 10.0
    assert timeout("2.5") == 2.5
    for bad in ("0", "-1", "soon", "inf", "nan"):
        with pytest.raises(ValueError, match="LOCAL_X_HEALTH_TIMEOUT must be a positive"):
            timeout(bad)


class FailingStore(Repository):
    """A store whose first record of a finished attempt fails, as on a full disk."""

    failures = 1

    def attempt_finished(self, *args: Any, **kwargs: Any) -> None:
        if FailingStore.failures > 0:
            FailingStore.failures -= 1
            raise sqlite3.OperationalError("disk I/O error")
        super().attempt_finished(*args, **kwargs)


def test_store_failure_in_the_processor_fails_the_wait_then_resume_finishes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    service.open_repository(state).close()
    FailingStore.failures = 1

    async def scenario() -> None:
        repo = FailingStore(state / service.DB_NAME)
        async with engine_with(tmp_path, repo=repo) as (_, engine, wf_id):
            await engine.attach(wf_id)
            with pytest.raises(EngineFailure, match="disk I/O error"):
                await asyncio.wait_for(engine.wait(wf_id), 60)
            assert engine.failure is not None
            with pytest.raises(EngineFailure):  # a failed engine takes no new work
                await engine.attach(wf_id)
        # The store is as a crash leaves it: not final, no owner. A new engine finishes it.
        rec = repo.get_workflow(wf_id)
        assert rec is not None and not rec.state.is_final and rec.owner_pid is None
        engine = Engine(repo, state)
        await engine.start()
        try:
            await engine.attach(wf_id)
            assert await asyncio.wait_for(engine.wait(wf_id), 60) is WorkflowState.SUCCEEDED
        finally:
            await engine.stop()
        states = {a.name: a.state for a in repo.list_activities(wf_id)}
        assert states == {"a": ActivityState.SUCCEEDED, "b": ActivityState.SUCCEEDED}

    with caplog.at_level(logging.ERROR):
        asyncio.run(scenario())
    # Nothing ran twice: the resumed engine collected a's exit instead of running it again.
    assert ledger(tmp_path) == ["a", "b"]
    assert "Traceback" in caplog.text and "disk I/O error" in caplog.text


def test_provenance_failure_is_logged_and_the_run_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: ProvenanceRecorder, act: Any) -> None:
        raise UnicodeEncodeError("utf-8", "bad\udcffname", 3, 4, "surrogates not allowed")

    monkeypatch.setattr(ProvenanceRecorder, "_record_generated", broken)

    async def scenario() -> None:
        async with engine_with(tmp_path) as (repo, engine, wf_id):
            await engine.attach(wf_id)
            assert await asyncio.wait_for(engine.wait(wf_id), 60) is WorkflowState.SUCCEEDED
            # The failed record was undone; the files the activities used are still recorded.
            assert {f.role for f in repo.list_files(wf_id)} <= {"used"}

    with caplog.at_level(logging.ERROR):
        asyncio.run(scenario())
    assert ledger(tmp_path) == ["a", "b"]
    assert "cannot record the files written by a" in caplog.text
    assert "Traceback" in caplog.text


def test_attaching_a_run_another_engine_finished_meanwhile_returns_at_once(
    tmp_path: Path,
) -> None:
    # `akoflow resume` lists the unfinished runs, then attaches them one by one: another
    # engine may finish one in between. Its wait must end with the stored state, not hang.
    async def scenario() -> None:
        async with engine_with(tmp_path) as (repo, first, wf_id):
            await first.attach(wf_id)
            assert await asyncio.wait_for(first.wait(wf_id), 60) is WorkflowState.SUCCEEDED
            second = Engine(repo, tmp_path / "state")
            await second.start()
            try:
                run = await second.attach(wf_id)
                assert run.state is WorkflowState.SUCCEEDED
                assert await asyncio.wait_for(second.wait(wf_id), 5) is WorkflowState.SUCCEEDED
                rec = repo.get_workflow(wf_id)
                assert rec is not None and rec.owner_pid is None  # not claimed
            finally:
                await second.stop()

    asyncio.run(scenario())
    assert ledger(tmp_path) == ["a", "b"]
