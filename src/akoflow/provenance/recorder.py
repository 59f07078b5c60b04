"""The engine's provenance recorder: what each attempt used and generated, as it runs.

The engine calls its hooks at the moments that matter: an attempt is dispatched
(:meth:`ProvenanceRecorder.dispatched`) or adopted after a restart
(:meth:`ProvenanceRecorder.adopted`), its first process exists on this host
(:meth:`ProvenanceRecorder.process_started`), an attempt ended
(:meth:`ProvenanceRecorder.finished`), a run ended or the engine stops
(:meth:`ProvenanceRecorder.close`). The recorder owns the per-run state and writes to the
store inside the engine's transaction.

Each run gets one of two mechanisms, stored with it (``akoflow prov`` states it):

- **observed (fanotify)**: one :class:`~akoflow.provenance.observe.Observer` per engine,
  started on the first run that records provenance, watches the run's data dir; each attempt
  on this host (local, singularity, docker) is registered by its first process or cgroup,
  and its reads and writes decide exactly what it used and generated
  (:mod:`akoflow.provenance.observed`);
- **inferred from timing** where observation cannot run (no CAP_SYS_ADMIN, a network or FUSE
  file system, ``AKOFLOW_OBSERVE=off``): the data dir is scanned (an inotify watch says
  where); timing says who ran when a file changed, never who wrote it, so a change is
  ambiguous between the activities whose run windows hold it, even when only one does (a
  process of no activity may have made it), unless exactly one ran then and declared it as an
  output; used = what the dependencies may have generated (changed while they alone ran).

Either way, a file version that cannot be given to one attempt is recorded as ambiguous with
its candidates, never given to one of them.

Provenance describes a run without steering it: every hook runs in a savepoint, and a failure
is undone and logged with its traceback while the run goes on without that record.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import dataclasses
import heapq
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from akoflow.provenance.declared import declares
from akoflow.provenance.names import to_bytes
from akoflow.provenance.observe import Access, Ambiguous, ObservationUnavailable, Observer
from akoflow.provenance.observed import Decision, Generated, Listings, ObservedRun, Undecided
from akoflow.provenance.pending import Nominee, PendingChanges, by_timing
from akoflow.provenance.snapshot import (
    FileState,
    Snapshot,
    changes,
    content_id,
    scan,
    state_of,
    update,
)
from akoflow.provenance.watch import DirWatch
from akoflow.store import Repository
from akoflow.store.room import locked
from akoflow.upstream import upstream_ids

if TYPE_CHECKING:
    from akoflow.engine.model import ActivityRun, WorkflowRun
    from akoflow.provenance.remote import Claim, RemoteFiles, Writer

# akoflow.provenance.remote is imported by the methods of remote attempts (their listings):
# an engine whose runs stay on this host does without it.

log = logging.getLogger(__name__)

FILE_TIME_SLACK = 0.05  # s; file times come from a coarse kernel clock

OBSERVED = "observed (fanotify)"
WRITES = ("create", "write", "closed", "rename")
OFF = "off"


def timing(reason: str) -> str:
    """The mechanism of a run whose accesses cannot be observed, and why."""
    return f"inferred from timing ({reason})"


def observation_wanted() -> bool:
    """``AKOFLOW_OBSERVE=off`` forces the fallback (timing) on a host that could observe."""
    return os.environ.get("AKOFLOW_OBSERVE", "on").lower() not in ("0", "off", "false", "no")


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
    # (engine time, location, path, size, mtime) of the remote versions recorded while an
    # attempt still running was: what its listings may not show (made while it ran).
    remote_recent: list[tuple[float, str, str, int, float]] = field(default_factory=list)
    # (location, path, size, mtime) -> the claim of each remote version recorded while an
    # attempt still running was (named in remote_recent): a later listing of it adds its
    # writers to it.
    remote_versions: dict[tuple[str, str, int, float], Claim] = field(default_factory=dict)
    # (engine time, location, before, after, writer, declared outputs) of the remote attempts
    # whose end was heard while another still running was: listings (remote clock) another
    # attempt's last one may fall between, their end heard first (pruned as remote_recent).
    remote_ended: list[tuple[float, str, float, float, Writer, tuple[str, ...]]] = field(
        default_factory=list
    )
    mechanism: str = ""
    observed: ObservedRun | None = None  # None: inferred from timing
    # (activity id, attempt) -> the pending changes seen when it started (none are its)
    started_seq: dict[tuple[int, int], int] = field(default_factory=dict)
    # Observed: the versions recorded, (path, content) -> "generated" | "ambiguous"
    recorded: dict[tuple[str, object], str] | None = None


@dataclass(frozen=True, slots=True)
class WritesAtEnd:
    """What an observed attempt's writes mean for reusing its result.

    ``prior``: (path, sha256, mtime) of the versions it changed in place without reading
    them (an append: its result is the old content plus its own); ``unsettled``: the paths
    whose new version was not decided when it ended (another writer ran at the same time):
    what it made there may never be known."""

    prior: list[tuple[str, str | None, float]]
    unsettled: list[str]


class ProvenanceRecorder:
    def __init__(self, repo: Repository, state_dir: Path, *, enabled: bool = True) -> None:
        self.repo = repo
        self.enabled = enabled
        self._exclude = state_dir.absolute()  # never the engine's own files
        self._runs: dict[int, RunFiles] = {}
        self._scanned: set[int] = set()  # runs whose data dir was looked at in this wake-up
        self._seq = 0  # tie-breaker of RunFiles.live_since
        self._observer: Observer | None = None  # one per engine, from the first run on
        self._unobservable: str | None = None  # why no observer can run here (once known)
        self._losses = 0  # the observer's lost-event count last seen
        self._off_recorded: set[int] = set()  # runs stored as "off"
        self._by_dir: dict[bytes, list[ObservedRun]] = {}  # observed runs by real data dir
        self._run_of_key: dict[tuple[int, int], RunFiles] = {}  # attempts being observed
        # Observed, for the result cache (taken by it at the attempt's success).
        self.listings: dict[tuple[int, int], Listings] = {}
        # What an observed attempt's writes leave a reuse of its result depending on (the
        # cache reads these once it succeeded; see WritesAtEnd).
        self.writes_at_end: dict[tuple[int, int], WritesAtEnd] = {}

    # ================================================================ hooks

    def new_wakeup(self) -> None:
        """The engine woke up: data dirs are looked at again (once) when next needed."""
        self._scanned.clear()

    def dispatched(self, act: ActivityRun, number: int) -> None:
        """Attempt ``number`` of ``act`` is about to start (its window opens at
        ``act.dispatched_at``): record what it uses."""
        if not self.enabled:
            self._record_off(act.wf)
            return
        self._ran_since(act)
        with self._guard(f"the files used by {act.name}"):
            run = self._run(act.wf)
            if run.mechanism == OBSERVED:
                self._scan_files(act.wf)  # the run's inputs, once
                assert run.observed is not None
                run.observed.begin((act.id, number))
                self._run_of_key[act.id, number] = run
            else:
                self._record_used(act, number)  # scans: what is pending now is not its
                run.started_seq[act.id, number] = run.pending.seq

    def adopted(self, act: ActivityRun) -> None:
        """The live attempt of ``act`` was taken over after a restart; its writes since its
        submission, also while no engine watched, are attributed to it when it ends."""
        if self.enabled:
            self._ran_since(act)
            with self._guard(f"the files of {act.name}"):
                run = self._run(act.wf)
                if run.mechanism == OBSERVED:
                    self._scan_files(act.wf)
                    assert run.observed is not None
                    run.observed.begin((act.id, act.attempt))
                    self._run_of_key[act.id, act.attempt] = run

    def process_started(
        self, act: ActivityRun, *, pid: int | None = None, cgroup: str | None = None
    ) -> bool:
        """The live attempt of ``act`` runs as ``pid`` (and its descendants) or in ``cgroup``
        on this host. Called in the same event-loop turn as the process's start. True when
        its accesses are observed."""
        key = (act.id, act.attempt)
        if self._observer is None or key not in self._run_of_key:
            return False
        try:
            self._observer.register(key, pid=pid, cgroup=cgroup)
        except (OSError, ObservationUnavailable) as exc:  # its writes turn out unclaimed
            log.warning("provenance: cannot observe %s's processes: %s", act.name, exc)
            return False
        return True

    def finished(self, act: ActivityRun, files: RemoteFiles | None) -> None:
        """The live attempt of ``act`` ended (before its state moves on)."""
        if not self.enabled or (act.attempt_started is None and not act.adopted):
            self._forget_attempt(act)
            return  # an attempt that never started wrote nothing
        with self._guard(f"the files written by {act.name}"):
            if act.dispatched_at:
                self._record_generated(act)
            if files is not None:
                self._record_remote(act, files)

    def copied_in(self, wf: WorkflowRun, path: str, location: str) -> None:
        """The engine (its data plane) just put ``path`` into the run's data dir on this host:
        a copy of the version at ``location``, written by no attempt here. What the file holds
        now is known, not a change to attribute: no generator on the host and no ambiguity
        (the version at ``location`` has its own record)."""
        if not self.enabled:
            return
        run = self._runs.get(wf.id)
        if run is None:
            return  # not looked at yet: its first look takes the file as it is
        with self._guard(f"the copy of {path} from {location}"):
            if run.observed is not None:
                run.observed.copied_in(path)
            if run.files is not None:
                state = state_of(str(wf.data_dir), path, run.files.get(path))
                if state is None:
                    run.files.pop(path, None)
                else:
                    run.files[path] = state
            run.pending.deleted(path)

    def close(self, wf: WorkflowRun) -> None:
        """The run ended, or the engine lets it go: stop watching its data dir."""
        run = self._runs.pop(wf.id, None)
        if run is not None and run.watch is not None:
            run.watch.close()
            run.watch = None
        if run is not None and run.observed is not None:
            observed = run.observed
            try:
                with self.repo.transaction(), self._guard(f"the files of run {wf.id}"):
                    self._drain(everything=not observed.live)
                    if not observed.live:  # the run ended: every change is decided now
                        decided = observed.settle(everything=True)
                        self._store(wf, run, decided + self._rescan(observed, full=True))
            except Exception as exc:  # the store failed: a resumed run looks at the files again
                if locked(exc) is None:
                    log.exception("cannot record the last files of run %s", wf.id)
                else:
                    log.warning("cannot record the last files of run %s: %s", wf.id, locked(exc))
            for keys in observed.attempts:
                self.listings.pop(keys, None)  # type: ignore[call-overload]
                self.writes_at_end.pop(keys, None)  # type: ignore[call-overload]
            for keys in [k for k, r in self._run_of_key.items() if r is run]:
                self._run_of_key.pop(keys, None)
                if self._observer is not None:
                    self._observer.unregister(keys)
            runs = self._by_dir.get(observed.real, [])
            if observed in runs:
                runs.remove(observed)
            if not runs:
                self._by_dir.pop(observed.real, None)
        if not self._runs and self._observer is not None:
            self._observer.close()  # started again by the next run
            self._observer = None
            self._by_dir.clear()
            self._run_of_key.clear()

    # ================================================================ internals

    @contextlib.contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        try:
            with self.repo.savepoint():
                yield
        except Exception:
            log.exception("cannot record %s; the run goes on without that record", what)

    def _record_off(self, wf: WorkflowRun) -> None:
        if wf.id not in self._off_recorded:
            self._off_recorded.add(wf.id)
            with self._guard("the provenance mechanism"):
                self.repo.set_provenance_mechanism(wf.id, OFF)

    def _run(self, wf: WorkflowRun) -> RunFiles:
        run = self._runs.get(wf.id)
        if run is None:
            run = self._runs[wf.id] = RunFiles()
            self._choose_mechanism(wf, run)
        return run

    def _choose_mechanism(self, wf: WorkflowRun, run: RunFiles) -> None:
        """Observed when this host can watch the run's data dir, else timing (stored)."""
        reason = self._watch(wf.data_dir)
        if reason is None:
            run.mechanism = OBSERVED
        else:
            run.mechanism = timing(reason)
            log.info("provenance of run %s: %s", wf.id, run.mechanism)
        self.repo.set_provenance_mechanism(wf.id, run.mechanism)

    def _watch(self, data_dir: Path) -> str | None:
        """Start the observer if needed and watch ``data_dir``; why not, when it cannot."""
        if not observation_wanted():
            return "AKOFLOW_OBSERVE=off"
        if self._unobservable is not None:
            return self._unobservable
        if self._observer is None:
            observer = Observer()
            observer.quiet(self._exclude)  # the engine's own files: never a data dir's
            try:
                observer.start()
            except ObservationUnavailable as exc:
                self._unobservable = str(exc)
                return self._unobservable
            with contextlib.suppress(RuntimeError):  # no loop: taken when needed
                observer.attach(asyncio.get_running_loop())
            self._observer = observer
            self._losses = observer.losses
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            self._observer.watch(data_dir)
        except OSError as exc:  # ObservationUnavailable (no CAP_SYS_ADMIN, FUSE, NFS...)
            reason = exc.strerror or str(exc)
            if exc.errno == 1:  # EPERM: the same for every run of this engine
                self._unobservable = reason
            return reason
        return None

    def _observed_run(
        self, wf: WorkflowRun, run: RunFiles, files: Snapshot, scanned_in: float
    ) -> ObservedRun:
        observed = ObservedRun(wf.data_dir, self._exclude, dict(files), scanned_in)
        observed.drain = lambda: self._read_to_end(observed)
        observed.holders = lambda path, state: self._holders(observed, path, state)
        run.observed = observed
        self._by_dir.setdefault(observed.real, []).append(observed)
        return observed

    def _drain(self, *, everything: bool = False, pumped: bool = False) -> None:
        """Everything the observer has read so far (after reading what the kernel has, unless
        the caller just ``pumped``), to the runs' attempts (with ``everything``, also the
        accesses still waiting for their attempt: unclaimed now)."""
        observer = self._observer
        if observer is None:
            return
        # One read of the kernel's queues per drain (each is a few system calls per group).
        for key, accesses in observer.take_all(pump=not pumped).items():
            run = self._run_of_key.get(key) if isinstance(key, tuple) else None
            if run is not None and run.observed is not None:
                for access in accesses:
                    run.observed.add(access)
                    if access.kind in WRITES:
                        self._foreign_write(run.observed, access)
        if observer.losses != self._losses:
            self._losses = observer.losses
            log.warning("provenance: file events were lost; what ran meanwhile is ambiguous")
            for runs in self._by_dir.values():
                for observed in runs:
                    observed.lost_events()
        for access in observer.take_unclaimed(now=everything, pump=False):
            self._unclaimed(access)

    def _foreign_write(self, mine: ObservedRun, access: Access) -> None:
        """A write by an attempt of ``mine`` into a data dir other runs share: to them, a
        process of none of their attempts."""
        runs = self._by_dir.get(access.data_dir, [])
        if len(runs) > 1:
            for other in runs:
                if other is not mine:
                    other.unclaimed(access, frozenset())

    def _unclaimed(self, access: Access) -> None:
        for observed in self._by_dir.get(access.data_dir, []):
            if isinstance(access.key, Ambiguous):
                mine = frozenset(k for k in access.key.candidates if k in observed.attempts)
                if not mine and len(self._by_dir[access.data_dir]) > 1:
                    continue  # another run's attempts
                observed.unclaimed(access, mine)
            else:  # a process of no attempt: any attempt running may be behind it
                observed.unclaimed(access, frozenset(observed.live))

    def _store(self, wf: WorkflowRun, run: RunFiles, decisions: list[Decision]) -> None:
        generated: dict[tuple[int, int], list[tuple[str, FileState]]] = {}
        sources: dict[tuple[int, int], list[tuple[str, str | None]]] = {}
        recorded = self._recorded(wf, run)
        for decision in decisions:
            version = (decision.path, content_id(decision.state))
            if version in recorded:  # one generator or ambiguous, never both, never two
                log.debug("provenance: %s already recorded", decision.path)
                continue
            if isinstance(decision, Undecided):
                decision = self._declared_writer(wf, decision)
            if isinstance(decision, Generated):
                key = decision.key
                assert isinstance(key, tuple)
                recorded[version] = "generated"
                generated.setdefault(key, []).append((decision.path, decision.state))
                from_ = sources.setdefault(key, [])
                from_ += [(decision.path, s) for s in sorted(decision.sources)] or [
                    (decision.path, None)
                ]
                name = self._name_of(wf, key[0])
                if name is not None:
                    self._set_generator(run, decision.path, name)
            else:
                recorded[version] = "ambiguous"
                f = decision.state
                self.repo.add_ambiguous_file(
                    wf.id,
                    (decision.path, f.size, f.mtime, f.sha256),
                    decision.reason,
                    sorted(k for k in decision.candidates if isinstance(k, tuple)),
                )
        for (act_id, attempt), files in generated.items():
            self.repo.add_files(
                act_id, attempt, "generated", ((p, f.size, f.mtime, f.sha256) for p, f in files)
            )
            self.repo.add_derivations(act_id, attempt, sources[act_id, attempt])

    def _recorded(self, wf: WorkflowRun, run: RunFiles) -> dict[tuple[str, object], str]:
        """The run's versions in the data dir recorded so far (path, content) -> how."""
        if run.recorded is None:
            run.recorded = {}
            for record in self.repo.list_files(wf.id):
                if record.role == "generated" and not record.location:
                    run.recorded[record.path, content_id(record)] = "generated"
            for unsure in self.repo.list_ambiguous_files(wf.id):
                if not unsure.location:
                    run.recorded[unsure.path, content_id(unsure)] = "ambiguous"
        return run.recorded

    def _declared_writer(self, wf: WorkflowRun, decision: Undecided) -> Decision:
        """An undecided version stays undecided: a declaration decides only among candidates
        whose own accesses are known not to include the file, and observation leaves a
        version undecided only when something besides the declarer may have written it
        (another attempt did, a process of no attempt or one that cannot be told apart did,
        or events were lost). Its reason names the candidates that declared it."""
        declaring = sorted(
            {
                act.name
                for key in decision.candidates
                if isinstance(key, tuple)
                and (act := wf.activity(key[0])) is not None
                and act.spec.outputs
                and declares(act.spec.outputs, decision.path)
            }
        )
        if not declaring:
            return decision
        note = f"{decision.reason}; declared as an output by {', '.join(declaring)}"
        return dataclasses.replace(decision, reason=note)

    @staticmethod
    def _name_of(wf: WorkflowRun, act_id: int) -> str | None:
        act = wf.activity(act_id)
        return act.name if act is not None else None

    def _forget_attempt(self, act: ActivityRun) -> None:
        key = (act.id, act.attempt)
        run = self._run_of_key.pop(key, None)
        if run is not None and run.observed is not None:
            run.observed.ended(key)
        if self._observer is not None:
            self._observer.unregister(key)

    def _record_observed(self, act: ActivityRun) -> None:
        """What the attempt read and the versions now decided (see
        :mod:`akoflow.provenance.observed`)."""
        run = self._run(act.wf)
        observed = run.observed
        assert observed is not None
        key = (act.id, act.attempt)
        self._drain()
        self._run_of_key.pop(key, None)
        if self._observer is not None:
            self._observer.unregister(key)
        files, decisions = observed.ended(key)
        decisions += observed.settle()
        # Changes no event explains, and the versions it read as they are on disk now.
        decisions += self._rescan(observed, files.read if files is not None else ())
        if files is not None:
            read, unknown = observed.versions_read(files)
            decisions += unknown  # versions read whose writer is not known: recorded too
            used = [(path, state.size, state.mtime, state.sha256) for path, state in read.items()]
            if used:
                self.repo.add_files(act.id, act.attempt, "used", used)
            for path in files.touched:  # observed: no timing guess for these
                run.pending.deleted(path)
            made: set[str] = set()
            makers: dict[str, set[object]] = {}
            names: dict[str, set[bytes] | None] = {}
            if files.listed:
                # The names there now, then every creation queued before that look read:
                # each name seen is one whose maker is known (or waits to be placed).
                names = observed.names_listed(files)
                observed.drain()
                for waiting in self._observer.waiting() if self._observer else ():
                    if waiting.kind in ("create", "rename") and waiting.data_dir == observed.real:
                        observed.made_by_someone(waiting.path)
                made = observed.made_since_began(files)
                makers = observed.makers(files)
            self.listings[key] = (names, made, observed.outside_links(), makers)
            self._store(act.wf, run, decisions)
            self.writes_at_end[key] = WritesAtEnd(
                prior=[
                    (path, state.sha256, state.mtime)
                    for path, state in sorted(files.before_write.items())
                    if path not in files.read
                ],
                unsettled=sorted(observed.unsettled(files)),
            )
            return
        self._store(act.wf, run, decisions)

    def _rescan(
        self, observed: ObservedRun, paths: Iterable[str] = (), *, full: bool | None = None
    ) -> list[Decision]:
        """What changed on disk with no observed access (:meth:`ObservedRun.rescan`)."""

        return observed.rescan(observed.drain, paths, full=full)

    def _holders(
        self, observed: ObservedRun, path: str, state: FileState
    ) -> frozenset[tuple[int, int] | None] | None:
        """The attempts of this run (None: a process of none of them) whose processes hold
        ``path`` open for writing now (:meth:`Observer.holders`)."""
        observer = self._observer
        if observer is None or not state.ino:
            return None
        found: set[tuple[int, int] | None] = set()
        for owner in observer.holders(observed.real, to_bytes(path), state.dev, state.ino):
            if isinstance(owner, tuple) and owner in observed.attempts:
                found.add(owner)
            elif isinstance(owner, Ambiguous):
                mine = {
                    k for k in owner.candidates if isinstance(k, tuple) and k in observed.attempts
                }
                found |= mine or {None}
            else:
                found.add(None)
        return frozenset(found) or None

    def _read_to_end(self, observed: ObservedRun) -> list[bytes]:
        """Every access queued by the kernel until now, added to its run; the paths written by
        those still waiting for their attempt (see :attr:`ObservedRun.drain`)."""
        observer = self._observer
        if observer is None:
            return []
        for _ in range(64):  # until each queue was emptied once after the look
            if observer.pump():
                break
        self._drain(pumped=True)
        return [
            path
            for access in observer.waiting()
            if access.data_dir == observed.real and access.kind in WRITES
            for path in (access.path, access.old_path)
            if path is not None
        ]

    def _scan_files(self, wf: WorkflowRun) -> Snapshot:
        """The workflow's data dir now (looked at once per wake-up); new changes await
        attribution. After the first full scan, an inotify watch says where to look again.
        An observed run is scanned once (its inputs, and what changed while no engine
        watched): its accesses say the rest."""
        run = self._run(wf)
        if run.files is not None and (wf.id in self._scanned or run.observed is not None):
            return run.files
        exclude = self._exclude
        if run.files is None:
            if run.mechanism != OBSERVED:
                self._open_watch(wf, run)  # before the scan: a change in between is seen by both
            # Observed: a symlink to a file outside is a file whose writes go unseen.
            outside = run.mechanism == OBSERVED
            began = time.monotonic()
            run.files = scan(wf.data_dir, None, exclude=exclude, outside_links=outside)
            scanned_in = time.monotonic() - began
            if not run.generated_by:
                for record in self.repo.list_files(wf.id):
                    if record.role == "generated" and not record.location:
                        self._set_generator(run, record.path, record.activity)
            known = set(run.generated_by)
            if "" in self._initial_recorded(wf, run):  # a resumed run
                known.update(f.path for f in self.repo.list_initial_files(wf.id) if not f.location)
                known.update(f.path for f in self.repo.list_ambiguous_files(wf.id))
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
            if run.mechanism == OBSERVED:
                self._observed_run(wf, run, run.files, scanned_in)
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
        if act.spec.inputs:  # what it declared it reads, wherever it came from
            wanted.update(p for p in files if declares(act.spec.inputs, p))
        used = [
            (path, f.size, f.mtime, f.sha256)
            for path in sorted(wanted)
            if (f := files.get(path)) is not None
        ]
        if used:
            self.repo.add_files(act.id, number, "used", used)

    def _record_generated(self, act: ActivityRun) -> None:
        """Attribute the data-dir changes made while ``act`` ran: observed, or by timing
        (also in an observed run: what changed while no engine watched)."""
        wf = act.wf
        run = self._run(wf)
        if run.observed is not None:
            self._record_observed(act)
        self._record_by_timing(act, run)

    def _record_by_timing(self, act: ActivityRun, run: RunFiles) -> None:
        """A change seen after ``act`` started whose time lies in its run window is a
        candidate of ``act``; it is decided once no activity that was running at that moment
        is still running (:func:`akoflow.provenance.pending.by_timing`): timing says only who
        ran then, so it is ambiguous between them, unless one activity alone ran then and
        declared it as an output.
        """
        wf = act.wf
        self._scan_files(wf)
        end = act.exited_at or time.time()
        act.exited_at = None
        seen_after = run.started_seq.pop((act.id, act.attempt), 0)
        pending = run.pending
        if not pending:
            return
        nominee = Nominee(end, act.id, act.attempt, act.name)
        # A file's time is never later than its write (a coarse clock lags), so the window
        # ends at the end; it starts a clock tick before the start.
        window = (act.dispatched_at - FILE_TIME_SLACK, end)
        for path in list(pending.in_window(*window, seen_after=seen_after)):
            pending.nominate(path, nominee)
        since = self._running_since(run, act)
        before = None if since is None else since - FILE_TIME_SLACK
        chosen: dict[tuple[int, int], list[tuple[str, FileState]]] = {}
        for path, state, nominees in pending.decide(before):
            verdict = by_timing(nominees, self._declaring(wf, path, nominees))
            if len(verdict.candidates) == 1:  # its dependents use it ("used", by timing)
                self._set_generator(run, path, nominees[0].activity)
            if verdict.generator is not None:
                winner = verdict.generator
                chosen.setdefault((winner.activity_id, winner.attempt), []).append((path, state))
            else:
                self.repo.add_ambiguous_file(
                    wf.id,
                    (path, state.size, state.mtime, state.sha256),
                    verdict.reason,
                    verdict.candidates,
                )
        for (act_id, attempt), files in chosen.items():
            self.repo.add_files(
                act_id,
                attempt,
                "generated",
                ((p, f.size, f.mtime, f.sha256) for p, f in files),
            )

    @staticmethod
    def _declaring(wf: WorkflowRun, path: str, nominees: list[Nominee]) -> set[tuple[int, int]]:
        """The nominees for a change that declared ``path`` as an output."""
        return {
            (n.activity_id, n.attempt)
            for n in nominees
            if (act := wf.activities.get(n.activity)) is not None
            and act.spec.outputs
            and declares(act.spec.outputs, path)
        }

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
        listings of its working directory (see :func:`akoflow.provenance.remote.attribute`):
        a version that also changed between the listings of another attempt that ran at the
        same time is ambiguous between them, unless exactly one of them declared it."""
        from akoflow.provenance.remote import Writer, attribute

        wf, loc = act.wf, files.location
        run = self._run(wf)
        claims = run.remote_generated
        if claims is None:
            claims = run.remote_generated = self._remote_claims(wf, run)
        if loc not in self._initial_recorded(wf, run):
            self._record_initial(
                wf, run, loc, {p: f for p, f in files.before.items() if (loc, p) not in claims}
            )
        me = Writer(
            act.id, act.attempt, act.name, ran_from=act.dispatched_at, ran_until=time.time()
        )
        deps = {d.name for d in act.deps}
        recent = run.remote_recent
        since_me = recent[bisect.bisect_right(recent, (act.dispatched_at,)) :]
        listed: dict[str, dict[tuple[str, str, int, float], Claim]] = {}
        for _, where, p, size, mtime in since_me:
            key = (where, p, size, mtime)
            if where == loc and (version := run.remote_versions.get(key)) is not None:
                listed.setdefault(p, {})[key] = version
        listed_versions = {p: list(each.values()) for p, each in listed.items()}
        found = attribute(
            files,
            claims,
            me,
            deps,
            act.spec.outputs,
            partial(upstream_ids, act),
            listed_versions,  # (its paths)
            listed_versions,
            self._straddling(run, loc, files.after_time),
        )
        if found.used:
            rows = [(p, f.size, f.mtime, None) for p, f in sorted(found.used.items())]
            self.repo.add_files(act.id, act.attempt, "used", rows, location=loc)
        done: list[tuple[str, Claim]] = []
        for path, (old, new) in sorted(found.claims.items()):
            claims[loc, path] = new
            self._record_version(wf, run, loc, path, old, new)
            done.append((path, new))
        for path, (old, new) in sorted(found.older.items()):  # beside the path's latest claim
            known = run.remote_versions.get((loc, path, new.size, new.mtime))
            if old is None and known is not None:  # one version, recorded once
                old, new = known, _joined(known, new)
            self._record_version(wf, run, loc, path, old, new)
            done.append((path, new))
        for path, old, new in found.between:
            self._record_version(wf, run, loc, path, old, new)
            done.append((path, new))
        now = me.ran_until
        recent.extend(sorted((now, loc, path, c.size, c.mtime) for path, c in done))
        if files.before_time is not None and files.after_time is not None:
            outputs = tuple(act.spec.outputs)
            run.remote_ended.append((now, loc, files.before_time, files.after_time, me, outputs))
        # What was recorded before every attempt still running began concerns none of them.
        since = self._running_since(run, act)
        ended = run.remote_ended
        gone = bisect.bisect_left(ended, now if since is None else since, key=lambda e: e[0])
        if gone > len(ended) // 2:
            del ended[:gone]
        cut = bisect.bisect_left(recent, (now if since is None else since,))
        if cut > len(recent) // 2:
            del recent[:cut]
            # (and the claims of versions only they named: the latest of each path stays)
            keep = {(where, p, size, mtime) for _, where, p, size, mtime in recent}
            versions = run.remote_versions
            run.remote_versions = {k: c for k, c in versions.items() if k in keep}

    @staticmethod
    def _straddling(
        run: RunFiles, loc: str, last: float | None
    ) -> list[tuple[Writer, tuple[str, ...]]]:
        """The attempts whose end was heard already and whose listings at ``loc`` were taken
        before and after ``last`` (the remote clock of another attempt's last listing)."""
        from akoflow.provenance.remote import CLOCK_SKEW

        if last is None:
            return []
        return [
            (writer, outputs)
            for _, where, before, after, writer, outputs in run.remote_ended
            # (their clocks may differ: one that may have straddled it counts)
            if where == loc and before - CLOCK_SKEW < last < after + CLOCK_SKEW
        ]

    def _record_version(
        self, wf: WorkflowRun, run: RunFiles, loc: str, path: str, old: Claim | None, new: Claim
    ) -> None:
        """Record a remote version as ``new`` says (its generator, or ambiguous between its
        writers) in place of what ``old`` said (``None``: nothing recorded of it)."""
        if old is not None:  # (taken back when another version)
            run.remote_versions.pop((loc, path, old.size, old.mtime), None)
        run.remote_versions[loc, path, new.size, new.mtime] = new
        if new.seen is not None:  # for an engine that resumes the run
            self.repo.set_remote_seen(wf.id, loc, path, (new.size, new.mtime), new.seen, new.final)
        if (
            old is not None
            and (old.size, old.mtime) == (new.size, new.mtime)
            and new.generator is not None
            and old.generator == new.generator
        ):
            return  # still the same attempt's
        if old is not None:  # recorded again with its new writers
            if old.generator is not None:
                writer = old.generator
                self.repo.remove_generated(
                    writer.activity_id, writer.attempt, loc, path, mtime=old.mtime
                )
            else:
                self.repo.remove_ambiguous_file(wf.id, loc, path, old.mtime)
        row = (path, new.size, new.mtime, None)
        if new.generator is not None:
            writer = new.generator
            self.repo.add_files(
                writer.activity_id, writer.attempt, "generated", [row], location=loc
            )
        else:
            candidates = sorted({w.key for w in new.writers})
            self.repo.add_ambiguous_file(wf.id, row, new.reason, candidates, location=loc)

    def _remote_claims(self, wf: WorkflowRun, run: RunFiles) -> dict[tuple[str, str], Claim]:
        """The remote versions recorded so far (a resumed run): who generated each, or its
        candidates, with when the last listing that showed it was taken and who ended with
        it in place (stored beside them). Each version is also one of ``run``'s recorded
        versions (a later listing of it adds its writers to it)."""
        from akoflow.provenance.remote import Claim, Writer, later_version

        claims: dict[tuple[str, str], Claim] = {}
        listings = self.repo.remote_seen(wf.id)

        def writer(act_id: int, attempt: int, name: str, path: str) -> Writer:
            owner = wf.activities.get(name)
            declared = owner is not None and declares(owner.spec.outputs, path)
            return Writer(act_id, attempt, name, declared)

        def keep(
            location: str, path: str, size: int, mtime: float, writers: Iterable[Writer]
        ) -> None:
            seen, final = listings.get((location, path, size, mtime), (None, frozenset()))
            claim = Claim(size, mtime, tuple(writers), seen, final)
            run.remote_versions[location, path, size, mtime] = claim
            # Several versions of one file (rewritten by attempts one after another): the
            # latest is the one a later attempt finds in place (the one a later listing saw).
            known = claims.get((location, path))
            if known is None or later_version(FileState(size, mtime), seen, known):
                claims[location, path] = claim

        for record in self.repo.list_files(wf.id):
            if record.location and record.role == "generated":
                only = writer(record.activity_id, record.attempt, record.activity, record.path)
                keep(record.location, record.path, record.size, record.mtime, (only,))
        for unsure in self.repo.list_ambiguous_files(wf.id):
            if unsure.location:
                writers = (
                    writer(c.activity_id, c.attempt, c.activity, unsure.path)
                    for c in unsure.candidates
                )
                keep(unsure.location, unsure.path, unsure.size, unsure.mtime, writers)
        return claims


def _joined(known: Claim, new: Claim) -> Claim:
    """One version's claim with the writers of both (``new``: another listing of it)."""
    from akoflow.provenance.remote import Claim

    keys = {w.key for w in known.writers}
    writers = (*known.writers, *(w for w in new.writers if w.key not in keys))
    if known.seen is None or new.seen is None:
        seen = known.seen if new.seen is None else new.seen
    else:
        seen = max(known.seen, new.seen)
    return Claim(known.size, known.mtime, writers, seen, known.final | new.final)


__all__ = ["FILE_TIME_SLACK", "ProvenanceRecorder", "RunFiles"]
