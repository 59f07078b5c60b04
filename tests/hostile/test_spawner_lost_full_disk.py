"""A local spawner that dies while the file system of the attempts' files is full (hostile pass
on c229486, which runs again as new attempts the starts a dead spawner never claimed: the
engine claims each). The engine's claim cannot be written either: none was made, and the
spawner is gone, so the attempt never ran and never will. It was failed with its exit code
"lost" (a retry spent, the run failed) instead of waiting for room, as an attempt whose
spawner could not claim it for want of room does (the runtime NOT_READY meanwhile)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from akoflow.states import WorkflowState
from tests.e2e.test_local_line_hostile import (
    _ended,
    _until,
    starts_held_by_a_stopped_spawner,
    warm_engine,
)
from tests.tmpfs import tmpfs


@pytest.fixture
def small_runs_dir(tmp_path: Path) -> Iterator[Path]:
    """The attempts' files on a 512 KiB tmpfs (the database is not on it)."""
    with tmpfs(tmp_path / "state" / "runs", "size=512k") as runs:
        (tmp_path / "state").chmod(0o700)
        yield runs


def _fill(directory: Path) -> Path:
    """A file in ``directory`` as big as its file system takes (the rest of the disk)."""
    fill = directory / "fill"
    fd = os.open(fill, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    return fill


@pytest.mark.needs_root  # a tmpfs mount
def test_starts_of_a_dead_spawner_that_the_engine_has_no_room_to_claim_wait_for_room(
    tmp_path: Path, small_runs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCAL_MAX_PARALLEL", "8")
    monkeypatch.setenv("LOCAL_SPAWNERS", "1")
    n = 3
    data = tmp_path / "data"

    async def scenario() -> None:
        async with warm_engine(tmp_path, health_interval=0.2) as (repo, engine):
            async with starts_held_by_a_stopped_spawner(engine, repo, tmp_path, n) as (wf_id, wf):
                fill = _fill(small_runs_dir)  # then the spawner is killed
            slot = engine.runtimes.slots["local"]

            def attempts() -> dict[str, list[tuple[int, str]]]:
                return {
                    act.name: [(a.number, a.state) for a in repo.list_attempts(act.id)]
                    for act in wf.activities.values()
                }

            def ended_first() -> bool:
                return all(
                    found and found[0][1] in ("lost", "failed") for found in attempts().values()
                )

            await _until(ended_first, "the first attempts ended")
            await asyncio.sleep(1)  # health checks meanwhile: no room yet, still held
            assert attempts() == {f"a{i}": [(1, "lost")] for i in range(n)}
            assert not slot.ready and "No space left" in (slot.reason or ""), slot.reason
            assert wf.state is WorkflowState.RUNNING
            fill.unlink()  # room again
            assert await _ended(engine, wf_id) is WorkflowState.SUCCEEDED
            for act in wf.activities.values():
                attempts = [(a.number, a.state) for a in repo.list_attempts(act.id)]
                assert attempts == [(1, "lost"), (2, "succeeded")], (act.name, attempts)

    asyncio.run(scenario())
    for i in range(n):
        assert (data / f"a{i}").read_text() == "once\n"
