"""ObservedRun.rescan (akoflow.provenance.observed) on real files, with accesses given by hand:
a change is an ambiguous new version only when no observed access explains it, also one read
from the kernel after the look (the drain), and its candidates are the attempts that ran
since the path's version was last confirmed."""

from __future__ import annotations

from pathlib import Path

from akoflow.provenance.observe import Access
from akoflow.provenance.observed import UNOBSERVED, Generated, ObservedRun, Undecided
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
    (found,) = run.rescan(list, full=True)
    assert isinstance(found, Undecided)
    assert (found.path, found.candidates, found.reason) == ("f.txt", frozenset({B}), UNOBSERVED)
    run.ended(B)
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
    (found,) = run.rescan(list, ["f.txt"], full=False)
    assert isinstance(found, Undecided) and found.candidates == frozenset({B})
