"""ObservedRun.rescan (akoflow.provenance.observed) on real files, with accesses given by hand:
a change is an ambiguous new version only when no observed access explains it, also one read
from the kernel after the look (the drain), and its candidates are the attempts that ran
since the path's version was last confirmed."""

from __future__ import annotations

from pathlib import Path

from akoflow.provenance.observe import Access
from akoflow.provenance.observed import UNCLAIMED, UNOBSERVED, Generated, ObservedRun, Undecided
from akoflow.provenance.snapshot import scan

A, B = (1, 1), (2, 1)


def run_over(root: Path, **files: str) -> ObservedRun:
    for name, text in files.items():
        (root / name).write_text(text)
    return ObservedRun(root, None, scan(root, outside_links=True))


def write(run: ObservedRun, key: tuple[int, int], name: str) -> None:
    run.add(Access(key, "write", run.real, name.encode()))


def test_a_write_whose_event_is_read_after_the_look_is_not_unexplained(tmp_path: Path) -> None:
    run = run_over(tmp_path, **{"f.txt": "1\n"})
    run.begin(A)
    (tmp_path / "f.txt").write_text("2\n")  # its event still in the kernel's queue

    def drain() -> list[bytes]:
        write(run, A, "f.txt")
        return []

    assert run.rescan(drain, full=True) == []
    _, decided = run.ended(A)
    assert [(d.path, type(d)) for d in decided] == [("f.txt", Generated)]


def test_an_access_waiting_for_its_attempt_explains_its_change(tmp_path: Path) -> None:
    run = run_over(tmp_path, **{"f.txt": "1\n"})
    run.begin(A)
    (tmp_path / "f.txt").write_text("2\n")
    assert run.rescan(lambda: [b"f.txt"], full=True) == []


def test_an_unexplained_change_is_ambiguous_between_who_ran_since_it_was_seen(
    tmp_path: Path,
) -> None:
    run = run_over(tmp_path, **{"f.txt": "1\n", "g.txt": "1\n"})
    run.begin(A)
    run.ended(A)
    assert run.rescan(list, full=True) == []  # f.txt seen unchanged after A ended
    run.begin(B)
    (tmp_path / "f.txt").write_text("2\n")  # no event: a memory-mapped write, say
    (tmp_path / "g.txt").unlink()  # a deletion is no version
    # A change no event explains while attempts run waits for their ends (its event may not
    # be queued yet: a truncation is seen before the kernel queues its FAN_MODIFY).
    assert run.rescan(list, full=True) == []
    run.ended(B)
    (found,) = run.rescan(list, full=True)
    assert isinstance(found, Undecided)
    assert (found.path, found.candidates, found.reason) == ("f.txt", frozenset({B}), UNOBSERVED)
    assert run.rescan(list, full=True) == []  # recorded once


def test_a_name_looked_at_alone_is_confirmed_at_that_look(tmp_path: Path) -> None:
    """Between looks at every file, the files an attempt read are looked at: a later change
    is not the ended attempt's."""
    run = run_over(tmp_path, **{"f.txt": "1\n"})
    run.begin(A)
    run.ended(A)
    assert run.rescan(list, ["f.txt"], full=False) == []
    run.begin(B)
    (tmp_path / "f.txt").write_text("2\n")
    assert run.rescan(list, ["f.txt"], full=False) == []  # decided once B ended
    run.ended(B)
    (found,) = run.rescan(list, [], full=False)
    assert isinstance(found, Undecided) and found.candidates == frozenset({B})


def test_a_copy_the_engine_made_is_known_not_unexplained(tmp_path: Path) -> None:
    """The data plane fetched f.txt (written by the engine: no access observed): once told,
    the next look finds nothing to record."""
    run = run_over(tmp_path, **{"f.txt": "1\n"})
    run.begin(A)
    (tmp_path / "f.txt").write_text("copied\n")
    (tmp_path / "new.txt").write_text("copied too\n")
    run.copied_in("f.txt")
    run.copied_in("new.txt")
    assert run.rescan(list, full=True) == []


def test_a_write_waiting_for_its_attempt_holds_the_decision_back(tmp_path: Path) -> None:
    """A wrote f.txt; a write by a process not placed yet is waiting: A's end decides
    nothing, and once that write turns out to be a process of no attempt's, the version is
    ambiguous (never A's)."""
    run = run_over(tmp_path)
    run.begin(A)
    write(run, A, "f.txt")
    (tmp_path / "f.txt").write_text("a\nb\n")
    run.drain = lambda: [b"f.txt"]
    _, decided = run.ended(A)
    assert decided == []
    run.drain = list
    run.unclaimed(Access(None, "write", run.real, b"f.txt"), frozenset())
    (found,) = run.settle()
    assert isinstance(found, Undecided)
    assert (found.path, found.candidates, found.reason) == ("f.txt", frozenset({A}), UNCLAIMED)


def test_a_write_read_after_the_look_keeps_the_first_writer_from_the_version(
    tmp_path: Path,
) -> None:
    """A ended; the look at f.txt for its decision is followed by B's write (read from the
    kernel after the look): the version seen may be B's too, so A is not given it; it is
    decided with B, ambiguous between them."""
    run = run_over(tmp_path)
    run.begin(A)
    run.begin(B)
    write(run, A, "f.txt")
    (tmp_path / "f.txt").write_text("a\nb\n")

    def b_wrote() -> list[bytes]:
        write(run, B, "f.txt")
        run.drain = list
        return []

    run.drain = b_wrote
    assert run.ended(A)[1] == []
    (found,) = run.ended(B)[1]
    assert isinstance(found, Undecided) and found.candidates == frozenset({A, B})


def test_a_version_derives_from_reads_of_an_earlier_epoch_or_the_same(tmp_path: Path) -> None:
    run = run_over(tmp_path, **{"a.txt": "a\n", "b.txt": "b\n", "c.txt": "c\n"})
    run.begin(A)
    run.add(Access(A, "read", run.real, b"a.txt", epoch=1))
    run.add(Access(A, "write", run.real, b"out.txt", epoch=2))
    run.add(Access(A, "read", run.real, b"b.txt", epoch=2))  # order unknown: a source
    run.add(Access(A, "read", run.real, b"c.txt", epoch=3))  # surely after: not one
    (tmp_path / "out.txt").write_text("o\n")
    (found,) = run.ended(A)[1]
    assert isinstance(found, Generated)
    assert found.sources == frozenset({"a.txt", "b.txt"})
