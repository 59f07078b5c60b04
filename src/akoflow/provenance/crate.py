"""A workflow run as a Workflow Run RO-Crate (https://w3id.org/ro/wfrun/workflow), through
the ``rocrate`` library.

- The workflow file is the crate's main ``ComputationalWorkflow`` (language: AkôFlow YAML).
- The run is one ``CreateAction`` (instrument: the workflow; object: the files that were there
  before the run; result: the files it generated; start, end, status, agent).
- Each activity's last attempt is a ``CreateAction`` of its own (instrument: the activity as a
  ``SoftwareApplication``; object/result: the files it used/generated; its runtime and node).
- A file version no attempt can be said to have generated (see :mod:`akoflow.provenance`) is
  a result of the run but of no activity's action; ``akoflowAttribution`` is ``ambiguous``,
  ``akoflowCandidates`` names the attempts that may have written it and ``akoflowAmbiguity``
  says why. The root dataset's ``akoflowProvenanceMechanism`` says how accesses were known.
- Each copy the data plane made between two locations (:mod:`.copies`) is a ``CreateAction``
  of its own (instrument: AkôFlow; object: the file at its source; result: the file at its
  destination; start and end; ``akoflowSource``/``akoflowDestination``: the locations,
  ``contentSize``, ``sha256``; ``akoflowForActivity``: the activity's action it was made
  for, when that is its last attempt). A file's ``akoflowLocation`` says where it lives:
  ``engine host`` or the cluster's location (one entity per path and location, as for
  every file of the crate: not per version).
- The files are copied into the crate (``include_data``) or referenced by their ``file://``
  URIs when they are too big to copy, copying is turned off, or the path is no longer a
  regular file. A copy keeps its path under ``data/`` where the name is plain text; other
  names get a portable form (:func:`akoflow.provenance.names.portable_name`: bytes that are
  not UTF-8, controls, ``%`` and the like percent-encoded), since a crate travels to other
  systems. Every file entity has its path for people as ``name`` and, lossless, its bytes
  percent-encoded as ``akoflowPathBytes`` (see :mod:`akoflow.provenance.names`).
"""

from __future__ import annotations

import datetime
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rocrate.model.computerlanguage import ComputerLanguage
from rocrate.model.contextentity import ContextEntity
from rocrate.rocrate import ROCrate

from akoflow import __version__
from akoflow.provenance import copies
from akoflow.provenance.names import display, encoded, portable_name
from akoflow.store import AmbiguousFile, FileRecord, InitialFile, Repository
from akoflow.store.repository import DataCopy

WFRUN_PROFILES = (
    "https://w3id.org/ro/wfrun/process/0.5",
    "https://w3id.org/ro/wfrun/workflow/0.5",
)
COPY_LIMIT = 256 << 20  # bytes per file copied into the crate


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat()


def _status(state: str) -> str:
    return {
        "succeeded": "CompletedActionStatus",
        "cached": "CompletedActionStatus",  # an earlier run's result, reused (akoflow.cache)
        "failed": "FailedActionStatus",
        "cancelled": "FailedActionStatus",
        "skipped": "PotentialActionStatus",
    }.get(state, "ActiveActionStatus")


def _copyable(source: Path) -> bool:
    """A regular file (not a symlink put in its place, which could point anywhere, nor a FIFO,
    whose copy would wait for a writer forever) small enough to copy."""
    try:
        info = os.lstat(source)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_size <= COPY_LIMIT


