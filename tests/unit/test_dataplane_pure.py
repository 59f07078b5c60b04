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
