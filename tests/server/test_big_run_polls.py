"""What the UI polls on a big run costs no pass over its activities on the event loop, the
engine's thread (issue 20): a finished run's spec is the engine's, handed over when the run
leaves it, or parsed in a worker thread, once; the cache is bounded by activities; the
workflow's view asks the store the same few questions whatever its size."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from akoflow import service
from akoflow.engine import Engine
from akoflow.server import context as context_module
from akoflow.server import views
from akoflow.server.context import SPEC_CACHE_ACTIVITIES, ServerContext
from akoflow.spec import load_workflow
from akoflow.states import ActivityState, WorkflowState
from akoflow.store import Repository
from tests.conftest import EXAMPLES
from tests.server.conftest import API, submit, wait_workflow


def wide(name: str, n: int) -> str:
    acts = "".join(f"    - name: t{i}\n      run: 'true'\n" for i in range(n))
    return f"name: {name}\nspec:\n  activities:\n{acts}"


def stored(repo: Repository, state: Path, text: str) -> int:
    return service.store(repo, state, service.validate_text(text, "w.yaml"))


def spy_loads(monkeypatch: pytest.MonkeyPatch) -> list[threading.Thread]:
    """The real load_workflow, noting the thread of each call."""
    threads: list[threading.Thread] = []
    real: Callable[..., Any] = load_workflow

    def noted(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(context_module, "load_workflow", noted)
    return threads


def test_a_finished_runs_spec_is_the_engines_then_parsed_off_the_loop_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    loads = spy_loads(monkeypatch)

    async def scenario() -> None:
        repo = service.open_repository(state)
        engine = Engine(repo, state)
        await engine.start()
        ctx = ServerContext(state_dir=state, repo=repo, engine=engine)
        try:
            wf_id = stored(repo, state, wide("ran", 3))
            run = await engine.attach(wf_id)
            ctx.watch(run)
            assert await asyncio.wait_for(engine.wait(wf_id), 60) is WorkflowState.SUCCEEDED
            for _ in range(100):  # the eviction is a callback of the run's end
                if wf_id not in engine.workflows:
                    break
                await asyncio.sleep(0.01)
            assert wf_id not in engine.workflows
            rec = repo.get_workflow(wf_id)
            assert rec is not None
            assert await ctx.spec(rec) is run.workflow  # handed over, not parsed again
            assert loads == []

            # Never run here: parsed once in a worker thread, however many ask at once.
            other = repo.get_workflow(stored(repo, state, wide("stored", 5)))
            assert other is not None
            got = await asyncio.gather(*(ctx.spec(other) for _ in range(4)))
            assert all(g is got[0] for g in got) and got[0] is not None
            assert [a.name for a in got[0].activities] == [f"t{i}" for i in range(5)]
            assert len(loads) == 1 and loads[0] is not threading.current_thread()
            assert await ctx.spec(other) is got[0] and len(loads) == 1
            # A listing's light answer has its workflow-level fields without a parse.
            head = await ctx.spec(other, activities=False)
            assert head is not None and head.name == "stored" and len(loads) == 1
        finally:
            await engine.stop()
            repo.close()

    asyncio.run(scenario())


def test_the_spec_cache_is_bounded_by_activities_and_keeps_the_newest(tmp_path: Path) -> None:
    repo = service.open_repository(tmp_path / "state")
    try:
        ctx = ServerContext(state_dir=tmp_path, repo=repo, engine=Engine(repo, tmp_path))
        small = load_workflow(wide("small", 2))
        big = load_workflow(wide("big", 3))
        monkeypatch = pytest.MonkeyPatch()
        with monkeypatch.context() as m:
            m.setattr(context_module, "SPEC_CACHE_ACTIVITIES", 4)
            ctx.remember(1, small)
            ctx.remember(2, big)  # 5 > 4: the oldest goes
            assert list(ctx._specs) == [2]
            ctx.remember(3, load_workflow(wide("huge", 9)))  # alone over: kept, as newest
            assert list(ctx._specs) == [3]
            assert ctx._spec_activities == 9
            # Every workflow's light fields stay (a few hundred bytes each).
            assert list(ctx._heads) == [1, 2, 3]
            assert all(not h.activities for h in ctx._heads.values())
            ctx.forget(3)
            assert not ctx._specs and ctx._spec_activities == 0 and 3 not in ctx._heads
        assert SPEC_CACHE_ACTIVITIES >= 100_000  # a run of issue 20's size stays cached
    finally:
        repo.close()


def statements_of(repo: Repository, fn: Callable[[], object]) -> list[str]:
    seen: list[str] = []
    repo._conn.set_trace_callback(seen.append)
    try:
        fn()
    finally:
        repo._conn.set_trace_callback(None)
    return seen


def test_the_workflow_view_asks_the_store_the_same_whatever_its_size(tmp_path: Path) -> None:
    state = tmp_path / "state"
    repo = service.open_repository(state)
    try:
        ctx = ServerContext(state_dir=state, repo=repo, engine=Engine(repo, state))
        asked = []
        for n in (3, 600):
            rec = repo.get_workflow(stored(repo, state, wide(f"w{n}", n)))
            assert rec is not None
            workflow = load_workflow(rec.spec_yaml)

            def view(rec: Any = rec, workflow: Any = workflow, n: int = n) -> None:
                doc = views.upstream_workflow(ctx, rec, workflow, with_activities=False)
                assert doc.activityCount == n and doc.activityStates == {"pending": n}

            asked.append(statements_of(repo, view))
            # Asked again: the longest activity (a scan) is remembered meanwhile.
            again = statements_of(repo, view)
            assert not any("finished_at - started_at" in s for s in again), again
        same = [[re.sub(r"workflow_id = \d+", "workflow_id = ?", s) for s in a] for a in asked]
        assert same[0] == same[1]
        assert len(same[0]) <= 4, same[0]
        assert not any("ORDER BY position" in s and "LIMIT" not in s for s in asked[1])
    finally:
        repo.close()


def test_the_lineage_without_activities_has_only_the_files_and_their_edges(
    api: httpx.Client,
) -> None:
    """What the UI asks of a run too big to draw: no node or dependsOn edge per activity."""
    wf_id = submit(api, (EXAMPLES / "hello.yaml").read_text())
    wait_workflow(api, wf_id)
    full = api.get(f"{API}/workflows/{wf_id}/lineage/").json()["data"]
    res = api.get(f"{API}/workflows/{wf_id}/lineage/", params={"activities": "false"})
    assert res.status_code == 200
    light = res.json()["data"]
    assert {n["type"] for n in light["nodes"]} == {"file"}
    assert light["nodes"] == [n for n in full["nodes"] if n["type"] != "activity"]
    assert light["edges"] == [e for e in full["edges"] if e["label"] != "dependsOn"]
    assert ("file:report.txt", "activity:report", "wasGeneratedBy") in {
        (e["from"], e["to"], e["label"]) for e in light["edges"]
    }


def test_a_stored_runs_holds_come_from_a_count_not_from_its_rows(tmp_path: Path) -> None:
    """A run this server does not run (``akoflow run`` owns it): its READY activities held by
    a NOT_READY runtime are counted per runtime by the store, and only when one is down."""
    state = tmp_path / "state"
    repo = service.open_repository(state)
    try:
        ctx = ServerContext(state_dir=state, repo=repo, engine=Engine(repo, state))
        wf_id = stored(repo, state, wide("held", 50))
        repo.set_workflow_state(wf_id, WorkflowState.RUNNING, started_at=1.0)
        ready = [(a.id, ActivityState.READY) for a in repo.list_activities(wf_id)[:7]]
        repo.set_activity_states(ready)
        rec = repo.get_workflow(wf_id)
        assert rec is not None

        def view() -> Any:
            return views.upstream_workflow(ctx, rec, None, with_activities=False)

        asked = statements_of(repo, view)
        assert view().holds == [] and view().activityStates == {"ready": 7, "pending": 43}
        assert not any("GROUP BY runtime" in s for s in asked)  # no runtime down: no count
        repo.upsert_runtime("local", kind="local", status="NOT_READY", reason="gone", config={})
        asked = statements_of(repo, view)
        (hold,) = view().holds
        assert (hold.runtime, hold.activities, hold.reason) == ("local", 7, "gone")
        assert any("GROUP BY runtime" in s for s in asked)
        assert not any("ORDER BY position" in s and "LIMIT" not in s for s in asked)
    finally:
        repo.close()