def write_crate(
    repo: Repository, workflow_id: int, dest: Path, *, include_data: bool = True
) -> Path:
    """Write the run's crate into the directory ``dest`` (created); returns it."""
    wf = repo.get_workflow(workflow_id)
    if wf is None:
        raise KeyError(f"no workflow with id {workflow_id}")
    data_dir = Path(wf.data_dir)
    crate = ROCrate()
    crate.name = f"AkôFlow run {wf.id} of {wf.name}"
    crate.description = f"Workflow Run RO-Crate of the AkôFlow workflow {wf.name!r}, run {wf.id}"
    crate.root_dataset["conformsTo"] = [{"@id": p} for p in WFRUN_PROFILES]
    mechanism = repo.provenance_mechanism(workflow_id)
    if mechanism:
        crate.root_dataset["akoflowProvenanceMechanism"] = mechanism
    for profile in WFRUN_PROFILES:
        crate.add(
            ContextEntity(crate, profile, properties={"@type": "CreativeWork", "version": "0.5"})
        )
    language = crate.add(
        ComputerLanguage(
            crate,
            "#akoflow",
            properties={
                "name": "AkôFlow workflow YAML",
                "url": {"@id": "https://github.com/UFFeScience/akoflow"},
            },
        )
    )
    workflow_file = dest.parent / f".{dest.name}.workflow.yaml"
    workflow_file.parent.mkdir(parents=True, exist_ok=True)
    workflow_file.write_text(wf.spec_yaml, encoding="utf-8")
    try:
        workflow = crate.add_workflow(
            workflow_file,
            dest_path="workflow.yaml",
            main=True,
            lang=language,
            properties={"name": wf.name},
        )
        engine = crate.add(
            ContextEntity(
                crate,
                "#akoflow-engine",
                properties={
                    "@type": "SoftwareApplication",
                    "name": "AkôFlow (Python)",
                    "version": __version__,
                },
            )
        )
        files: dict[str, Any] = {}

        def file_entity(record: FileRecord | InitialFile | AmbiguousFile) -> Any:
            path = record.qualified_path
            if path in files:
                return files[path]
            properties: dict[str, Any] = {
                "name": record.display_path,
                "akoflowPathBytes": record.encoded_path,
                "contentSize": str(record.size),
            }
            if isinstance(record, AmbiguousFile):
                properties["akoflowAttribution"] = "ambiguous"
                properties["akoflowAmbiguity"] = record.reason
                properties["akoflowCandidates"] = [
                    f"{c.activity} (attempt {c.attempt})" for c in record.candidates
                ]
            if record.sha256:
                properties["sha256"] = record.sha256
            properties["akoflowLocation"] = copies.place_name(record.location)
            if record.location:  # stays on a remote runtime: described, never copied
                properties.update({"@type": "File", "akoflowLocation": display(record.location)})
                entity = crate.add(ContextEntity(crate, f"#remote:{encoded(path)}", properties))
                files[path] = entity
                return entity
            source = data_dir / path
            inside = all(part not in ("", ".", "..") for part in path.split("/"))
            if include_data and inside and _copyable(source):
                dest = "/".join(portable_name(part) for part in path.split("/"))
                entity = crate.add_file(source, dest_path=f"data/{dest}", properties=properties)
            else:
                entity = crate.add_file(source.absolute().as_uri(), properties=properties)
            files[path] = entity
            return entity

        # The run's inputs: what was in place before it started. Its results: what its
        # activities generated.
        initial = repo.list_initial_files(workflow_id)
        known = copies.places(
            [*initial, *repo.list_ambiguous_files(workflow_id), *repo.list_files(workflow_id)]
        )
        data_copies = repo.list_data_copies(workflow_id)
        found = copies.found_in_place(initial, data_copies, known)  # not what copies put
        inputs = [file_entity(f) for f in found]
        outputs: list[Any] = []
        for unsure in repo.list_ambiguous_files(workflow_id):  # before: they keep their
            entity = file_entity(unsure)  # candidates however else they are referred to
            if entity not in outputs:
                outputs.append(entity)
        by_activity: dict[tuple[int, int], dict[str, list[Any]]] = {}
        for record in repo.list_files(workflow_id):
            entity = file_entity(record)
            slot = by_activity.setdefault((record.activity_id, record.attempt), {"o": [], "r": []})
            (slot["o"] if record.role == "used" else slot["r"]).append(entity)
            if record.role == "generated" and entity not in outputs:
                outputs.append(entity)
        run_action = crate.add_action(
            workflow,
            identifier=f"#run-{wf.id}",
            object=inputs,
            result=outputs,
            properties={
                "name": f"Run {wf.id} of {wf.name}",
                "startTime": _iso(wf.started_at),
                "endTime": _iso(wf.finished_at),
                "actionStatus": {"@id": f"http://schema.org/{_status(str(wf.state))}"},
                "agent": {"@id": engine.id},
            },
        )
        steps = []
        step_of: dict[tuple[str, int], Any] = {}  # (activity, attempt) -> its action
        for act in repo.list_activities(workflow_id):
            attempts = [a for a in repo.list_attempts(act.id) if a.started_at is not None]
            tool = crate.add(
                ContextEntity(
                    crate,
                    f"#activity-{act.name}",
                    properties={"@type": "SoftwareApplication", "name": act.name},
                )
            )
            if not attempts:
                continue
            last = attempts[-1]
            used = by_activity.get((act.id, last.number), {"o": [], "r": []})
            properties: dict[str, Any] = {
                "name": f"{act.name} (attempt {last.number})",
                "startTime": _iso(last.started_at),
                "endTime": _iso(last.finished_at),
                "actionStatus": {"@id": f"http://schema.org/{_status(last.state)}"},
                "akoflowRuntime": last.runtime,
            }
            if last.node:
                properties["akoflowNode"] = last.node
            if act.image:
                properties["akoflowImage"] = act.image
            if last.exit_code is not None:
                properties["exitCode"] = last.exit_code
            step_of[(act.name, last.number)] = crate.add_action(
                tool,
                identifier=f"#activity-{act.name}-attempt-{last.number}",
                object=used["o"],
                result=used["r"],
                properties=properties,
            )
            steps.append(step_of[(act.name, last.number)])
        moves = _copy_actions(
            repo, workflow_id, (crate, engine), file_entity, step_of, data_copies, known
        )
        crate.root_dataset["mentions"] = [run_action, *steps, *moves]
        crate.write(dest)
    finally:
        workflow_file.unlink(missing_ok=True)
    return dest


