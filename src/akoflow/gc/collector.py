"""Deleting finished runs, everywhere they left something: ``akoflow delete``, ``akoflow gc``,
``DELETE /akoflow-api/workflows/{id}/``, ``POST /akoflow-api/gc`` and the server's retention.

A run goes in this order: what it is made of is read (its runtimes, nodes, and its scope,
from its attempt dir); its rows are deleted in batches in a worker thread (:mod:`rows`), the
workflow's row last, in a transaction that also records, per runtime that holds objects of
it, what is left there (``gc_remote``); its run dir (attempt
files, logs, the data dir unless ``--data-dir`` put that elsewhere) is removed; then each
runtime removes its objects (:meth:`Runtime.forget_run`). A runtime out of reach keeps its
record, with the reason, and every later gc tries again: a process killed at any point
leaves nothing that a later gc cannot find (a run dir whose rows are gone is removed too).
A run that is not finished, or that a live engine process works on, is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from akoflow.gc import records, rows, vacuum
from akoflow.gc.disk import freed_bytes, inside, remove_tree
from akoflow.gc.select import chosen
from akoflow.runtimes.base import Outcome, Runtime, RuntimeFailure, RunTrace
from akoflow.runtimes.registry import adapter_for, create_runtime
from akoflow.runtimes.scope import existing_scope
from akoflow.store import Repository

log = logging.getLogger(__name__)

REMOTE_KINDS = ("docker", "k8s", "hpc")  # adapters whose runs leave objects outside the state dir
REMOTE_TIMEOUT = 120.0  # s for one runtime to remove one run's objects
_RUN_DIR = re.compile(r"(\d+)-[a-z0-9.-]+")

RuntimeLease = Callable[[str], AbstractAsyncContextManager[Runtime]]


class _NoEvents:
    """A runtime started only to remove objects reports no job."""

    def job_running(self, key: str, node: str | None) -> None:
        return None

    def job_started(self, key: str) -> None:
        return None

    def job_finished(self, key: str, outcome: Outcome) -> None:
        return None


@contextlib.asynccontextmanager
async def fresh_runtime(name: str) -> AsyncIterator[Runtime]:
    """The runtime ``name`` configured from this process's environment, for one use."""
    runtime = create_runtime(name, _NoEvents())
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


