"""A workflow run as a W3C PROV document, built with the ``prov`` library.

- Each attempt is a ``prov:Activity`` (start and end time, runtime, node, image, resources,
  exit code, the placement decision when there was one); activities of one DAG edge are linked
  with ``wasInformedBy``.
- Each version of a file is a ``prov:Entity`` (path, size, SHA-256; a location for files that
  stay on a remote runtime), ``used`` by the attempts that read it and ``wasGeneratedBy`` the
  one that wrote it. A generated version ``wasDerivedFrom`` what its attempt used, and
  nothing else (a rewrite that read nothing derives from nothing, not from the version it
  replaced); where accesses were observed, only what the attempt read before its last write
  to it (a file read after the output was written is no source of it; migration 0010);
  where that is the path's former version (``sed -i``, an append after a read)
  the derivation is a ``prov:Revision``. A ``used`` that no observed read backs carries
  ``akoflow:inferred``: ``"timing"`` (no observation: what the dependencies generated),
  ``"declaration"`` (the activity declared it as an input), ``"remote listing"`` (a file
  that stays on a cluster, listed there when the attempt started). A version no attempt
  can be said to have written (see :mod:`akoflow.provenance`) has no ``wasGeneratedBy``:
  ``akoflow:attribution`` is ``"ambiguous"``, each ``akoflow:candidate`` names an attempt
  that may have written it, and ``akoflow:ambiguity`` says why. The files in place before
  the run are the members of one ``prov:Collection`` (``run:inputs``); where accesses were
  observed, an attempt ``used`` the ones it read, else (timing) every attempt ``used`` the
  collection. The plan carries ``akoflow:provenanceMechanism``: how the run's accesses were
  known. Whatever bytes a file's name holds (see :mod:`akoflow.provenance.names`), its
  entity's IRI holds them percent-encoded (RFC 3986), as ``akoflow:pathBytes`` does;
  ``akoflow:path`` is the path for people.
- The runtimes and AkôFlow itself are ``prov:SoftwareAgent``; every attempt ``wasAssociatedWith``
  its runtime, which ``actedOnBehalfOf`` AkôFlow.
"""

from __future__ import annotations

import datetime
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from prov.model import PROV, PROV_TYPE, ProvDocument

from akoflow import __version__
from akoflow.provenance.declared import declares
from akoflow.provenance.names import display, encoded
from akoflow.provenance.snapshot import content_id
from akoflow.spec import Activity, load_workflow
from akoflow.store import (
    ActivityRecord,
    AmbiguousFile,
    AttemptRecord,
    FileRecord,
    InitialFile,
    PlacementRecord,
    Repository,
    WorkflowRecord,
)

AKOFLOW_NS = "https://akoflow.dev/ns#"
FORMATS = ("json", "provn", "ttl")


def _time(ts: float | None) -> datetime.datetime | None:
    return None if ts is None else datetime.datetime.fromtimestamp(ts, datetime.UTC)


def _file_id(record: FileRecord | InitialFile | AmbiguousFile) -> str:
    """The entity's local name: ``file/<path>@<version>``, the path percent-encoded, so the
    IRI is valid and PROV-N writes it as it is (``@`` is encoded in the path: the last one
    starts the version: the checksum's first 16 hex digits, else size and time in full, the
    time to the microsecond)."""
    version = record.sha256[:16] if record.sha256 else content_id(record)
    path = encoded(record.path)
    if record.location:  # e.g. "hpc:/scratch/x" -> "remote/hpc_scratch_x/<path>"
        where = re.sub(r"[^A-Za-z0-9._-]+", "_", record.location).strip("_")
        return f"remote/{where}/{path}@{version}"
    return f"file/{path}@{version}"


