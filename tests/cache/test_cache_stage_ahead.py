"""The cache stage decides a runtime's READY activities only as far ahead of what can start
as its line has room for (``AHEAD``): a 100,000-wide run used to decide every activity before
the first one ended, and the keys it decided outnumbered those kept (``KEYS_KEPT``), so most
were computed again when each one's entry was recorded."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from akoflow.cache import stage
from akoflow.states import WorkflowState
from tests.e2e.test_engine_inprocess import engine_with


def test_a_wide_run_decides_each_key_once_and_only_so_far_ahead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 1200
    monkeypatch.setattr(stage, "AHEAD", 100, raising=False)
    monkeypatch.setattr(stage, "KEYS_KEPT", 400)  # fewer than the run's activities
    monkeypatch.setenv("LOCAL_MAX_PARALLEL", "4")
    text = "name: ahead\nspec:\n  activities:\n" + "".join(
        f"    - name: t{i}\n      run: 'echo {i} > out.{i}'\n" for i in range(n)
    )
    keys: list[int] = []
    real_key = stage.CacheStage._key

    def counted(self: stage.CacheStage, act: Any) -> Any:
        keys.append(act.id)
        return real_key(self, act)

    monkeypatch.setattr(stage.CacheStage, "_key", counted)
    most_waiting = [0]

    async def scenario() -> None:
        async with engine_with(tmp_path, text) as (repo, engine, wf_id):

            async def watch() -> None:
                while True:
                    slot = engine.runtimes.slots.get("local")
                    if slot is not None:
                        most_waiting[0] = max(most_waiting[0], len(slot.queue))
                    await asyncio.sleep(0.002)

            watcher = asyncio.create_task(watch())
            try:
                await engine.attach(wf_id)
                assert await engine.wait(wf_id) is WorkflowState.SUCCEEDED
            finally:
                watcher.cancel()
            entries = repo._exec(
                "SELECT COUNT(DISTINCT activity_id) FROM cache_entries WHERE workflow_id = ?",
                (wf_id,),
            ).fetchone()[0]
            assert entries == n  # every success has its entry

    asyncio.run(scenario())
    for i in range(n):
        assert (tmp_path / "data" / f"out.{i}").read_text() == f"{i}\n"
    assert len(keys) == n, f"{len(keys) - n} keys computed again"
    assert len(set(keys)) == n
    # Decided ahead: at most AHEAD in the line, plus those of one chunk (256) at most.
    assert 0 < most_waiting[0] <= 100 + stage.CHUNK
