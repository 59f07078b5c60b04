"""The files' lineage of a run as a graph: what the lineage API route (and the UI's lineage
panel, drawn from it) and the HTML report's Files section show, built once here so that they
show the same edges, which are those of the PROV export (:mod:`.prov_export`).

Nodes: each file an activity used or generated, ``file:<path>`` (the path's bytes
percent-encoded, see :mod:`.names`; the label the path for people), of type ``file`` when an
activity generated it, ``preExisting`` when it was only read, ``ambiguous`` when no activity
can be said to have generated it (with its candidates and why); and, when the data dir held
files before the run, one ``inputs`` node for them all. Edges, in PROV's directions: activity
-> file ``used``, file -> activity ``wasGeneratedBy``, ambiguous file -> each candidate
activity ``candidate`` (never ``wasGeneratedBy``), and activity -> ``inputs`` ``used`` for
the activities the export says used the inputs collection (:func:`users_of_inputs`).

Each copy the data plane made between two locations (:mod:`.copies`) is a ``copiedFrom``
edge from the file at its destination to the file at its source (the two nodes' labels say
where each lives: a cluster's files carry their location, the engine host's are plain paths);
a file no activity generated at a place, only copied there, is a node of type ``copy`` (the
engine's copy of a version elsewhere, not one found in place nor a version of its own).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from akoflow.provenance import copies
from akoflow.provenance.names import display, encoded
from akoflow.store import AmbiguousFile, FileRecord, InitialFile, Repository
from akoflow.store.repository import DataCopy

INPUTS = "inputs"  # the node of the files in place before the run


@dataclass(slots=True)
class FileNode:
    id: str
    label: str
    type: str  # "file" | "preExisting" | "ambiguous" | "inputs" | "copy"
    candidates: list[str] = field(default_factory=list)  # ambiguous: activity names
    reason: str = ""  # ambiguous: why it is not decided


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    target: str
    label: str  # "used" | "wasGeneratedBy" | "candidate" | "copiedFrom"
    # A use no observed read backs, how it was guessed (PROV's akoflow:inferred): "timing",
    # "remote listing"; "" when observed.
    inferred: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class FileLineage:
    nodes: list[FileNode]
    edges: list[Edge]


def activity_node(name: str) -> str:
    return f"activity:{name}"


def file_node(record: FileRecord | AmbiguousFile) -> str:
    return f"file:{record.encoded_path}"  # lossless; the label is for people (any bytes)


def place_node(location: str, path: str) -> tuple[str, str]:
    """The id and label of the node of ``path`` at ``location`` ('': the engine host)."""
    qualified = f"{location}/{path}" if location else path
    return f"file:{encoded(qualified)}", display(qualified)


def observed(mechanism: str | None) -> bool:
    return bool(mechanism and mechanism.startswith("observed"))


def users_of_inputs(
    mechanism: str | None, ran: Iterable[str], files: Iterable[FileRecord]
) -> list[str]:
    """Of the activities that ``ran`` (an attempt started or ended), those that used the
    inputs collection, as the PROV export says: every one when the accesses were inferred
    from timing (it cannot tell who read what); where they were observed, only those whose
    files stay on a cluster (observation covers the engine's host), the others having used
    the input files they read, each its own edge."""
    if not observed(mechanism):
        return list(ran)
    remote = {f.activity for f in files if f.location}
    return [name for name in ran if name in remote]


def build(
    initial: Sequence[InitialFile],
    input_users: Sequence[str],
    files: Sequence[FileRecord],
    ambiguous: Sequence[AmbiguousFile],
    mechanism: str | None = "observed",
    data_copies: Sequence[DataCopy] = (),
) -> FileLineage:
    """The graph of a run's file records (pure); ``mechanism``: how its accesses were known
    (uses not observed are marked as inferred); ``data_copies``: the data plane's."""
    nodes: list[FileNode] = []
    edges: list[Edge] = []
    if initial:
        count = len(initial)
        nodes.append(
            FileNode(INPUTS, f"{count} file{'s' if count != 1 else ''} before the run", "inputs")
        )
        how = "remote listing" if observed(mechanism) else "timing"
        edges += [Edge(activity_node(name), INPUTS, "used", how) for name in input_users]
    generated = {f.qualified_path for f in files if f.role == "generated"}
    by_id: dict[str, FileNode] = {}
    seen: set[Edge] = set(edges)
    for f in files:
        file_id = file_node(f)
        if file_id not in by_id:
            kind = "file" if f.qualified_path in generated else "preExisting"
            by_id[file_id] = FileNode(file_id, f.display_path, kind)
            nodes.append(by_id[file_id])
        if f.role == "used":
            how = "remote listing" if f.location else "" if observed(mechanism) else "timing"
            edge = Edge(activity_node(f.activity), file_id, "used", how)
        else:
            edge = Edge(file_id, activity_node(f.activity), "wasGeneratedBy")
        if edge not in seen:
            seen.add(edge)
            edges.append(edge)
    # Versions no activity can be said to have generated: no `wasGeneratedBy`, but the
    # activities that may have, as `candidate` edges and on the node.
    for amb in ambiguous:
        file_id = file_node(amb)
        names = list(dict.fromkeys(c.activity for c in amb.candidates))
        node = by_id.get(file_id)
        if node is None:
            node = by_id[file_id] = FileNode(file_id, amb.display_path, "ambiguous")
            nodes.append(node)
        elif node.type != "file":  # read, never generated: what is known of it is this
            node.type = "ambiguous"
        node.candidates = list(dict.fromkeys([*node.candidates, *names]))
        node.reason = node.reason or amb.reason
        for name in names:
            edge = Edge(file_id, activity_node(name), "candidate")
            if edge not in seen:
                seen.add(edge)
                edges.append(edge)
    # Copies: destination -> source, as a derivation points; what was only copied to a
    # place is the copy of the source's version there.
    for copy in data_copies:
        ends = []
        for location, kind in ((copy.destination, "copy"), (copy.source, "preExisting")):
            node_id, label = place_node(location, copy.path)
            node = by_id.get(node_id)
            if node is None:  # no activity's record there (a source: found in place)
                node = by_id[node_id] = FileNode(node_id, label, kind)
                nodes.append(node)
            ends.append(node)
        if ends[0].type == "preExisting":  # read there, never generated: the copy made it
            ends[0].type = "copy"
        edge = Edge(ends[0].id, ends[1].id, "copiedFrom")
        if edge not in seen:
            seen.add(edge)
            edges.append(edge)
    return FileLineage(nodes, edges)


def of_run(repo: Repository, workflow_id: int) -> FileLineage:
    """The graph of a stored run."""
    files = repo.list_files(workflow_id)
    data_copies = repo.list_data_copies(workflow_id)
    ambiguous = repo.list_ambiguous_files(workflow_id)
    initial = repo.list_initial_files(workflow_id)
    known = copies.places([*initial, *ambiguous, *files])
    initial = copies.found_in_place(initial, data_copies, known)  # as the PROV export
    users: list[str] = []
    mechanism = repo.provenance_mechanism(workflow_id)
    if initial:
        remote = {f.activity for f in files if f.location}
        # The activities that may be users and ran (one query, in file order).
        ran_now = repo.activities_that_ran(workflow_id)
        ran = [
            a.name
            for a in repo.list_activities(workflow_id)
            if a.name in ran_now and (not observed(mechanism) or a.name in remote)
        ]
        users = users_of_inputs(mechanism, ran, files)
    return build(
        initial,
        users,
        files,
        ambiguous,
        mechanism,
        data_copies,
    )
