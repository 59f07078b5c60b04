"""Which recorded versions a data-plane copy read and wrote, and which attempt it was made for
(:mod:`akoflow.provenance.copies`, pure): a host version by its SHA-256, a cluster's listed
version by size and time, the copy's own knowledge when no record names it; and the lineage
graph's copiedFrom edges and copy nodes."""

from __future__ import annotations

from akoflow.provenance import copies, lineage
from akoflow.store import AttemptRecord, FileRecord, InitialFile
from akoflow.store.repository import DataCopy

AT = "hpc:/scratch/run"
SHA = "ab" * 32


def copy(source: str, destination: str, start: float, path: str = "a.txt") -> DataCopy:
    return DataCopy(7, path, source, destination, 3, SHA, start, start + 1)


def record(
    location: str, mtime: float, sha: str | None, role: str = "used", attempt: int = 1
) -> FileRecord:
    return FileRecord(7, "act", attempt, role, "a.txt", 3, mtime, sha, location)


def attempt(number: int, started: float, finished: float | None) -> AttemptRecord:
    return AttemptRecord(
        number, 7, number, "succeeded", "hpc", {}, None, started, started, finished, 0,
        None, None, None,
    )  # fmt: skip


def test_a_host_version_is_known_by_its_checksum() -> None:
    host = record("", 50.0, SHA, role="generated")
    other = record("", 60.0, "cd" * 32, role="generated")
    known = copies.places([other, host])
    assert copies.source_of(copy("", AT, 100.0), known) is host


def test_a_listed_version_is_the_one_before_a_read_and_the_first_after_a_write() -> None:
    old, new, later = record(AT, 10.0, None), record(AT, 90.0, None), record(AT, 300.0, None)
    known = copies.places([old, new, later])
    assert copies.source_of(copy(AT, "", 100.0), known) is new  # the latest made before
    assert copies.destination_of(copy("", AT, 95.0), known) is later  # listed after it
    # Nothing of that size: the copy's own knowledge, identified by its checksum.
    made = copies.destination_of(copy("", AT, 95.0, path="b.txt"), known)
    assert (made.location, made.path, made.sha256, made.size) == (AT, "b.txt", SHA, 3)


def test_files_a_copy_put_on_a_cluster_are_not_found_in_place() -> None:
    staged = InitialFile("a.txt", 3, 100.5, None, AT)
    before = InitialFile("params.txt", 5, 1.0, None, AT)
    known = copies.places([staged, before])
    assert copies.found_in_place([staged, before], [copy("", AT, 100.0)], known) == [before]


def test_a_copy_is_made_for_the_attempt_that_needs_it_or_wrote_it() -> None:
    first, second = attempt(1, 10.0, 20.0), attempt(2, 30.0, 40.0)
    # Staged in before attempt 2 (attempt 1 had ended): for attempt 2, before it.
    assert copies.made_for(copy("", AT, 25.0), [first, second], []) == (second, False)
    # What attempt 1 wrote at the cluster, brought back: after it.
    wrote = record(AT, 19.0, None, role="generated")
    assert copies.made_for(copy(AT, "", 21.0), [first, second], [wrote]) == (first, True)


def test_the_lineage_graph_has_a_copiedFrom_edge_and_a_copy_node() -> None:
    made = FileRecord(7, "make", 1, "generated", "a.txt", 3, 50.0, None, AT)
    read = FileRecord(8, "use", 1, "used", "a.txt", 3, 60.0, SHA, "")
    graph = lineage.build([], [], [made, read], [], "observed", [copy(AT, "", 55.0)])
    host, remote = "file:a.txt", "file:hpc%3A/scratch/run/a.txt"
    assert lineage.Edge(host, remote, "copiedFrom") in graph.edges
    kinds = {n.id: n.type for n in graph.nodes}
    assert kinds == {remote: "file", host: "copy"}  # read on the host, a copy: no version
