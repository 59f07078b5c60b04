"""The data plane's pure parts: temporary names, what to copy where, what a listing says."""

from __future__ import annotations

from akoflow.dataplane import plan
from akoflow.dataplane.mover import NAME_MAX, PART_SUFFIX, Digest, part_name
from akoflow.provenance.remote import RemoteFiles
from akoflow.provenance.snapshot import FileState
from akoflow.store.repository import Replica


def test_temporary_names_are_per_run_and_within_a_names_bytes() -> None:
    assert part_name(b"/m/a/b.txt") == b"/m/a/.b.txt.akoflow-part"
    assert part_name(b"/m/a/b.txt", "s1-wf3") == b"/m/a/.b.txt.s1-wf3.akoflow-part"
    assert part_name(b"b\xff") == b".b\xff.akoflow-part"
    long = b"/m/" + b"x" * 250
    short = part_name(long, "s1-wf3").rpartition(b"/")[2]
    assert len(short) <= NAME_MAX and short.endswith(PART_SUFFIX.encode())
    assert part_name(long, "s1-wf3") == part_name(long, "s1-wf3")  # the same each time
    assert part_name(b"/m/" + b"y" * 250, "s1-wf3") != part_name(long, "s1-wf3")


def test_puts_skip_what_the_location_holds_and_never_overwrite_a_newer_file() -> None:
    host = {"a": Digest(1, "aa"), "b": Digest(1, "bb"), "c": Digest(1, "cc")}
    at = "hpc:/m"
    replicas = {
        (at, "a"): Replica(at, "a", 1, "aa", False, None),  # the same content: skipped
        (at, "b"): Replica(at, "b", 1, "old", False, None),  # older content: copied
        (at, "c"): Replica(at, "c", 5, None, True, 7),  # an activity wrote it there: kept
    }
    assert plan.puts(host, replicas, target=at) == ["b"]
    assert plan.puts(host, {}, target=at) == ["a", "b", "c"]


def test_fetches_bring_only_fresh_files_of_ancestors_from_elsewhere() -> None:
    replicas = {
        ("hpc:/m", "x"): Replica("hpc:/m", "x", 1, None, True, 1),
        ("hpc:/m", "y"): Replica("hpc:/m", "y", 1, None, True, 2),  # not an ancestor's
        ("hpc:/m", "z"): Replica("hpc:/m", "z", 1, "zz", False, 1),  # already at the host
        ("k8s:pvc/c", "w"): Replica("k8s:pvc/c", "w", 1, None, True, 1),
    }
    found = plan.fetches(replicas, target="", writers={1}, inputs=())
    assert found == [plan.Fetch("hpc:/m", "x"), plan.Fetch("k8s:pvc/c", "w")]
    # At its own location nothing of it is fetched; declared inputs narrow the rest.
    assert plan.fetches(replicas, target="hpc:/m", writers={1}, inputs=()) == [
        plan.Fetch("k8s:pvc/c", "w")
    ]
    assert plan.fetches(replicas, target="", writers={1}, inputs=("w",)) == [
        plan.Fetch("k8s:pvc/c", "w")
    ]


AT = "hpc:/m"


def _recorded(path: str, writer: int, at: float, *, fresh: bool = True) -> Replica:
    return Replica(AT, path, 1, None, fresh, writer, 1.0, None, at)


def test_a_version_recorded_while_others_ran_there_may_be_theirs() -> None:
    """Without declarations, the attempt whose end recorded a version is one possible writer
    of it; every activity running at that location then is another."""
    windows = [
        plan.Window(1, 0.0, 10.0, False),  # recorded it at 10
        plan.Window(2, 5.0, None, True),  # still running
        plan.Window(3, 11.0, None, True),  # started after: not a writer of it
        plan.Window(4, 0.0, 4.0, False),  # ended before
    ]
    held = _recorded("f", 1, 10.0)
    assert plan.candidates(held, windows) == {1, 2}
    assert plan.candidates(held, windows, declared=True) == {1}  # its declared output
    assert plan.unsettled(held, windows)  # 2 may still be writing it
    assert not plan.unsettled(held, windows, ending=2)  # 2's end: complete now
    assert not plan.unsettled(held, windows, declared=True)  # 1 said it makes it
    # Its dependents need it whichever of the two wrote it.
    replicas = {(AT, "f"): held}
    assert plan.fetches(replicas, target="", writers={2}, inputs=(), windows={AT: windows})
    assert not plan.fetches(replicas, target="", writers={3, 4}, inputs=(), windows={AT: windows})
    # No windows known: the recorder alone.
    assert not plan.fetches(replicas, target="", writers={2}, inputs=())


def test_a_version_comes_back_at_the_end_of_the_last_attempt_that_may_be_writing_it() -> None:
    windows = [plan.Window(1, 0.0, None, True), plan.Window(2, 5.0, None, True)]
    replicas = {(AT, "f"): _recorded("f", 1, 10.0), (AT, "g"): _recorded("g", 2, 12.0)}
    everyone = {1, 2}.__contains__
    # 1 ends first: f may be 2's half-written file; g was recorded by 2, while 1 ran.
    assert (
        plan.collectable(replicas, location=AT, ending=1, windows=windows, collected=everyone) == []
    )
    ended = [plan.Window(1, 0.0, 11.0, False), plan.Window(2, 5.0, None, True)]
    found = plan.collectable(replicas, location=AT, ending=2, windows=ended, collected=everyone)
    assert found == ["f", "g"]
    # f is 1's, declared: complete at 1's end.
    declared = plan.collectable(
        replicas,
        location=AT,
        ending=1,
        windows=windows,
        collected=everyone,
        declared=lambda r: r.path == "f",
    )
    assert declared == ["f"]
    # Only what one of its possible writers brings back (the collect policy); never twice.
    assert not plan.collectable(
        replicas, location=AT, ending=2, windows=ended, collected={3}.__contains__
    )
    fetched = {(AT, "f"): _recorded("f", 1, 10.0, fresh=False)}
    assert not plan.collectable(fetched, location=AT, ending=2, windows=ended, collected=everyone)


def test_a_listing_says_what_changed_and_what_is_recorded_already() -> None:
    before = {"same": FileState(1, 1.0), "gone": FileState(1, 1.0), "grew": FileState(1, 1.0)}
    after = {"same": FileState(1, 1.0), "grew": FileState(2, 2.0), "new": FileState(3, 3.0)}
    written, deleted = plan.changed(RemoteFiles("hpc:/m", before, after))
    assert set(written) == {"grew", "new"} and deleted == ["gone"]
    held = Replica("hpc:/m", "new", 3, None, True, 1, 3.0)
    assert plan.recorded(held, FileState(3, 3.0))
    assert not plan.recorded(held, FileState(3, 4.0))
    assert not plan.recorded(None, FileState(3, 3.0))


def test_an_attempt_claims_its_declared_outputs_and_what_no_other_activity_declares() -> None:
    others = [("p.txt",), ("out/*.txt",), ()]
    assert plan.claims((), others, "r.txt")
    assert not plan.claims((), others, "p.txt")  # another activity's declared output
    assert not plan.claims((), others, "out/a.txt")
    assert plan.claims(("p.txt",), others, "p.txt")  # it says it makes it
    assert plan.claims(("q.txt",), others, "r.txt")  # undeclared, but nobody else's either
    assert not plan.claims(("q.txt",), others, "out/b.txt")
