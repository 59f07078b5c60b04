"""Placement policies and execution strategies, in the engine with the real local runtime.

The runtime is the real local runtime (activities really run); only its node inventory is
crafted, so the tests can give it several nodes of chosen sizes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from akoflow.config import RuntimeConfig
from akoflow.engine import Engine
from akoflow.runtimes.base import NodeInfo, RuntimeEvents
from akoflow.runtimes.local import LocalRuntime
from akoflow.states import ActivityState, WorkflowState
from tests.e2e.test_engine_inprocess import engine_with

GI = 1 << 30


class CraftedNodes(LocalRuntime):
    inventory: list[NodeInfo]

    async def nodes(self) -> Sequence[NodeInfo]:
        return self.inventory


def factory_with(inventory: list[NodeInfo]) -> Any:
    def factory(name: str, events: RuntimeEvents, config: RuntimeConfig | None) -> Any:
        runtime = CraftedNodes(name, config or RuntimeConfig.from_env(name), events)
        runtime.inventory = inventory
        return runtime

    return factory


def run(tmp_path: Path, text: str, inventory: list[NodeInfo]) -> tuple[Any, Any, int]:
    async def scenario() -> tuple[Any, Any, int]:
        async with engine_with(
            tmp_path, text, runtime_factory=factory_with(inventory), health_interval=0.2
        ) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            assert wf.done is not None
            await asyncio.wait_for(wf.done, 60)
            return repo, wf, wf_id

    return asyncio.run(scenario())


def test_akoscore_places_records_every_decision_and_fails_what_never_fits(
    tmp_path: Path,
) -> None:
    inventory = [
        NodeInfo("small", True, 2.0, 4 * GI, 0.0, 0),
        NodeInfo("large", True, 8.0, 32 * GI, 0.0, 0),
    ]
    text = (
        "name: placed\nspec:\n  schedule: akoscore\n  alpha: 1\n  activities:\n"
        "    - name: fits\n      memoryLimit: 1Gi\n      run: echo ok > fits.txt\n"
        "    - name: huge\n      memoryLimit: 64Gi\n      run: echo never > huge.txt\n"
        "    - name: after-huge\n      dependsOn: [huge]\n      run: 'true'\n"
    )
    repo, wf, wf_id = run(tmp_path, text, inventory)
    states = {a.name: a.state for a in wf.activities.values()}
    assert states == {
        "fits": ActivityState.SUCCEEDED,
        "huge": ActivityState.FAILED,
        "after-huge": ActivityState.SKIPPED,
    }
    assert wf.state is WorkflowState.FAILED
    assert not (tmp_path / "data" / "huge.txt").exists()  # never ran
    assert "more than any node has" in (wf.activities["huge"].reason or "")
    decisions = {p.activity: p for p in repo.list_placements(wf_id)}
    fits = decisions["fits"]
    assert (fits.policy, fits.node, fits.alpha, fits.attempt) == ("akoscore", "large", 1.0, 1)
    scores = {c["node"]: c["score"] for c in fits.candidates}
    # alpha = 1: only memory headroom counts, (M_free - M_req) / M_max.
    assert scores["large"] == round(31 / 32, 6)
    assert scores["small"] == round(3 / 32, 6)
    huge = decisions["huge"]
    assert huge.node is None and all(not c["feasible"] for c in huge.candidates)


def test_no_free_node_makes_the_activity_wait_not_fail(tmp_path: Path) -> None:
    # One node with 2 CPUs: two activities asking 1.5 CPUs each cannot run side by side.
    inventory = [NodeInfo("only", True, 2.0, 8 * GI, 0.0, 0)]
    text = (
        "name: waiting\nspec:\n  schedule: akoscore\n  activities:\n"
        "    - name: one\n      cpuLimit: '1.5'\n      run: sleep 0.5\n"
        "    - name: two\n      cpuLimit: '1.5'\n      run: sleep 0.5\n"
    )
    repo, wf, wf_id = run(tmp_path, text, inventory)
    assert wf.state is WorkflowState.SUCCEEDED
    spans = []
    for act in repo.list_activities(wf_id):
        (attempt,) = repo.list_attempts(act.id)
        spans.append((attempt.started_at, attempt.finished_at))
    (first_start, first_end), (second_start, _) = sorted(spans)
    assert second_start >= first_end  # the second waited for the node's CPUs
    assert {p.node for p in repo.list_placements(wf_id)} == {"only"}


def test_round_robin_spreads_over_the_nodes(tmp_path: Path) -> None:
    inventory = [NodeInfo(f"n{i}", True, 4.0, 8 * GI, 0.0, 0) for i in range(3)]
    activities = "".join(f"    - name: a{i}\n      run: 'true'\n" for i in range(6))
    text = f"name: spread\nspec:\n  schedule: round-robin\n  activities:\n{activities}"
    repo, wf, wf_id = run(tmp_path, text, inventory)
    assert wf.state is WorkflowState.SUCCEEDED
    nodes = [p.node for p in repo.list_placements(wf_id)]
    assert sorted(nodes) == ["n0", "n0", "n1", "n1", "n2", "n2"]


def strategy_text(strategy: str) -> str:
    # Level 0: slow and fast; level 1: after-fast depends only on fast.
    return (
        f"name: levels\nspec:\n  strategy: {strategy}\n  activities:\n"
        "    - name: slow\n      run: sleep 1\n"
        "    - name: fast\n      run: 'true'\n"
        "    - name: after-fast\n      dependsOn: [fast]\n      run: 'true'\n"
    )


def started_and_finished(repo: Any, wf_id: int) -> dict[str, tuple[float, float]]:
    spans = {}
    for act in repo.list_activities(wf_id):
        (attempt,) = repo.list_attempts(act.id)
        spans[act.name] = (attempt.started_at, attempt.finished_at)
    return spans


def test_first_data_first_starts_as_soon_as_inputs_are_ready(tmp_path: Path) -> None:
    repo, wf, wf_id = run(tmp_path, strategy_text("first-data-first"), [])
    assert wf.state is WorkflowState.SUCCEEDED
    spans = started_and_finished(repo, wf_id)
    assert spans["after-fast"][0] < spans["slow"][1]


def test_first_activity_first_finishes_each_level_before_the_next(tmp_path: Path) -> None:
    repo, wf, wf_id = run(tmp_path, strategy_text("FAF"), [])
    assert wf.state is WorkflowState.SUCCEEDED
    spans = started_and_finished(repo, wf_id)
    assert spans["after-fast"][0] >= spans["slow"][1]


def test_a_restarted_engine_keeps_the_resources_of_adopted_attempts(tmp_path: Path) -> None:
    """The node's CPUs held by an attempt still running when the engine stopped stay held
    after the restart, so the waiting activity still waits for them."""
    inventory = [NodeInfo("only", True, 2.0, 8 * GI, 0.0, 0)]
    text = (
        "name: held-over\nspec:\n  schedule: akoscore\n  activities:\n"
        "    - name: one\n      cpuLimit: '1.5'\n      run: touch started; sleep 2\n"
        "    - name: two\n      cpuLimit: '1.5'\n      run: 'true'\n"
    )
    factory = factory_with(inventory)

    async def scenario() -> tuple[Any, int]:
        async with engine_with(tmp_path, text, runtime_factory=factory, health_interval=0.2) as (
            repo,
            engine,
            wf_id,
        ):
            await engine.attach(wf_id)
            for _ in range(200):  # until `one` runs; `two` waits for the CPUs
                if (tmp_path / "data" / "started").exists():
                    break
                await asyncio.sleep(0.05)
        states = {a.name: a.state for a in repo.list_activities(wf_id)}
        assert states == {"one": ActivityState.RUNNING, "two": ActivityState.READY}
        second = Engine(repo, tmp_path / "state", runtime_factory=factory, health_interval=0.2)
        await second.start()
        try:
            wf = await second.attach(wf_id)
            assert wf.done is not None
            await asyncio.wait_for(wf.done, 60)
        finally:
            await second.stop()
        return repo, wf_id

    repo, wf_id = asyncio.run(scenario())
    spans = {}
    for act in repo.list_activities(wf_id):
        (attempt,) = repo.list_attempts(act.id)
        spans[act.name] = (attempt.started_at, attempt.finished_at)
    assert spans["two"][0] >= spans["one"][1]  # adopted `one` still held its 1.5 CPUs
