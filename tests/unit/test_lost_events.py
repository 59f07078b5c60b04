"""Lost file events (issue 15, item 3): when the kernel drops events (a fanotify queue
overflow, lost process events), what the attempts running then wrote is not known for sure,
so every version they wrote is ambiguous (reason: events were lost), never attributed. The
recorder notices a loss when it drains the observer (``Observer.losses`` grew) and tells each
observed run (:meth:`ObservedRun.lost_events`) before an ending attempt's versions are decided;
these tests do the same, with Access objects, then with a real overflow of the kernel queue."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from akoflow.provenance.observe import Access, Observer
from akoflow.provenance.observed import LOST, Generated, ObservedRun, Undecided


def write(run: ObservedRun, key: str, path: str, text: str = "x\n") -> None:
    """``key`` wrote ``path`` (on disk too: decisions read the version found there)."""
    (Path(run.root) / path).write_text(text)
    run.add(Access(key, "create", run.real, path.encode()))
    run.add(Access(key, "write", run.real, path.encode()))


def test_what_ran_across_a_loss_is_ambiguous_and_what_did_not_is_attributed(
    tmp_path: Path,
) -> None:
    run = ObservedRun(tmp_path, None, {})
    # `before` wrote and ended before the loss: its output is its own.
    run.begin("before")
    write(run, "before", "early.txt")
    _, decided = run.ended("before")
    assert [(d.key, d.path) for d in decided if isinstance(d, Generated)] == [
        ("before", "early.txt")
    ]
    # `across` runs when events are lost: what it wrote before and after the loss alike.
    run.begin("across")
    write(run, "across", "one.txt")
    run.lost_events()
    write(run, "across", "two.txt")
    # `after` starts once the loss is known: its writes are seen whole again.
    run.begin("after")
    write(run, "after", "late.txt")
    _, decided = run.ended("after")
    (only,) = decided
    assert isinstance(only, Generated) and (only.key, only.path) == ("after", "late.txt")
    _, decided = run.ended("across")
    assert all(isinstance(d, Undecided) for d in decided)
    assert {(d.path, d.candidates, d.reason) for d in decided if isinstance(d, Undecided)} == {
        ("one.txt", frozenset({"across"}), LOST),
        ("two.txt", frozenset({"across"}), LOST),
    }
    assert run.settle(everything=True) == []


def test_a_file_two_attempts_wrote_across_a_loss_names_both(tmp_path: Path) -> None:
    run = ObservedRun(tmp_path, None, {})
    run.begin("a")
    run.begin("b")
    write(run, "a", "same.txt")
    run.lost_events()
    write(run, "b", "same.txt", "y\n")
    assert run.ended("a")[1] == []  # b, which also wrote it, still runs
    ((decision,),) = [run.ended("b")[1]]
    assert isinstance(decision, Undecided)
    assert (decision.candidates, decision.reason) == (frozenset({"a", "b"}), LOST)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    directory = tmp_path / "data"
    directory.mkdir()
    return directory


@pytest.fixture
def observer(data: Path) -> Iterator[Observer]:
    obs = Observer(bounded_queue=True)  # the engine's queue has no bound: this one overflows
    obs.start()
    obs.watch(data)
    try:
        yield obs
    finally:
        obs.close()


def drain(observer: Observer, run: ObservedRun, losses: int) -> int:
    """What the recorder does on each drain: accesses to their attempts, then a loss noticed
    (the observer's count grew) is told to the run. The new count."""
    for accesses in observer.take_all().values():
        for access in accesses:
            run.add(access)
    if observer.losses != losses:
        run.lost_events()
    return observer.losses


@pytest.mark.needs_root  # fanotify filesystem marks and process events
def test_a_real_queue_overflow_leaves_the_running_attempts_writes_ambiguous(
    data: Path, observer: Observer
) -> None:
    """Nobody reads the kernel queue while `flood` creates 20,000 files (an event each at
    least; the queue holds 16,384): the kernel drops events and says so. `steady`, which ended
    before, keeps its output; `flood`'s out.txt, written before the flood, is ambiguous."""
    run = ObservedRun(data, None, {})
    losses = observer.losses

    run.begin("steady")
    steady = subprocess.Popen(["bash", "-c", "echo s > steady.txt"], cwd=data)
    observer.register("steady", pid=steady.pid)
    assert steady.wait(timeout=30) == 0
    losses = drain(observer, run, losses)
    _, decided = run.ended("steady")
    assert [(d.key, d.path) for d in decided if isinstance(d, Generated)] == [
        ("steady", "steady.txt")
    ]

    run.begin("flood")
    script = 'echo f > out.txt; mkdir many; for ((i = 0; i < 20000; i++)); do : > "many/$i"; done'
    flood = subprocess.Popen(["bash", "-c", script], cwd=data)
    observer.register("flood", pid=flood.pid)
    assert flood.wait(timeout=120) == 0
    new_losses = drain(observer, run, losses)
    assert new_losses > losses  # the kernel said events were dropped
    _, decided = run.ended("flood")
    decided += run.settle(everything=True)
    assert decided, "flood's observed writes"
    assert not [d for d in decided if isinstance(d, Generated)]
    unsure = {d.path: d for d in decided if isinstance(d, Undecided)}
    assert all(d.reason == LOST and d.candidates == {"flood"} for d in unsure.values())
    # out.txt's create was read (the queue overflowed later): ambiguous, not flood's.
    assert "out.txt" in unsure
    assert len(os.listdir(data / "many")) == 20000
