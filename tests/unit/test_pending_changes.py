"""Attribution bookkeeping of data-dir changes (akoflow.provenance.pending)."""

from __future__ import annotations

from akoflow.provenance.pending import Nominee, PendingChanges, by_timing
from akoflow.provenance.snapshot import FileState


def n(name: str, end: float) -> Nominee:
    return Nominee(end, hash(name) % 1000, 1, name)


def test_a_change_in_several_windows_comes_with_every_nominee() -> None:
    """Timing cannot tell which of them wrote it: the caller records it as ambiguous."""
    pending = PendingChanges()
    pending.changed("out.txt", FileState(1, 10.0))
    pending.nominate("out.txt", n("late", 30.0))
    pending.nominate("out.txt", n("early", 12.0))
    pending.changed("one.txt", FileState(1, 11.0))
    pending.nominate("one.txt", n("early", 12.0))
    assert pending.nominated("late") == {"out.txt"}
    decided = [(p, sorted(x.activity for x in who)) for p, _, who in pending.decide(None)]
    assert decided == [("out.txt", ["early", "late"]), ("one.txt", ["early"])]
    assert not pending and pending.nominated("late") == set()


def test_only_changes_older_than_the_earliest_running_attempt_are_decided() -> None:
    pending = PendingChanges()
    for i, mtime in enumerate([5.0, 15.0, 25.0]):
        pending.changed(f"f{i}", FileState(1, mtime))
        pending.nominate(f"f{i}", n("writer", 30.0))
    assert [d[0] for d in pending.decide(20.0)] == ["f0", "f1"]
    assert list(pending.states) == ["f2"]
    assert [d[0] for d in pending.decide(None)] == ["f2"]


def test_windows_rewrites_deletions_and_orphans() -> None:
    pending = PendingChanges()
    pending.changed("a", FileState(1, 1.0))
    pending.changed("b", FileState(1, 2.0))
    pending.changed("a", FileState(2, 3.0))  # rewritten: only the new version is pending
    pending.changed("c", FileState(1, 4.0))
    assert list(pending.in_window(0.0, 10.0)) == ["b", "a", "c"]
    assert list(pending.in_window(2.5, 3.5)) == ["a"]
    pending.deleted("b")
    pending.nominate("a", n("x", 5.0))
    # c: no attempt ran at its time, nobody will claim it: dropped, not kept forever.
    assert [(d[0], d[1].size) for d in pending.decide(None)] == [("a", 2)]
    assert not pending


def test_many_changes_stay_cheap() -> None:
    """Thousands of changes decided in time order, with the bulk compaction of the index."""
    pending = PendingChanges()
    for i in range(5000):
        pending.changed(f"f{i}", FileState(1, float(i)))
        pending.nominate(f"f{i}", n("w", float(i) + 0.5))
    decided = [d[0] for d in pending.decide(2500.0)]
    assert decided == [f"f{i}" for i in range(2500)]
    assert list(pending.in_window(2499.0, 2501.0)) == ["f2500", "f2501"]
    assert len(list(pending.decide(None))) == 2500


def test_timing_decides_by_the_one_declaration_among_the_nominees() -> None:
    maker, bystander, other = (
        Nominee(1.0, i, 1, n) for i, n in ((1, "maker"), (2, "by"), (3, "o"))
    )
    verdict = by_timing([maker, bystander], {(1, 1)})
    assert verdict.generator == maker and verdict.reason == ""
    verdict = by_timing([maker, bystander, other], {(1, 1), (3, 1)})
    assert verdict.generator is None
    assert verdict.candidates == [(1, 1), (2, 1), (3, 1)]
    assert verdict.reason.endswith("declared as an output by maker, o")
    alone = by_timing([bystander], set())
    assert alone.generator is None and alone.candidates == [(2, 1)]