@dataclass(frozen=True, slots=True)
class RemoteOutcome:
    workflow_id: int
    runtime: str
    removed: tuple[str, ...] = ()
    bytes: int | None = None
    left: str | None = None
    """Why the run's objects there are still there (tried again by the next gc)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "workflowId": self.workflow_id,
            "runtime": self.runtime,
            "removed": list(self.removed),
            "bytes": self.bytes,
            "left": self.left,
        }


@dataclass(slots=True)
class DeletedRun:
    id: int
    name: str
    state: str
    freed_bytes: int
    left: list[str] = field(default_factory=list)  # what stays on this host, and why
    remote: list[RemoteOutcome] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "freedBytes": self.freed_bytes,
            "left": self.left,
            "remote": [r.to_json() for r in self.remote],
        }


@dataclass(slots=True)
class Report:
    dry_run: bool
    deleted: list[DeletedRun] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)
    remote: list[RemoteOutcome] = field(default_factory=list)  # earlier deletions', retried
    orphans: list[tuple[str, int]] = field(default_factory=list)  # run dirs without rows
    left: list[str] = field(default_factory=list)  # what the orphan sweep left, and why
    database_bytes: int = 0

    @property
    def freed_bytes(self) -> int:
        return sum(d.freed_bytes for d in self.deleted) + sum(n for _, n in self.orphans)

    @property
    def left_remote(self) -> list[RemoteOutcome]:
        every = [r for d in self.deleted for r in d.remote] + self.remote
        return [r for r in every if r.left is not None]

    def to_json(self) -> dict[str, Any]:
        return {
            "dryRun": self.dry_run,
            "deleted": [d.to_json() for d in self.deleted],
            "refused": [{"id": i, "reason": why} for i, why in self.refused],
            "remote": [r.to_json() for r in self.remote],
            "orphans": [{"path": p, "freedBytes": n} for p, n in self.orphans],
            "left": self.left,
            "freedBytes": self.freed_bytes,
            "databaseBytes": self.database_bytes,
        }


class Collector:
    def __init__(
        self,
        repo: Repository,
        state_dir: Path,
        *,
        runtimes: RuntimeLease = fresh_runtime,
        remote_timeout: float = REMOTE_TIMEOUT,
        forget: Callable[[int], None] = lambda wf_id: None,
    ) -> None:
        self.repo = repo
        self.state_dir = state_dir
        self.runs_dir = state_dir / "runs"
        self.runtimes = runtimes
        self.remote_timeout = remote_timeout
        self.forget = forget  # a server drops a deleted run from its memory

    # ------------------------------------------------------------------ entry points

    async def delete(self, ids: Iterable[int], *, dry_run: bool = False) -> Report:
        """Delete these runs (each refused with the reason when it may not go), then give
        the database's free pages back."""
        report = Report(dry_run)
        for wf_id in dict.fromkeys(ids):
            await self._delete_one(wf_id, report)
        if not dry_run:
            report.database_bytes = await vacuum.give_back(self.repo)
        return report

    async def collect(
        self, *, older_than: float | None, keep_last: int | None, dry_run: bool = False
    ) -> Report:
        """``gc``: delete the finished runs the options choose, remove run dirs a killed
        deletion left, retry what earlier deletions left on backends, give pages back."""
        ids = chosen(
            records.summaries(self.repo),
            now=time.time(),
            older_than=older_than,
            keep_last=keep_last,
        )
        # Deletions killed half way (their rows partly gone) are finished first.
        ids = list(dict.fromkeys([*records.marked(self.repo), *ids]))
        report = Report(dry_run)
        for wf_id in ids:
            await self._delete_one(wf_id, report)
        await self._orphans(report)
        done = {d.id for d in report.deleted}
        for record in records.pending(self.repo):
            if record.workflow_id in done:
                continue
            if dry_run:
                report.remote.append(
                    RemoteOutcome(record.workflow_id, record.runtime, left="(dry run)")
                )
            else:
                report.remote.append(await self._forget(record))
        if not dry_run:
            report.database_bytes = await vacuum.give_back(self.repo)
        return report

    # ------------------------------------------------------------------ one run

    async def _delete_one(self, wf_id: int, report: Report) -> None:
        found = records.facts(self.repo, self.state_dir, wf_id)
        if found is None:
            report.refused.append((wf_id, f"no workflow {wf_id}"))
            return
        refused = records.why_not(found.state.value, found.owner_pid, found.owner_started)
        if refused is not None:
            report.refused.append((wf_id, refused))
            return
        run_dir = found.run_dir
        ours = inside(run_dir, self.runs_dir)
        nested = records.nested_runs(self.repo, run_dir, other_than=wf_id) if ours else []
        if busy := _busy(nested):
            report.refused.append((wf_id, busy))
            return
        done = DeletedRun(found.id, found.name, found.state.value, 0)
        left = self._remote_left(found, done)
        if not inside(found.data_dir, run_dir):
            done.left.append(
                f"data dir {found.data_dir} (given with --data-dir, outside the state dir)"
            )
        keep = [n.kept for n in nested]
        done.left.extend(_kept_note(n) for n in nested)
        done.freed_bytes = await asyncio.to_thread(freed_bytes, run_dir, keep) if ours else 0
        if report.dry_run:
            done.remote = [RemoteOutcome(wf_id, r[0], left="(dry run)") for r in left]
            report.deleted.append(done)
            return
        refused = await asyncio.to_thread(rows.delete_run, self.repo.path, wf_id, left)
        if refused is not None:
            report.refused.append((wf_id, refused))
            return
        self.forget(wf_id)
        if ours:
            await self._remove_run_dir(run_dir, wf_id, keep, done)
        for record in records.pending(self.repo, [wf_id]):
            done.remote.append(await self._forget(record))
        report.deleted.append(done)
        log.info(
            "deleted workflow %s (%s): %d bytes freed here%s",
            wf_id,
            found.name,
            done.freed_bytes,
            "".join(f"; {r.runtime}: {len(r.removed)} removed" for r in done.remote),
        )

    async def _remove_run_dir(
        self, run_dir: Path, wf_id: int, keep: list[Path], done: DeletedRun
    ) -> None:
        """Remove the run dir but the data dirs of other runs in it, looked for again: a run
        started there with --data-dir since the first look stops the removal (the next gc
        removes the dir as an orphan once that run has ended)."""
        nested = records.nested_runs(self.repo, run_dir, other_than=wf_id)
        if busy := _busy(nested):
            done.left.append(f"{run_dir}: {busy}; the next gc removes it")
            done.freed_bytes = 0
            return
        for more in (n for n in nested if n.kept not in keep):
            keep.append(more.kept)
            done.left.append(_kept_note(more))
        problem = await asyncio.to_thread(remove_tree, run_dir, keep)
        if problem is not None:
            done.left.append(f"part of {run_dir}: {problem}")
            done.freed_bytes -= await asyncio.to_thread(freed_bytes, run_dir, keep)

    def _remote_left(
        self, found: records.RunFacts, done: DeletedRun
    ) -> list[tuple[str, str, str, tuple[str, ...]]]:
        """(runtime, scope, namespace, nodes) per runtime that may hold objects of the run."""
        remote = [
            name
            for name in found.runtimes
            if (adapter := adapter_for(name)) is not None and adapter.kind in REMOTE_KINDS
        ]
        if not remote:
            return []
        try:
            scope = existing_scope(found.run_dir / "attempts")
        except RuntimeFailure as exc:  # a damaged scope file: its objects cannot be told
            done.left.append(f"objects on {', '.join(remote)}: {exc}")
            return []
        if scope is None:  # nothing of the run was ever named on a backend
            return []
        return [(name, scope, found.namespace, found.nodes) for name in remote]

    async def _forget(self, record: records.Pending) -> RemoteOutcome:
        run = RunTrace(record.workflow_id, record.scope, record.namespace, record.nodes)
        try:
            async with self.runtimes(record.runtime) as runtime:
                async with asyncio.timeout(self.remote_timeout):
                    done = await runtime.forget_run(run)
        except Exception as exc:  # unreachable, refused, misconfigured: kept for the next gc
            reason = _describe(exc, self.remote_timeout)
            records.still_left(self.repo, record, reason)
            log.warning(
                "workflow %s: its objects on %s are left for the next gc: %s",
                record.workflow_id,
                record.runtime,
                reason,
            )
            return RemoteOutcome(record.workflow_id, record.runtime, left=reason)
        records.forgotten(self.repo, record)
        return RemoteOutcome(record.workflow_id, record.runtime, done.removed, done.bytes)

    async def _orphans(self, report: Report) -> None:
        """Run dirs whose rows are gone (a deletion killed between the two): their id was
        given (ids are never reused) and no run has it now."""
        try:
            names = os.listdir(self.runs_dir)
        except (FileNotFoundError, NotADirectoryError):
            return
        last, present = records.last_sequence(self.repo), records.existing_ids(self.repo)
        for name in sorted(names):
            match = _RUN_DIR.fullmatch(name)
            if match is None or int(match[1]) > last or int(match[1]) in present:
                continue
            path = self.runs_dir / name
            nested = records.nested_runs(self.repo, path)
            if busy := _busy(nested):  # a user's --data-dir named like a run dir
                report.left.append(f"{path} (no run has it): {busy}")
                continue
            keep = [n.kept for n in nested]
            if any(k == Path(os.path.abspath(path)) for k in keep):
                report.left.append(f"{path} (no run has it): {_kept_note(nested[0])}")
                continue
            report.left.extend(f"in {path} (no run has it): {_kept_note(n)}" for n in nested)
            size = await asyncio.to_thread(freed_bytes, path, keep)
            if not report.dry_run:
                await asyncio.to_thread(remove_tree, path, keep)
            report.orphans.append((str(path), size))


def _busy(nested: list[records.Nested]) -> str | None:
    """Why a dir holding these runs' data dirs may not be removed now, or None."""
    return next((why for n in nested if (why := n.busy) is not None), None)


def _kept_note(run: records.Nested) -> str:
    return f"the data dir of run {run.id}, {run.data_dir} (given with --data-dir): kept"


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer in {timeout:g} s"
    return str(exc) or type(exc).__name__


__all__ = ["Collector", "DeletedRun", "RemoteOutcome", "Report", "fresh_runtime"]
