"""A big run's attach gives the event loop back between chunks of activities (READY_CHUNK,
made tiny here, and each pause long enough for the activities already in line to end): the
processor runs them and makes their children READY while later chunks wait; whether stored
PENDING or READY, every activity runs exactly once (its own side effect) and none is left."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from akoflow import service
from akoflow.engine import Engine
from akoflow.engine import reconcile as reconcile_module
from akoflow.states import ActivityState, WorkflowState


def workflow(n: int) -> str:
    """n roots, then a child of each (in later chunks: made READY by the processor while
    they wait for their chunk), and a join of all."""
    lines = ["name: chunks", "spec:", "  activities:"]
    for name, deps in [(f"r{i}", "") for i in range(n)] + [(f"c{i}", f"r{i}") for i in range(n)]:
        lines += [f"    - name: {name}", f"      run: 'echo once >> side/{name}'"]
        if deps:
            lines.append(f"      dependsOn: [{deps}]")
    lines += [
        "    - name: join",
        "      run: 'echo once >> side/join'",
        f"      dependsOn: [{', '.join(f'c{i}' for i in range(n))}]",
    ]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("stored_ready", [False, True])
def test_each_activity_runs_once_when_the_attach_yields(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stored_ready: bool
) -> None:
    monkeypatch.setattr(reconcile_module, "READY_CHUNK", 2)

    async def slow_way() -> None:  # long enough for the roots put in line to end
        await asyncio.sleep(0.5)

    monkeypatch.setattr(reconcile_module, "_give_way", slow_way)
    n = 6
    data = tmp_path / "data"
    (data / "side").mkdir(parents=True)
    state = tmp_path / "state"
    repo = service.open_repository(state)
    prepared = service.validate_text(workflow(n), "chunks.yaml")
    wf_id = service.store(repo, state, prepared, data)
    if stored_ready:  # as a crash leaves it: roots READY in the store, never started
        roots = [a.id for a in repo.list_activities(wf_id) if a.name.startswith("r")]
        repo.set_activity_states([(i, ActivityState.READY) for i in roots])

    async def scenario() -> WorkflowState:
        engine = Engine(repo, state)
        await engine.start()
        try:
            await engine.attach(wf_id)
            return await asyncio.wait_for(engine.wait(wf_id), 120)
        finally:
            await engine.stop()

    try:
        assert asyncio.run(scenario()) is WorkflowState.SUCCEEDED
        names = [f"r{i}" for i in range(n)] + [f"c{i}" for i in range(n)] + ["join"]
        assert {p.name: p.read_text() for p in (data / "side").iterdir()} == {
            name: "once\n" for name in names
        }
        attempts = {a.name: a.attempt for a in repo.list_activities(wf_id)}
        assert attempts == {name: 1 for name in names}
    finally:
        repo.close()
