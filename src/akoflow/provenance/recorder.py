"""The engine's provenance recorder: what each attempt used and generated, as it runs.

The engine calls its hooks at the moments that matter: an attempt is dispatched
(:meth:`ProvenanceRecorder.dispatched`) or adopted after a restart
(:meth:`ProvenanceRecorder.adopted`), an attempt ended (:meth:`ProvenanceRecorder.finished`),
a run ended or the engine stops (:meth:`ProvenanceRecorder.close`). The recorder owns the
per-run state (the data dir as last scanned, its inotify watch, the changes not yet
attributed, who generated what) and writes to the store inside the engine's transaction.

Provenance describes a run without steering it: every hook runs in a savepoint, and a failure
is undone and logged with its traceback while the run goes on without that record.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from akoflow.provenance.pending import Nominee, PendingChanges
from akoflow.provenance.remote import Claim, RemoteFiles, attribute
from akoflow.provenance.snapshot import FileState, Snapshot, changes, scan, update
from akoflow.provenance.watch import DirWatch
from akoflow.store import Repository

if TYPE_CHECKING:
    from akoflow.engine.model import ActivityRun, WorkflowRun

log = logging.getLogger(__name__)

FILE_TIME_SLACK = 0.05  # s; file times come from a coarse kernel clock


@dataclass(eq=False)
class RunFiles:
    """Provenance state of one attached run."""

    files: Snapshot | None = None  # the data dir as last scanned
    watch: DirWatch | None = None  # where to look again; None: scan everything
    initial_recorded: set[str] | None = None  # locations whose initial files are stored
    pending: PendingChanges = field(default_factory=PendingChanges)  # changes to attribute
    # (dispatched_at, seq, activity) of attempts that ran: the earliest still running bounds
    # which changes can be decided (entries of attempts no longer running are skipped).
    live_since: list[tuple[float, int, ActivityRun]] = field(default_factory=list)
    generated_by: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, set[str]] = field(default_factory=dict)  # the inverse of generated_by
    # Files on remote runtimes: (location, path) -> who generated its current version.
    remote_generated: dict[tuple[str, str], Claim] | None = None


class ProvenanceRecorder:
    def __init__(self, repo: Repository, state_dir: Path, *, enabled: bool = True) -> None:
        self.repo = repo
        self.enabled = enabled
        self._exclude = state_dir.absolute()  # never the engine's own files
        self._runs: dict[int, RunFiles] = {}
        self._scanned: set[int] = set()  # runs whose data dir was looked at in this wake-up
        self._seq = 0  # tie-breaker of RunFiles.live_since

    # ================================================================ hooks

    def new_wakeup(self) -> None:
        """The engine woke up: data dirs are looked at again (once) when next needed."""
        self._scanned.clear()

    def dispatched(self, act: ActivityRun, number: int) -> None:
        """Attempt ``number`` of ``act`` is about to start (its window opens at
        ``act.dispatched_at``): record what it uses."""
        if not self.enabled:
            return
        self._ran_since(act)
        with self._guard(f"the files used by {act.name}"):
            self._record_used(act, number)

    def adopted(self, act: ActivityRun) -> None:
        """The live attempt of ``act`` was taken over after a restart; its writes since its
        submission, also while no engine watched, are attributed to it when it ends."""
        if self.enabled:
            self._ran_since(act)

    def process_started(
        self, act: ActivityRun, *, pid: int | None = None, cgroup: str | None = None
    ) -> None:
        """The live attempt of ``act`` runs as ``pid`` (and its descendants) or in ``cgroup``
        on this host. Called in the same event-loop turn as the process's start."""
        return None

    def finished(self, act: ActivityRun, files: RemoteFiles | None) -> None:
        """The live attempt of ``act`` ended (before its state moves on)."""
        if not self.enabled or (act.attempt_started is None and not act.adopted):
            return  # an attempt that never started wrote nothing
        with self._guard(f"the files written by {act.name}"):
            if act.dispatched_at:
                self._record_generated(act)
            if files is not None:
                self._record_remote(act, files)

    def close(self, wf: WorkflowRun) -> None:
        """The run ended, or the engine lets it go: stop watching its data dir."""
        run = self._runs.pop(wf.id, None)
        if run is not None and run.watch is not None:
            run.watch.close()
            run.watch = None

    # ================================================================ internals

    @contextlib.contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        try:
            with self.repo.savepoint():
                yield
        except Exception:
            log.exception("cannot record %s; the run goes on without that record", what)

    def _run(self, wf: WorkflowRun) -> RunFiles:
        run = self._runs.get(wf.id)
        if run is None:
            run = self._runs[wf.id] = RunFiles()
        return run

    def _scan_files(self, wf: WorkflowRun) -> Snapshot:
        """The workflow's data dir now (looked at once per wake-up); new changes await
        attribution. After the first full scan, an inotify watch says where to look again."""
        run = self._run(wf)
        if wf.id in self._scanned and run.files is not None:
            return run.files
        exclude = self._exclude
        if run.files is None:
            self._open_watch(wf, run)  # before the scan: a change in between is seen by both
            run.files = scan(wf.data_dir, None, exclude=exclude)
            if not run.generated_by:
                for record in self.repo.list_files(wf.id):
                    if record.role == "generated" and not record.location:
                        self._set_generator(run, record.path, record.activity)
            known = set(run.generated_by)
            if "" in self._initial_recorded(wf, run):  # a resumed run
                known.update(f.path for f in self.repo.list_initial_files(wf.id) if not f.location)
            else:  # what predates the run's start (all of it, unless it is a resumed run)
                since = (wf.started_at or time.time()) + FILE_TIME_SLACK
                initial = {p: f for p, f in run.files.items() if p not in known and f.mtime < since}
                self._record_initial(wf, run, "", initial)
                known.update(initial)
            # A resumed run: what changed while no engine watched awaits attribution (to the
            # attempts adopted now, whose windows start at their submission).
            for path, f in run.files.items():
                if path not in known:
                    run.pending.changed(path, f)
        else:
            dirty = run.watch.dirty() if run.watch is not None else None
            if dirty is not None:
                change = update(run.files, wf.data_dir, dirty.files, dirty.trees, exclude)
            else:  # no watch, or it lost events: look at everything
                current = scan(wf.data_dir, run.files, exclude=exclude)
                change = changes(run.files, current)
                run.files = current
            for path, f in change.created.items():
                run.pending.changed(path, f)
            for path, f in change.modified.items():
                run.pending.changed(path, f)
            for path in change.deleted:
                run.pending.deleted(path)
        self._scanned.add(wf.id)
        return run.files

    def _open_watch(self, wf: WorkflowRun, run: RunFiles) -> None:
        if run.watch is not None:
            run.watch.close()
            run.watch = None
        try:
            run.watch = DirWatch(wf.data_dir, self._exclude)
        except OSError as exc:  # inotify limits: full scans still give the same answers
            log.info("provenance: full scans of %s (no inotify watch: %s)", wf.data_dir, exc)

    @staticmethod
    def _set_generator(run: RunFiles, path: str, activity: str) -> None:
        previous = run.generated_by.get(path)
        if previous is not None:
            run.outputs[previous].discard(path)
        run.generated_by[path] = activity
        run.outputs.setdefault(activity, set()).add(path)

    def _initial_recorded(self, wf: WorkflowRun, run: RunFiles) -> set[str]:
        if run.initial_recorded is None:
            run.initial_recorded = self.repo.initial_locations(wf.id)
        return run.initial_recorded

    def _record_initial(
        self, wf: WorkflowRun, run: RunFiles, location: str, files: Snapshot
    ) -> None:
        """The run's inputs at ``location``: recorded once, used by every activity (PROV
        exports them as one collection rather than as a relation per activity and file)."""
        self.repo.add_initial_files(
            wf.id, ((p, f.size, f.mtime, f.sha256) for p, f in sorted(files.items())), location
        )
        self._initial_recorded(wf, run).add(location)

    def _record_used(self, act: ActivityRun, number: int) -> None:
        """What its dependencies generated (also files a dependency may have written whose
        attribution waits for a running activity); the run's initial files are recorded once
        for all. Looked up by producer, not by a pass over every file of the data dir."""
        wf = act.wf
        files = self._scan_files(wf)
        run = self._run(wf)
        wanted: set[str] = set()
        for dep in {d.name for d in act.deps}:
            wanted |= run.outputs.get(dep, set())
            wanted |= run.pending.nominated(dep)
        used = [
            (path, f.size, f.mtime, f.sha256)
            for path in sorted(wanted)
            if (f := files.get(path)) is not None
        ]
        if used:
            self.repo.add_files(act.id, number, "used", used)

    def _record_generated(self, act: ActivityRun) -> None:
        """Attribute the data-dir changes made while ``act`` ran.

        A change that falls in the run windows of several activities goes to the one that
        ended soonest after it (a writer usually exits right after its last write); it is
        decided once no activity that was running at that moment is still running.
        """
        wf = act.wf
        self._scan_files(wf)
        run = self._run(wf)
        end = act.exited_at or time.time()
        act.exited_at = None
        pending = run.pending
        if not pending:
            return
        nominee = Nominee(end, act.id, act.attempt, act.name)
        window = (act.dispatched_at - FILE_TIME_SLACK, end + FILE_TIME_SLACK)
        for path in list(pending.in_window(*window)):
            pending.nominate(path, nominee)
        since = self._running_since(run, act)
        before = None if since is None else since - FILE_TIME_SLACK
        chosen: dict[tuple[int, int], list[tuple[str, FileState]]] = {}
        for path, state, winner in pending.decide(before, FILE_TIME_SLACK):
            self._set_generator(run, path, winner.activity)
            chosen.setdefault((winner.activity_id, winner.attempt), []).append((path, state))
        for (act_id, attempt), files in chosen.items():
            self.repo.add_files(
                act_id,
                attempt,
                "generated",
                ((p, f.size, f.mtime, f.sha256) for p, f in files),
            )

    def _ran_since(self, act: ActivityRun) -> None:
        """``act`` runs from its dispatched_at on (see :meth:`_running_since`)."""
        self._seq += 1
        heapq.heappush(self._run(act.wf).live_since, (act.dispatched_at, self._seq, act))

    @staticmethod
    def _running_since(run: RunFiles, ending: ActivityRun) -> float | None:
        """When the earliest attempt still running (other than ``ending``) started."""
        heap = run.live_since
        while heap:
            since, _, act = heap[0]
            if act is not ending and act.state.is_live and act.dispatched_at == since:
                return since
            heapq.heappop(heap)  # ended (or this is its end): not again
        return None

    def _record_remote(self, act: ActivityRun, files: RemoteFiles) -> None:
        """Used and generated files of an attempt on a remote runtime, from the job's own
        listings of its working directory (see :func:`akoflow.provenance.remote.attribute`)."""
        wf, loc = act.wf, files.location
        run = self._run(wf)
        claims = run.remote_generated
        if claims is None:
            claims = run.remote_generated = {}
            for record in self.repo.list_files(wf.id):
                if record.location and record.role == "generated":
                    claims[record.location, record.path] = Claim(
                        -math.inf, record.activity_id, record.attempt, record.activity, record.mtime
                    )
        if loc not in self._initial_recorded(wf, run):
            self._record_initial(
                wf, run, loc, {p: f for p, f in files.before.items() if (loc, p) not in claims}
            )
        end = files.after_time if files.after_time is not None else math.inf
        me = Claim(end, act.id, act.attempt, act.name, 0.0)
        found = attribute(files, claims, me, {d.name for d in act.deps})
        for path, claim in found.retracted:
            self.repo.remove_generated(claim.activity_id, claim.attempt, loc, path)
        for path, f in found.generated.items():
            claims[loc, path] = Claim(end, act.id, act.attempt, act.name, f.mtime)
        for role, chosen in (("used", found.used), ("generated", found.generated)):
            if chosen:
                rows = [(p, f.size, f.mtime, f.sha256) for p, f in sorted(chosen.items())]
                self.repo.add_files(act.id, act.attempt, role, rows, location=loc)


__all__ = ["FILE_TIME_SLACK", "ProvenanceRecorder", "RunFiles"]
