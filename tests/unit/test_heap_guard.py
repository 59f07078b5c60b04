"""The collector is kept off the objects of big attached runs (akoflow.engine.heap), and given
them back once no big run is attached: their garbage cycles are collected then."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from akoflow import service
from akoflow.engine import Engine
from akoflow.engine import heap as heap_module
from akoflow.engine.heap import HeapGuard


@pytest.fixture(autouse=True)
def thawed() -> Iterator[None]:
    gc.unfreeze()
    try:
        yield
    finally:
        gc.unfreeze()


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_frozen_while_big_runs_are_attached_then_given_back() -> None:
    guard = HeapGuard(freeze_at=10)
    guard.attached(9)
    assert gc.get_freeze_count() == 0
    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: only the collector frees it
    gone = weakref.ref(a)
    guard.attached(10)
    frozen = gc.get_freeze_count()
    assert frozen > 0
    del a, b
    gc.collect()
    assert gone() is not None  # frozen: out of the collector's reach
    extra = [Node() for _ in range(100)]
    guard.attached(15)  # not a big run more: no new freeze
    assert gc.get_freeze_count() == frozen
    guard.attached(20)  # another big run: what exists now is frozen too
    assert gc.get_freeze_count() >= frozen + len(extra)
    guard.attached(3)
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert gone() is None  # given back: its cycle collected


def test_an_engine_freezes_a_big_run_and_thaws_when_it_is_forgotten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(heap_module, "FREEZE_AT", 20)
    text = "name: big\nspec:\n  activities:\n" + "".join(
        f"    - name: a{i}\n      run: 'true'\n" for i in range(25)
    )

    async def scenario() -> tuple[int, int, int]:
        state = tmp_path / "state"
        repo = service.open_repository(state)
        prepared = service.validate_text(text, "big.yaml")
        wf_id = service.store(repo, state, prepared, tmp_path / "data")
        engine = Engine(repo, state)
        await engine.start()
        try:
            await engine.attach(wf_id)
            during = gc.get_freeze_count()
            await engine.wait(wf_id)
            engine.forget(wf_id)
            after = gc.get_freeze_count()
            await engine.attach(wf_id)  # a finished run attached again: frozen again
            again = gc.get_freeze_count()
        finally:
            await engine.stop()
            repo.close()
        assert gc.get_freeze_count() == 0  # stopped: everything given back
        return during, after, again

    during, after, again = asyncio.run(scenario())
    assert during > 0 and after == 0 and again > 0
