"""The engine in-process with the real local runtime.

A NOT_READY runtime holds its activities (they wait, they do not fail) until it is READY.

The runtime is the real local runtime; only its health check reads a switch file, so the test
can take the backend "down" and bring it back the way a stopped daemon would.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar, overload

import pytest

from akoflow import service
from akoflow.config import RuntimeConfig
from akoflow.engine import Engine
from akoflow.engine import observe as observe_module
from akoflow.runtimes import local as local_module
from akoflow.runtimes.base import Health, RuntimeEvents
from akoflow.runtimes.local import LocalRuntime
from akoflow.states import ActivityState, WorkflowState
from akoflow.store import Repository
from tests.scenarios import busy_activity, run_busy_workflow


@contextlib.asynccontextmanager
async def engine_with(
    tmp_path: Path, text: str, repo: Repository | None = None, **engine_kwargs: Any
) -> AsyncIterator[tuple[Repository, Engine, int]]:
    """A stored workflow and a started engine on a state dir under ``tmp_path`` (on ``repo``
    when given: a store a test has rigged)."""
    state = tmp_path / "state"
    repo = repo or service.open_repository(state)
    prepared = service.validate_text(text, "test.yaml")
    wf_id = service.store(repo, state, prepared, tmp_path / "data")
    engine = Engine(repo, state, **engine_kwargs)
    await engine.start()
    try:
        yield repo, engine, wf_id
    finally:
        await engine.stop()


T = TypeVar("T")


@overload
def run_to_end(
    tmp_path: Path, text: str, expect: WorkflowState = ..., *, timeout: float = ...
) -> None: ...


@overload
def run_to_end(
    tmp_path: Path,
    text: str,
    expect: WorkflowState = ...,
    *,
    timeout: float = ...,
    read: Callable[[Repository, int], T],
) -> T: ...


def run_to_end(
    tmp_path: Path,
    text: str,
    expect: WorkflowState = WorkflowState.SUCCEEDED,
    *,
    timeout: float = 120.0,
    read: Callable[[Repository, int], T] | None = None,
) -> T | None:
    """Run ``text`` with an engine in this process (see :func:`engine_with`) to its end, which
    must be ``expect`` (each activity's state and reason are shown when it is not); what
    ``read(repo, wf_id)`` returns, read from the store before the engine stops."""

    async def scenario() -> T | None:
        async with engine_with(tmp_path, text) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            state = await asyncio.wait_for(engine.wait(wf_id), timeout=timeout)
            assert state is expect, {a.name: (a.state, a.reason) for a in wf.activities.values()}
            return None if read is None else read(repo, wf_id)

    return asyncio.run(scenario())


class SwitchableLocal(LocalRuntime):
    switch: Path

    async def health(self) -> Health:
        if self.switch.exists():
            return Health(False, "backend switched off by the test")
        return await super().health()


def test_not_ready_runtime_holds_work_then_completes(tmp_path: Path) -> None:
    switch = tmp_path / "down"
    switch.touch()
    text = (
        "name: held\nspec:\n  activities:\n"
        "    - name: a\n      run: echo a > a.txt\n"
        "    - name: b\n      dependsOn: [a]\n      run: cat a.txt > b.txt\n"
    )

    def factory(name: str, events: RuntimeEvents, config: RuntimeConfig | None) -> Any:
        rt = SwitchableLocal(name, config or RuntimeConfig.from_env(name), events)
        rt.switch = switch
        return rt

    async def scenario() -> None:
        async with engine_with(tmp_path, text, runtime_factory=factory, health_interval=0.2) as (
            repo,
            engine,
            wf_id,
        ):
            wf = await engine.attach(wf_id)
            await asyncio.sleep(1.0)
            # Held: nothing started, nothing failed, the runtime is recorded NOT_READY.
            assert {a.state for a in wf.activities.values()} <= {
                ActivityState.READY,
                ActivityState.PENDING,
            }
            assert engine.runtime_status()["local"] == (False, "backend switched off by the test")
            rt = {r.name: r for r in repo.list_runtimes()}["local"]
            assert rt.status == "NOT_READY"
            switch.unlink()
            state_ = await asyncio.wait_for(engine.wait(wf_id), timeout=10)
            assert state_ is WorkflowState.SUCCEEDED
            assert (tmp_path / "data" / "b.txt").read_text() == "a\n"
            assert {r.name: r for r in repo.list_runtimes()}["local"].status == "READY"

    asyncio.run(scenario())


def test_metrics_and_incremental_logs_of_a_running_activity(tmp_path: Path) -> None:
    text = "name: busy\nspec:\n  activities:\n" + busy_activity()

    repo, act = asyncio.run(run_busy_workflow(tmp_path, text))
    attempt = repo.list_attempts(act.id)[0]
    # 3 s of busy loop; a loaded 2-core machine may give it a small share of that.
    assert attempt.cpu_seconds is not None and attempt.cpu_seconds > 0.1
    # wait4's peak counts the engine's own pages for a small child: not recorded then.
    assert attempt.max_rss_bytes is None


def test_large_output_is_stored_up_to_the_limit_and_kept_whole_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(observe_module, "LOG_STORE_LIMIT", 10_000)
    monkeypatch.setattr(local_module, "LOG_READ_MAX", 4_096)  # several reads per stream
    text = (
        "name: loud\nspec:\n  activities:\n"
        "    - name: talk\n      run: |\n"
        '        for i in $(seq 1 5000); do echo "line $i"; done\n'
        "        echo small >&2\n"
    )

    async def scenario() -> None:
        async with engine_with(tmp_path, text) as (repo, engine, wf_id):
            await engine.attach(wf_id)
            assert await engine.wait(wf_id) is WorkflowState.SUCCEEDED
            act = repo.list_activities(wf_id)[0]
            stdout = "".join(c.data for _, c in repo.read_logs(act.id, stream="stdout"))
            assert stdout.startswith("line 1\nline 2\n")
            assert stdout[:10_000] == "".join(f"line {i}\n" for i in range(1, 5001))[:10_000]
            assert "output beyond" in stdout
            assert len(stdout) < 10_200
            assert [c.data for _, c in repo.read_logs(act.id, stream="stderr")] == ["small\n"]
            on_disk = (
                tmp_path / "state" / "runs" / f"{wf_id}-loud" / "attempts" / "talk.1.stdout"
            ).read_text()
            assert on_disk.count("\n") == 5000

    asyncio.run(scenario())


@pytest.mark.parametrize("extra", [0, 1, 5000])
def test_output_ending_exactly_on_the_limit_or_past_it_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: int
) -> None:
    # Reads of 4,096 bytes end exactly on the 16,384-byte limit: the bytes after it arrive in
    # a read that starts on the limit, which must still leave the truncation notice.
    monkeypatch.setattr(observe_module, "LOG_STORE_LIMIT", 16_384)
    monkeypatch.setattr(local_module, "LOG_READ_MAX", 4_096)
    size = 16_384 + extra
    text = (
        "name: edge\nspec:\n  activities:\n"
        f"    - name: talk\n      run: head -c {size} /dev/zero | tr -c x x\n"
    )

    async def scenario() -> None:
        async with engine_with(tmp_path, text) as (repo, engine, wf_id):
            await engine.attach(wf_id)
            assert await engine.wait(wf_id) is WorkflowState.SUCCEEDED
            act = repo.list_activities(wf_id)[0]
            stdout = "".join(c.data for _, c in repo.read_logs(act.id, stream="stdout"))
            assert stdout[:16_384] == "x" * 16_384
            if extra:
                assert stdout[16_384:].count("output beyond") == 1
            else:
                assert stdout == "x" * 16_384  # all of it stored: nothing to say

    asyncio.run(scenario())


def test_configured_runtimes_are_registered_with_health_and_no_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("K8S_AWS_API_SERVER_HOST", "https://127.0.0.1:9")
    monkeypatch.setenv("K8S_AWS_API_SERVER_TOKEN", "supersecret-token")
    monkeypatch.setenv("LOCAL_MAX_PARALLEL", "3")
    text = "name: x\nspec:\n  activities:\n    - name: a\n      run: 'true'\n"

    async def scenario() -> None:
        async with engine_with(tmp_path, text) as (repo, engine, _):
            await engine.register_configured_runtimes()
            runtimes = {r.name: r for r in repo.list_runtimes()}
            assert runtimes["local"].status == "READY"
            assert runtimes["local"].config == {"LOCAL_MAX_PARALLEL": "3"}
            k8s = runtimes["k8s-aws"]
            assert (k8s.kind, k8s.status) == ("k8s", "NOT_READY")
            assert "not reachable" in (k8s.reason or "")  # a closed loopback port
            assert k8s.config["K8S_AWS_API_SERVER_TOKEN"] == "***"
            assert k8s.config["K8S_AWS_API_SERVER_HOST"] == "https://127.0.0.1:9"
            assert "supersecret" not in repr(repo.list_runtimes())

    asyncio.run(scenario())


def test_peak_memory_of_a_big_activity_is_its_own(tmp_path: Path) -> None:
    # Held by the activity: 100 MiB above the engine's own peak (this test process, which
    # grows over a whole suite), so wait4's peak is the activity's and is recorded.
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    mib = max(200, (own >> 20) + 100)
    text = (
        "name: big\nspec:\n  activities:\n"
        f"    - name: hog\n      run: python3 -c 'b = bytearray({mib} << 20); "
        'b[::4096] = b"x" * len(b[::4096])\'\n'
    )

    async def scenario() -> None:
        async with engine_with(tmp_path, text) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            assert await asyncio.wait_for(engine.wait(wf_id), 60) is WorkflowState.SUCCEEDED
            (attempt,) = repo.list_attempts(wf.activities["hog"].id)
            assert attempt.max_rss_bytes is not None
            assert mib << 20 < attempt.max_rss_bytes < (mib + 200) << 20

    asyncio.run(scenario())
