"""The collector is kept off the objects of big attached runs (akoflow.heap), and given
them back once no big run is attached: their garbage cycles are collected then."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
import weakref
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from akoflow import heap as heap_module
from akoflow import service
from akoflow.engine import Engine
from akoflow.engine.model import ActivityRun
from akoflow.heap import HeapGuard
from tests.unit.test_store_aside import wide


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


def test_a_big_run_attached_after_another_was_forgotten_is_frozen_at_once() -> None:
    # Two big runs, one forgotten: the next big one was frozen only freeze_at ends later.
    guard = HeapGuard(freeze_at=10)
    guard.attached(10)
    guard.attached(20)
    guard.attached(10)  # one forgotten, one still attached: still frozen
    assert gc.get_freeze_count() > 0
    frozen = gc.get_freeze_count()
    made = [Node() for _ in range(100)]
    guard.attached(20)  # another big run
    assert gc.get_freeze_count() >= frozen + len(made)
    guard.release()


def test_what_the_ends_of_a_frozen_run_leave_is_frozen_every_freeze_at_ends() -> None:
    # Each full collection walked what the ends of a big frozen run left (an object or so
    # per end): 40-80 ms at 60,000-100,000 ends, the server's API standing still.
    guard = HeapGuard(freeze_at=10)
    guard.ended(50)  # nothing frozen: nothing to do
    assert gc.get_freeze_count() == 0
    guard.attached(10)
    frozen = gc.get_freeze_count()
    left = [Node() for _ in range(100)]  # what the ends leave
    guard.ended(9)
    assert gc.get_freeze_count() == frozen
    guard.ended(1)  # freeze_at ends since the freeze
    assert gc.get_freeze_count() >= frozen + len(left)
    again = gc.get_freeze_count()
    more = [Node() for _ in range(100)]
    guard.ended(9)
    assert gc.get_freeze_count() == again  # counted from the last freeze
    guard.ended(1)
    assert gc.get_freeze_count() >= again + len(more)
    guard.release()
    assert gc.get_freeze_count() == 0


@contextlib.asynccontextmanager
async def stored_and_started(tmp_path: Path, n: int) -> AsyncIterator[tuple[Engine, int]]:
    """A started engine, and a stored run of ``n`` activities it has not attached."""
    state = tmp_path / "state"
    repo = service.open_repository(state)
    prepared = service.validate_text(wide(n), "big.yaml")
    wf_id = service.store(repo, state, prepared, tmp_path / "data")
    engine = Engine(repo, state)
    await engine.start()
    try:
        yield engine, wf_id
    finally:
        await engine.stop()
        repo.close()


def test_an_engine_freezes_a_big_run_and_thaws_when_it_is_forgotten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(heap_module, "FREEZE_AT", 20)

    async def scenario() -> tuple[int, int, int]:
        async with stored_and_started(tmp_path, 25) as (engine, wf_id):
            await engine.attach(wf_id)
            during = gc.get_freeze_count()
            await engine.wait(wf_id)
            engine.forget(wf_id)
            await thawed_soon()  # once taken apart (a big run)
            after = gc.get_freeze_count()
            await engine.attach(wf_id)  # a finished run attached again: frozen again
            again = gc.get_freeze_count()
        assert gc.get_freeze_count() == 0  # stopped: everything given back
        return during, after, again

    during, after, again = asyncio.run(scenario())
    assert during > 0 and after == 0 and again > 0


async def thawed_soon() -> None:
    for _ in range(1000):
        if not gc.get_freeze_count():
            return
        await asyncio.sleep(0.005)


def test_a_forgotten_big_run_is_freed_without_the_collector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its activities were in cycles (their run, their dependencies): only a full collection
    # freed them, 0.23 s for 40,000 with the event loop standing still. Taken apart, reference
    # counting frees them.
    monkeypatch.setattr(heap_module, "FREEZE_AT", 20)

    async def scenario() -> tuple[int, int]:
        async with stored_and_started(tmp_path, 60) as (engine, wf_id):
            gc.collect()  # what earlier tests left
            await engine.attach(wf_id)
            await engine.wait(wf_id)
            gc.disable()
            try:
                before = sum(isinstance(o, ActivityRun) for o in gc.get_objects())
                engine.forget(wf_id)
                await thawed_soon()
                # The processor's last wake-up may still hold a few for a turn or two.
                for _ in range(400):
                    after = sum(isinstance(o, ActivityRun) for o in gc.get_objects())
                    if not after:
                        break
                    await asyncio.sleep(0.005)
            finally:
                gc.enable()
        return before, after

    before, after = asyncio.run(scenario())
    assert (before, after) == (0, 0)  # frozen while attached; freed, not given back


def test_an_engine_freezes_what_the_ends_of_a_big_run_leave(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(heap_module, "FREEZE_AT", 20)

    async def scenario() -> tuple[int, int]:
        async with stored_and_started(tmp_path, 80) as (engine, wf_id):
            await engine.attach(wf_id)
            attached = gc.get_freeze_count()
            await engine.wait(wf_id)
            ended = gc.get_freeze_count()
            engine.forget(wf_id)
        return attached, ended

    attached, ended = asyncio.run(scenario())
    assert attached > 0 and ended > attached  # frozen again as its attempts ended


def test_paused_until_the_last_pause_ends_in_any_thread() -> None:
    assert gc.isenabled()
    entered, leave = threading.Event(), threading.Event()

    def other() -> None:
        with heap_module.paused():
            entered.set()
            leave.wait(10)

    thread = threading.Thread(target=other)
    with heap_module.paused():
        assert not gc.isenabled()
        thread.start()
        assert entered.wait(10)
    assert not gc.isenabled()  # the other thread's pause still holds
    leave.set()
    thread.join()
    assert gc.isenabled()
    gc.disable()  # paused by someone else before: left so
    try:
        with heap_module.paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_attaching_a_big_run_walks_it_in_no_collection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each automatic collection while a big run's objects were built walked them all again
    # (nine of up to 340 ms for 100,000 activities, the server's API standing still), and
    # the freeze began with a collection of the young: the run itself.
    monkeypatch.setattr(heap_module, "FREEZE_AT", 200)
    monkeypatch.setattr(heap_module, "BIG_TEXT", 1000)  # 300 activities: big
    walked: list[int] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            walked.append(info["generation"])

    async def scenario() -> None:
        async with stored_and_started(tmp_path, 300) as (engine, wf_id):
            gc.collect()
            gc.callbacks.append(seen)
            try:
                await engine.attach(wf_id)
            finally:
                gc.callbacks.remove(seen)
            assert gc.get_freeze_count() > 0
            engine.cancel(wf_id)
            await engine.wait(wf_id)

    asyncio.run(scenario())
    assert walked == []


def test_a_small_workflow_leaves_the_collector_running() -> None:
    # Paused for every submission, overlapping small ones kept it off almost all the time.
    with heap_module.paused_for(wide(3)):
        assert gc.isenabled()
    with heap_module.paused_for("x" * heap_module.BIG_TEXT):
        assert not gc.isenabled()
    assert gc.isenabled()


def test_storing_a_big_workflow_walks_it_in_no_collection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `akoflow run` stores a new run inside its claim's transaction, after the loader's pause
    # ended: collections walked the rows and objects as they were built (1.5 s at 100,000).
    # The store's own connection tells, at each activity row it inserts, whether the
    # collector could run then.
    monkeypatch.setattr(heap_module, "BIG_TEXT", 1000)  # 300 activities: big
    state = tmp_path / "state"
    repo = service.open_repository(state)
    prepared = service.validate_text(wide(300), "big.yaml")
    seen: list[bool] = []
    conn = repo._conn
    conn.create_function("collector_on", 0, lambda: seen.append(gc.isenabled()))
    conn.execute(
        "CREATE TEMP TRIGGER watch AFTER INSERT ON activities BEGIN SELECT collector_on(); END"
    )
    try:
        claim = service.claim_run(repo, state, prepared)
    finally:
        repo.close()
    assert claim.busy_pid is None and not claim.resumed
    assert seen == [False] * 300
    assert gc.isenabled()


def test_a_freeze_does_not_count_the_frozen_unless_asked_to_log_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """gc.get_freeze_count() walks every frozen object: 80 ms of the event loop at each
    freeze of a 100,000-activity run (every FREEZE_AT ends), spent on a debug line that is
    not shown."""
    counted = []
    real = gc.get_freeze_count

    def counting() -> int:
        counted.append(1)
        return real()

    monkeypatch.setattr(gc, "get_freeze_count", counting)
    guard = HeapGuard(freeze_at=10)
    caplog.set_level(logging.INFO, logger="akoflow.heap")
    guard.attached(10)
    assert counted == []
    caplog.set_level(logging.DEBUG, logger="akoflow.heap")
    guard.attached(20)
    assert counted == [1]
    assert "out of the collector's reach" in caplog.text
