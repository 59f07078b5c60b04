"""The store's side of deleting runs: what a run is made of, whether it may go, the runs
whose data dir lies in a dir to be removed, and the records of what deletions left on
backends. The rows themselves are deleted by :mod:`akoflow.gc.rows`, in batches.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from akoflow.engine.model import run_dir
from akoflow.engine.ownership import owner_alive
from akoflow.gc.select import RunSummary
from akoflow.states import WorkflowState
from akoflow.store import Repository

FINAL = tuple(s.value for s in WorkflowState if s.is_final)


@dataclass(frozen=True, slots=True)
class RunFacts:
    """What a run's deletion needs to know, read before anything is removed."""

    id: int
    name: str
    state: WorkflowState
    namespace: str
    data_dir: Path
    run_dir: Path
    runtimes: tuple[str, ...]  # the runtimes its attempts went to
    nodes: tuple[str, ...]  # the nodes they ran on
    owner_pid: int | None
    owner_started: float | None


@dataclass(frozen=True, slots=True)
class Pending:
    """What a deleted run left on a runtime (a gc_remote row)."""

    id: int
    workflow_id: int
    workflow_name: str
    runtime: str
    scope: str
    namespace: str
    nodes: tuple[str, ...]
    tries: int
    last_error: str | None


def summaries(repo: Repository) -> list[RunSummary]:
    rows = repo._exec(
        "SELECT id, name, state, COALESCE(finished_at, created_at) FROM workflows"
    ).fetchall()
    return [RunSummary(int(r[0]), str(r[1]), r[2] in FINAL, r[3]) for r in rows]


def facts(repo: Repository, state_dir: Path, wf_id: int) -> RunFacts | None:
    rec = repo.get_workflow(wf_id)
    if rec is None:
        return None
    runtimes = repo._exec(
        "SELECT DISTINCT t.runtime FROM attempts t JOIN activities a ON a.id = t.activity_id "
        "WHERE a.workflow_id = ? ORDER BY 1",
        (wf_id,),
    ).fetchall()
    nodes = repo._exec(
        "SELECT DISTINCT t.node FROM attempts t JOIN activities a ON a.id = t.activity_id "
        "WHERE a.workflow_id = ? AND t.node IS NOT NULL ORDER BY 1",
        (wf_id,),
    ).fetchall()
    return RunFacts(
        id=rec.id,
        name=rec.name,
        state=rec.state,
        namespace=rec.namespace,
        data_dir=Path(rec.data_dir),
        run_dir=run_dir(state_dir, rec.id, rec.name),
        runtimes=tuple(str(r[0]) for r in runtimes),
        nodes=tuple(str(r[0]) for r in nodes),
        owner_pid=rec.owner_pid,
        owner_started=rec.owner_started,
    )


@dataclass(frozen=True, slots=True)
class Nested:
    """Another run whose data dir (``akoflow run --data-dir``) lies in a dir being removed."""

    id: int
    state: str
    owner_pid: int | None
    owner_started: float | None
    data_dir: str
    kept: Path
    """Its data dir as a path beneath the removed dir: what the removal leaves."""

    @property
    def busy(self) -> str | None:
        """Why this run forbids the removal, or None (it ended: its data dir is left)."""
        refused = why_not(self.state, self.owner_pid, self.owner_started)
        if refused is None:
            return None
        return (
            f"run {self.id} works in it (its data dir {self.data_dir}, given with --data-dir, "
            f"lies inside), and {refused.split(';')[0]}: wait for its end, or cancel it first"
        )


def beneath(data_dir: str, root: Path) -> Path | None:
    """Where ``data_dir`` lies in ``root`` as a path beneath ``root`` (compared as written,
    then with every link resolved), or None when it lies elsewhere."""
    base, data = os.path.abspath(root), os.path.abspath(data_dir)
    if Path(data).is_relative_to(base):
        return Path(data)
    real_base, real_data = os.path.realpath(base), os.path.realpath(data)
    if Path(real_data).is_relative_to(real_base):
        return Path(base) / os.path.relpath(real_data, real_base)
    return None


def nested_runs(repo: Repository, root: Path, *, other_than: int | None = None) -> list[Nested]:
    """The runs (but ``other_than``) whose data dir lies in ``root``, a dir to be removed. A
    run's own data dir (``runs/<id>-<name>/data``) lies in its own run dir only, so only
    those given with --data-dir are looked at (resolved, in case a link leads in)."""
    rows = repo._exec(
        "SELECT id, name, state, owner_pid, owner_started, data_dir FROM workflows"
    ).fetchall()
    found = []
    for wf_id, name, state, pid, started, data_dir in rows:
        where = Path(data_dir)
        own = where.name == "data" and where.parent.name == f"{wf_id}-{name}"
        if wf_id == other_than or own or not data_dir:
            continue
        kept = beneath(data_dir, root)
        if kept is not None:
            found.append(Nested(int(wf_id), str(state), pid, started, str(data_dir), kept))
    return found


def why_not(state: str, owner_pid: int | None, owner_started: float | None) -> str | None:
    """Why a run may not be deleted now, or None."""
    if state not in FINAL:
        return f"it is {state}; cancel it first (akoflow cancel), then delete it"
    if owner_pid is not None and owner_pid != os.getpid() and owner_alive(owner_pid, owner_started):
        return f"process {owner_pid} is working on it"
    return None


def marked(repo: Repository) -> list[int]:
    """The runs whose deletion began and did not end (killed half way: see gc.rows)."""
    rows = repo._exec("SELECT workflow_id FROM gc_deleting ORDER BY 1").fetchall()
    return [int(r[0]) for r in rows]


def pending(repo: Repository, ids: Iterable[int] | None = None) -> list[Pending]:
    rows = repo._exec(
        "SELECT id, workflow_id, workflow_name, runtime, scope, namespace, nodes, tries, "
        "last_error FROM gc_remote ORDER BY id"
    ).fetchall()
    wanted = None if ids is None else set(ids)
    return [
        Pending(r[0], r[1], r[2], r[3], r[4], r[5], tuple(json.loads(r[6])), r[7], r[8])
        for r in rows
        if wanted is None or r[1] in wanted
    ]


def forgotten(repo: Repository, record: Pending) -> None:
    repo._exec("DELETE FROM gc_remote WHERE id = ?", (record.id,))


def still_left(repo: Repository, record: Pending, error: str) -> None:
    repo._exec(
        "UPDATE gc_remote SET tries = tries + 1, last_error = ? WHERE id = ?", (error, record.id)
    )


def last_sequence(repo: Repository) -> int:
    """The largest workflow id ever given (ids are never reused: AUTOINCREMENT)."""
    row = repo._exec("SELECT seq FROM sqlite_sequence WHERE name = 'workflows'").fetchone()
    return int(row[0]) if row else 0


def existing_ids(repo: Repository) -> set[int]:
    return {int(r[0]) for r in repo._exec("SELECT id FROM workflows").fetchall()}


def live_owners(repo: Repository) -> list[tuple[int, int]]:
    """(workflow id, pid) of the runs a live engine process works on now."""
    rows: list[Any] = repo._exec(
        "SELECT id, owner_pid, owner_started FROM workflows WHERE owner_pid IS NOT NULL"
    ).fetchall()
    return [(int(r[0]), int(r[1])) for r in rows if owner_alive(r[1], r[2])]


__all__ = [
    "Nested",
    "Pending",
    "RunFacts",
    "beneath",
    "existing_ids",
    "facts",
    "forgotten",
    "last_sequence",
    "live_owners",
    "marked",
    "nested_runs",
    "pending",
    "still_left",
    "summaries",
    "why_not",
]