def build_document(
    workflow: WorkflowRecord,
    activities: Sequence[ActivityRecord],
    attempts: dict[int, list[AttemptRecord]],
    files: Sequence[FileRecord],
    placements: Sequence[PlacementRecord],
    dependencies: Sequence[tuple[int, int]],
    specs: Mapping[str, Activity],
    initial: Sequence[InitialFile] = (),
    ambiguous: Sequence[AmbiguousFile] = (),
    mechanism: str | None = None,
    derivations: Sequence[tuple[FileRecord, FileRecord | None]] = (),
) -> ProvDocument:
    doc = ProvDocument()
    doc.add_namespace("akoflow", AKOFLOW_NS)
    run_ns = doc.add_namespace("run", f"{AKOFLOW_NS}workflow/{workflow.id}/")
    engine = doc.agent(
        "akoflow:engine",
        {PROV_TYPE: "prov:SoftwareAgent", "akoflow:version": __version__},
    )
    plan_attributes: dict[Any, Any] = {
        PROV_TYPE: "prov:Plan",
        "akoflow:name": workflow.name,
        "akoflow:id": workflow.id,
    }
    if mechanism:
        plan_attributes["akoflow:provenanceMechanism"] = mechanism
    plan = doc.entity(run_ns["workflow"], plan_attributes)
    agents: dict[str, Any] = {}
    placement_of = {(p.activity_id, p.attempt): p for p in placements}
    last_attempt: dict[int, str] = {}
    attempt_ids: list[str] = []
    for act in activities:
        spec = specs.get(act.name)
        for att in attempts.get(act.id, []):
            if att.started_at is None and att.finished_at is None:
                continue  # never started: nothing happened
            runtime = att.runtime or act.runtime
            if runtime not in agents:
                agents[runtime] = doc.agent(
                    run_ns[f"runtime/{runtime}"],
                    {PROV_TYPE: "prov:SoftwareAgent", "akoflow:runtime": runtime},
                )
                doc.actedOnBehalfOf(agents[runtime], engine)
            attributes: dict[Any, Any] = {
                PROV_TYPE: "akoflow:Attempt",
                "akoflow:activity": act.name,
                "akoflow:attempt": att.number,
                "akoflow:runtime": runtime,
                "akoflow:state": att.state,
            }
            optional = {
                "akoflow:node": att.node,
                "akoflow:exitCode": att.exit_code,
                "akoflow:image": act.image,
                "akoflow:cpuLimit": spec.cpu_limit if spec else None,
                "akoflow:memoryLimit": spec.memory_limit if spec else None,
                "akoflow:cpuSeconds": att.cpu_seconds,
                "akoflow:maxRssBytes": att.max_rss_bytes,
            }
            placement = placement_of.get((act.id, att.number))
            if placement is not None:
                optional["akoflow:placementPolicy"] = placement.policy
                optional["akoflow:placementNode"] = placement.node
                optional["akoflow:placementAlpha"] = placement.alpha
            attributes.update({k: v for k, v in optional.items() if v is not None})
            identifier = run_ns[f"activity/{act.name}/{att.number}"]
            declared = [("akoflow:declaredInput", p) for p in spec.inputs] if spec else []
            declared += [("akoflow:declaredOutput", p) for p in spec.outputs] if spec else []
            doc.activity(
                identifier,
                _time(att.started_at),
                _time(att.finished_at),
                [*attributes.items(), *declared],
            )
            doc.wasAssociatedWith(identifier, agents[runtime], plan)
            last_attempt[act.id] = f"activity/{act.name}/{att.number}"
            attempt_ids.append(last_attempt[act.id])
    for act_id, dep_id in dependencies:
        if act_id in last_attempt and dep_id in last_attempt:
            doc.wasInformedBy(run_ns[last_attempt[act_id]], run_ns[last_attempt[dep_id]])
    entities: set[str] = set()
    latest: dict[str, str] = {}  # qualified path -> its latest version's id

    def entity(record: FileRecord | InitialFile | AmbiguousFile) -> str:
        file_id = _file_id(record)
        if file_id not in entities:
            attrs: list[tuple[Any, Any]] = [
                (PROV_TYPE, "akoflow:File"),
                ("akoflow:path", display(record.path)),
                ("akoflow:pathBytes", encoded(record.path)),
                ("akoflow:size", record.size),
            ]
            if record.sha256:
                attrs.append(("akoflow:sha256", record.sha256))
            if record.location:
                attrs.append(("akoflow:location", display(record.location)))
            if isinstance(record, AmbiguousFile):
                attrs.append(("akoflow:attribution", "ambiguous"))
                attrs.append(("akoflow:ambiguity", record.reason))
                for c in record.candidates:
                    attrs.append(
                        ("akoflow:candidate", run_ns[f"activity/{c.activity}/{c.attempt}"])
                    )
            doc.entity(run_ns[file_id], attrs)
            entities.add(file_id)
        return file_id

    # Versions no attempt can be said to have written: first, so that their entities carry
    # the candidates however else they are referred to.
    for unsure in sorted(ambiguous, key=lambda f: f.mtime):
        latest[unsure.qualified_path] = entity(unsure)
    observed = bool(mechanism and mechanism.startswith("observed"))

    # What the run found in place: one collection every attempt used (a relation per
    # attempt, not per attempt and file).
    if initial:
        inputs = doc.collection(run_ns["inputs"], {"akoflow:name": "files in place before the run"})
        for found in initial:
            file_id = entity(found)
            doc.hadMember(inputs, run_ns[file_id])
            latest[found.qualified_path] = file_id
        names_of = {a.id: a.name for a in activities}
        # Observation covers the engine's host only: an attempt whose files stay on a
        # cluster (its records carry a location) used the inputs collection as before.
        remote = {f"activity/{names_of[r.activity_id]}/{r.attempt}" for r in files if r.location}
        for attempt_id in attempt_ids:
            if not observed or attempt_id in remote:  # observed: it used what it read
                how = "remote listing" if observed else "timing"  # a guess either way
                doc.used(run_ns[attempt_id], inputs, None, None, {"akoflow:inferred": how})
    names = {a.id: a.name for a in activities}
    read: dict[tuple[int, int], list[str]] = {}  # what each attempt used
    for record in files:
        if record.role == "used":
            read.setdefault((record.activity_id, record.attempt), []).append(entity(record))
    # Generated versions whose sources are known exactly -> those sources' entities.
    exact: dict[tuple[int, int, str], set[str]] = {}
    for made, origin in derivations:
        sources_of = exact.setdefault((made.activity_id, made.attempt, _file_id(made)), set())
        if origin is not None:
            sources_of.add(entity(origin))
    for record in sorted(files, key=lambda f: f.mtime):
        file_id = entity(record)
        activity = run_ns[f"activity/{names[record.activity_id]}/{record.attempt}"]
        if record.role == "used":
            how = _inferred(record, observed, specs.get(names[record.activity_id]))
            doc.used(
                activity, run_ns[file_id], None, None, {"akoflow:inferred": how} if how else None
            )
        else:
            doc.wasGeneratedBy(run_ns[file_id], activity, _time(record.mtime))
            former = latest.get(record.qualified_path)
            sources = exact.get((record.activity_id, record.attempt, file_id))
            if sources is None:  # not known exactly: everything its attempt used
                sources = set(read.get((record.activity_id, record.attempt), []))
            for source in sorted(sources - {file_id}):
                revision = {PROV_TYPE: PROV["Revision"]} if source == former else None
                doc.wasDerivedFrom(
                    run_ns[file_id], run_ns[source], activity, None, None, None, revision
                )
            latest[record.qualified_path] = file_id
    return doc