def _copy_actions(
    repo: Repository,
    workflow_id: int,
    crate_and_engine: tuple[ROCrate, Any],
    file_entity: Callable[[copies.Version], Any],
    step_of: dict[tuple[str, int], Any],
    data_copies: list[DataCopy],
    known: copies.Places,
) -> list[Any]:
    """Each data-plane copy as a ``CreateAction`` (see the module doc)."""
    crate, engine = crate_and_engine
    files = [v for place in known.values() for v in place if isinstance(v, FileRecord)]
    activities = {a.id: a.name for a in repo.list_activities(workflow_id)}
    actions = []
    for number, copy in enumerate(data_copies, 1):
        source = file_entity(copies.source_of(copy, known))
        result = file_entity(copies.destination_of(copy, known))
        properties: dict[str, Any] = {
            "name": f"copy of {display(copy.path)} from {copies.place_name(copy.source)} "
            f"to {copies.place_name(copy.destination)}",
            "startTime": _iso(copy.started_at),
            "endTime": _iso(copy.ended_at),
            "actionStatus": {"@id": "http://schema.org/CompletedActionStatus"},
            "akoflowSource": copies.place_name(copy.source),
            "akoflowDestination": copies.place_name(copy.destination),
            "contentSize": str(copy.bytes),
            "sha256": copy.sha256,
        }
        name = activities.get(copy.activity_id or 0)
        if name is not None:
            properties["akoflowForActivityName"] = name
            ran = [a for a in repo.list_attempts(copy.activity_id or 0) if a.started_at is not None]
            attempt, _ = copies.made_for(copy, ran, files)
            step = step_of.get((name, attempt.number)) if attempt is not None else None
            if step is not None:
                properties["akoflowForActivity"] = {"@id": step.id}
        action = crate.add_action(
            engine,
            identifier=f"#copy-{number}",
            object=[source],
            result=[result],
            properties=properties,
        )
        actions.append(action)
    return actions