def _inferred(record: FileRecord, observed: bool, spec: Activity | None) -> str:
    """How a use was known when no observed read backs it ("" when one does)."""
    if record.location:
        return "remote listing"
    if observed:
        return ""
    if spec is not None and spec.inputs and declares(spec.inputs, record.path):
        return "declaration"
    return "timing"


def serialize(doc: ProvDocument, fmt: str) -> str:
    """PROV-JSON (``json``), PROV-N (``provn``) or PROV-O Turtle (``ttl``)."""
    if fmt == "provn":
        return str(doc.get_provn())
    if fmt == "ttl":
        with warnings.catch_warnings():
            # prov's RDF serializer calls an rdflib API that rdflib 7 deprecates (a library
            # quirk, nothing in the document): not the user's concern.
            warnings.filterwarnings(
                "ignore", "Dataset.default_context is deprecated", DeprecationWarning
            )
            return str(doc.serialize(format="rdf", rdf_format="turtle"))
    if fmt == "json":
        return str(doc.serialize(format=fmt, indent=2))
    raise ValueError(f"unknown PROV format {fmt!r}: use one of {', '.join(FORMATS)}")


def workflow_document(repo: Repository, workflow_id: int) -> ProvDocument:
    """The PROV document of a stored workflow run."""
    workflow = repo.get_workflow(workflow_id)
    if workflow is None:
        raise KeyError(f"no workflow with id {workflow_id}")
    activities = repo.list_activities(workflow_id)
    spec = load_workflow(workflow.spec_yaml, source=workflow.source or workflow.name)
    return build_document(
        workflow,
        activities,
        {a.id: repo.list_attempts(a.id) for a in activities},
        repo.list_files(workflow_id),
        repo.list_placements(workflow_id),
        repo.list_dependencies(workflow_id),
        {a.name: a for a in spec.activities},
        repo.list_initial_files(workflow_id),
        repo.list_ambiguous_files(workflow_id),
        repo.provenance_mechanism(workflow_id),
        repo.list_derivations(workflow_id),
    )
