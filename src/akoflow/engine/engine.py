"""The engine: runs the DAGs of stored workflows on their runtimes, event by event.

One asyncio task (the processor) owns every state change: runtimes report job events, the
processor records them in one transaction per batch, releases dependents at once and hands new
work to each runtime's free slots. There is no fixed tick on the critical path; the only timers
are the health check (5 s), log and metric sampling of running jobs, retry back-off and
timeouts.

Crash safety: an attempt's intent is committed before the runtime is asked to start it, and
every backend object carries the attempt's deterministic key. :meth:`Engine.attach` on an
interrupted workflow asks each runtime to reconcile its recorded attempts (adopt, collect, or
prove never started), so no activity runs twice because of the engine.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from akoflow import heap
from akoflow.cache.stage import CacheFailure, CacheStage
from akoflow.dataplane import DataPlane
from akoflow.engine.attempts import Attempts
from akoflow.engine.loops import (
    EngineFailure,
    StoreShortOfRoom,
    cancel_and_wait,
    log_unexpected_end,
    supervise,
)
from akoflow.engine.model import RELEASE_TIMEOUT, ActivityRun, WorkflowRun, taken_apart
from akoflow.engine.observe import Fetched, OutputSampler
from akoflow.engine.ownership import WorkflowBusy, owner_alive, process_start_time
from akoflow.engine.placing import Placer
from akoflow.engine.reconcile import Reconciler
from akoflow.engine.runs import build_run, job_spec
from akoflow.engine.runtime_pool import RuntimeFactory, RuntimePool
from akoflow.engine.transitions import Transitions
from akoflow.heap import HeapGuard
from akoflow.notify import Notifier
from akoflow.provenance.declared import checked_outputs
from akoflow.provenance.recorder import ProvenanceRecorder
from akoflow.runtimes.base import (
    JobSpec,
    Outcome,
    Runtime,
    RuntimeEvents,
    RuntimeFailure,
    RuntimeUnavailable,
)
from akoflow.runtimes.registry import (
    create_runtime,
)
from akoflow.spec import Workflow, load_workflow
from akoflow.states import (
    ActivityState,
    WorkflowState,
    check_workflow_transition,
)
from akoflow.store import Repository, WorkflowRecord
from akoflow.store.room import locked, short_of_room

log = logging.getLogger(__name__)

A = ActivityState
HEALTH_INTERVAL = 5.0
LOG_INTERVAL = 1.0
# An attempt's RUNNING record is written once it has run this long (s), at the latest at the
# next LOG_INTERVAL tick; one that ends first has it in its final record.
RUNNING_RECORD_AFTER = 0.25
METRICS_INTERVAL = 2.0
STOP_GRACE_SECONDS = 10.0
# While every runtime with attempts running has more in its own line (short attempts), the
# processor lets the events of this long gather and records them in one transaction: a
# commit and a wake-up of the spawners per batch instead of per end.
TAKE_APART_CHUNK = 2_000  # activities of a forgotten big run freed per turn of the loop
BATCH_WINDOW = 0.005


class Engine(RuntimeEvents):
    def __init__(
        self,
        repo: Repository,
        state_dir: Path,
        *,
        runtime_factory: RuntimeFactory = create_runtime,
        health_interval: float = HEALTH_INTERVAL,
        log_interval: float = LOG_INTERVAL,
        metrics_interval: float = METRICS_INTERVAL,
    ) -> None:
        self.repo = repo
        self.state_dir = state_dir
        self.health_interval = health_interval
        self._log_interval = log_interval
        self.workflows: dict[int, WorkflowRun] = {}  # attached (see forget)
        self._heap = HeapGuard()
        self._events: list[tuple[str, ActivityRun, Any]] = []
        self.provenance = ProvenanceRecorder(
            repo,
            state_dir,
            enabled=os.environ.get("AKOFLOW_PROVENANCE", "on").lower()
            not in ("0", "off", "false", "no"),
        )
        self._wake = asyncio.Event()
        self.runtimes = RuntimePool(
            repo,
            self,
            runtime_factory,
            health_interval=health_interval,
            start_loop=self._start_loop,
            wake=self._wake.set,
            process_hook=self.job_process,
        )
        self._slots = self.runtimes.slots  # name -> the runtime and its queue of READY work
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._pid = os.getpid()
        self.placer = Placer(repo)
        self.transitions = Transitions(
            repo, self._slots, self.provenance, wake=self._wake.set, owner_pid=self._pid
        )
        self.data = DataPlane(repo, self._runtime_named, self._job_of)
        self.transitions.before_end = self._tell_run_ended
        self.data.fetched = self.provenance.copied_in
        self.attempts = Attempts(
            repo,
            self._slots,
            self.transitions,
            self.placer,
            self.provenance,
            self.data,
            spawn=self.spawn,
            wake=self._wake.set,
        )
        self.attempts.refused = self._refused_for_room
        self._jobs = self.attempts.jobs  # attempt key -> activity
        # Result caching: READY activities pass through its stage (see akoflow.cache).
        self.cache = CacheStage(
            repo,
            self._slots,
            self.transitions,
            self.provenance,
            wake=self._wake.set,
            serve=self._serve_runtimes,
        )
        self.transitions.enqueue = self.cache.enqueue
        self.attempts.succeeded = self.cache.attempt_succeeded
        self.reconciler = Reconciler(self)
        self.output = OutputSampler(
            repo, self._slots, self._jobs, metrics_interval=metrics_interval
        )
        self._pid_started = process_start_time()
        # Webhooks told of runs' ends and activities' failures (akoflow.notify; its own loop).
        self.notifier = Notifier(repo, workflow_of=self._attached_workflow)
        self.failure: EngineFailure | None = None  # set once the engine cannot go on
        self._failure_listeners: list[Callable[[EngineFailure], None]] = []

    # ================================================================ lifecycle

    async def start(self) -> None:
        # A processor iteration that raised left memory and store apart (its transaction was
        # rolled back): nothing it would do next could be trusted, so any error is fatal.
        self._start_loop("processor", self._process_once, fatal=lambda exc: True)
        self._start_loop("observe", self._observe_once)
        self._start_loop(
            "cache",
            self.cache.step,
            fatal=lambda exc: isinstance(exc, EngineFailure | CacheFailure),
        )
        self._start_loop("notify", self.notifier.step)
        # Each runtime's health loop starts with the runtime (see RuntimePool.ensure).

    def _start_loop(
        self,
        name: str,
        step: Callable[[], Awaitable[None]],
        fatal: Callable[[BaseException], bool] = lambda exc: isinstance(exc, EngineFailure),
    ) -> None:
        """Run ``step`` again and again under :func:`supervise` until the engine stops."""
        task = asyncio.create_task(
            supervise(name, step, on_fatal=self._fail_stop, fatal=fatal, explain=self._no_room),
            name=f"akoflow-{name}",
        )
        task.add_done_callback(log_unexpected_end)
        self._tasks.append(task)

    def on_failure(self, listener: Callable[[EngineFailure], None]) -> None:
        """Call ``listener`` once if the engine fails (a server restarts its engine)."""
        self._failure_listeners.append(listener)

    def _fail_stop(self, exc: BaseException) -> None:
        """The engine cannot go on: end every attached run's wait with the reason, give the
        runs back (a later `akoflow resume`, or a restarted engine, continues them from the
        store, which is consistent: a failed transaction was rolled back) and stop working."""
        if self.failure is not None:
            return
        if self._no_room(exc) is not None:
            self.failure = StoreShortOfRoom.stopped_by(exc, self._store_dir)
        elif (held := locked(exc)) is not None:  # no bug: a new engine takes over
            self.failure = EngineFailure(f"the engine stopped: {held}")
        else:
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            self.failure = EngineFailure(f"the engine stopped on an internal error ({detail})")
        self.failure.__cause__ = exc
        self.attempts.disarm_timeouts()
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        for wf in self.workflows.values():
            if wf.done is not None and not wf.done.done():
                wf.done.set_exception(self.failure)
                wf.done.exception()  # retrieved: a caller that no longer waits is no error
            if not wf.state.is_final:
                try:
                    self.repo.release_workflow(wf.id, pid=self._pid)
                except Exception as exc:
                    self._log_store_failure(exc, f"cannot give workflow {wf.id} back in the store")
        for listener in self._failure_listeners:
            try:
                listener(self.failure)
            except Exception:
                log.exception("engine failure listener failed")

    @property
    def _store_dir(self) -> Path:
        return Path(self.repo.path).parent

    def _no_room(self, exc: BaseException) -> str | None:
        """What to say of ``exc`` if it is a write refused for want of room under the state
        dir (else None: another failure, shown with its traceback)."""
        if not short_of_room(exc, self._store_dir):
            return None
        return StoreShortOfRoom.reason(exc, self._store_dir)

    def _log_store_failure(self, exc: BaseException, what: str) -> None:
        no_room = self._no_room(exc) or locked(exc)
        if no_room is None:
            log.error("%s", what, exc_info=exc)
        else:  # expected once the store is full, and the reason was said when it filled
            log.info("%s: %s", what, no_room)

    async def stop(self) -> None:
        """Stop the engine. Running jobs stay running; a later attach adopts them."""
        self.attempts.disarm_timeouts()
        if self.failure is None:  # a bounded wait for the ended runs' notifications
            ended = [wf.id for wf in self.workflows.values() if wf.state.is_final]
            try:
                await self.notifier.drain(ended)
            except Exception:
                log.exception("cannot wait for the runs' notifications")
        await cancel_and_wait(self._tasks)
        try:
            await self.notifier.close()
        except Exception:
            log.exception("cannot stop the notification sender cleanly")
        try:  # the entries of successes not recorded yet (the cache's loop was stopped)
            await self.cache.drain()
        except Exception:
            log.exception("cannot record the last results in the cache")
        # Let in-flight runtime calls (a release that removes a container, a cancel) finish
        # rather than cut them half-way; a backend that hangs gets a bounded wait.
        if self._background:
            await asyncio.wait(set(self._background), timeout=STOP_GRACE_SECONDS)
        await cancel_and_wait(list(self._background))
        for name, slot in self._slots.items():
            if slot.started:
                try:
                    async with asyncio.timeout(STOP_GRACE_SECONDS):
                        await slot.runtime.stop()
                except Exception as exc:  # a backend that hangs must not keep the engine up
                    log.warning("runtime %s did not stop cleanly: %s", name, exc or "timed out")
        for wf in self.workflows.values():
            self.provenance.close(wf)
        try:
            with self.transitions.txn():
                self.attempts.record_running()
                for wf in self.workflows.values():
                    self.repo.release_workflow(wf.id, pid=self._pid)
        except Exception as exc:  # the store failed: what it holds is what a crash leaves
            self._log_store_failure(exc, "cannot record the engine's stop in the store")
        self._heap.release()

    def _attached_workflow(self, wf_id: int) -> Workflow | None:
        wf = self.workflows.get(wf_id)
        return None if wf is None else wf.workflow

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_log_task_error)

    # ================================================================ attach

    async def attach(self, wf_id: int) -> WorkflowRun:
        """Take ownership of a stored workflow and run it (resuming it if it was interrupted)."""
        if self.failure is not None:
            raise self.failure
        rec = self.repo.get_workflow(wf_id)
        if rec is None:
            raise KeyError(f"no workflow with id {wf_id}")
        with heap.paused_for(rec.spec_yaml):  # a big run is frozen before any walk of it
            return await self._attach(wf_id, rec)

    async def _attach(self, wf_id: int, rec: WorkflowRecord) -> WorkflowRun:
        if rec.state.is_final:
            # Finished by another engine since the caller listed it (`retry` reopens a run
            # before attaching it): nothing to own or run, and nothing to wait for.
            wf = await self._build(rec)
            wf.done = asyncio.get_running_loop().create_future()
            wf.done.set_result(rec.state)
            self.workflows[wf_id] = wf
            self._heap.attached(self._activities_attached())
            return wf
        if rec.owner_pid is not None and owner_alive(rec.owner_pid, rec.owner_started):
            if rec.owner_pid != self._pid:
                raise WorkflowBusy(
                    f"workflow {wf_id} ({rec.name}) is being run by process {rec.owner_pid}"
                )
        if not self.repo.claim_workflow(
            wf_id,
            pid=self._pid,
            started=self._pid_started,
            expect_pid=rec.owner_pid,
            expect_started=rec.owner_started,
        ):
            raise WorkflowBusy(f"workflow {wf_id} ({rec.name}) was claimed by another process")
        try:
            wf = await self._build(rec)
            self.workflows[wf_id] = wf
            wf.done = asyncio.get_running_loop().create_future()
            wf.data_dir.mkdir(parents=True, exist_ok=True)
            (wf.run_dir / "attempts").mkdir(parents=True, exist_ok=True)
            # The runtimes of what is left to run, and of every attempt made: a crash between
            # storing an end (a cancel) and releasing its backend objects left them there, and
            # only a started runtime can list and release them (release_leftovers).
            for name in {
                a.runtime for a in wf.activities.values() if not a.state.is_final or a.attempt
            }:
                await self.runtimes.ensure(name)
        except BaseException:
            # Nothing of it ran or was adopted yet: not attached, and not owned (a full disk
            # left it claimed by a live server, neither run nor resumable until a restart,
            # and a half-attached one stalled).
            self.workflows.pop(wf_id, None)
            try:
                self.repo.release_workflow(wf_id, pid=self._pid)
            except Exception as exc:
                what = f"cannot release workflow {wf_id} after its attach failed"
                self._log_store_failure(exc, what)
            raise
        if rec.cancel_requested:
            # Before reconciling: an outcome collected meanwhile (a runtime's adopt may await
            # between attempts) must already count as cancelled, not as a failure.
            wf.cancelling = True
        self.cache.attach(wf)
        await self.reconciler.reconcile(wf, rec)
        await self.reconciler.release_leftovers(wf)
        if rec.cancel_requested:
            self.cancel(wf_id)
        self.transitions.maybe_finish(wf)
        self._wake.set()
        self._heap.attached(self._activities_attached())
        return wf

    def forget(self, wf_id: int) -> None:
        """Drop a run from memory (the store keeps it): a server lets each run go once it
        ended. A big one is taken apart a chunk per turn of the loop (see
        :func:`~akoflow.engine.model.taken_apart`), then given back to the collector."""
        wf = self.workflows.pop(wf_id, None)
        if wf is None:
            return
        if len(wf.activities) < heap.FREEZE_AT:  # the collector frees it in a few ms
            self._heap.attached(self._activities_attached())
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # no loop: at once
            for _ in taken_apart(wf, len(wf.activities)):
                pass
            self._heap.attached(self._activities_attached())
        else:
            self.spawn(self._take_apart(wf))

    async def _take_apart(self, wf: WorkflowRun) -> None:
        try:
            for _ in taken_apart(wf, TAKE_APART_CHUNK):
                await asyncio.sleep(0)
        finally:
            self._heap.attached(self._activities_attached())

    def _activities_attached(self) -> int:
        return sum(len(wf.activities) for wf in self.workflows.values())

    async def _build(self, rec: WorkflowRecord) -> WorkflowRun:
        # In a worker thread: building 100,000 activities held the event loop (in a server,
        # the API and the other runs) for seconds.
        wf = await asyncio.to_thread(build_run, self.repo, self.state_dir, rec)
        if wf.levels_left is not None:
            self.transitions.open_levels(wf)
        return wf

    # ================================================================ runtimes

    async def register_configured_runtimes(self) -> None:
        """Bring up every runtime the environment configures (server mode)."""
        await self.runtimes.register_configured()

    def runtime_status(self) -> dict[str, tuple[bool, str | None]]:
        return self.runtimes.status()

    # ================================================================ events (runtimes call these)

    def job_running(self, key: str, node: str | None) -> None:
        act = self._jobs.get(key)
        if act is not None:
            self._events.append(("running", act, node))
            self._wake.set()

    def job_started(self, key: str) -> None:
        act = self._jobs.get(key)
        if act is not None:
            self._events.append(("started", act, time.time()))
            self._wake.set()

    def job_finished(self, key: str, outcome: Outcome) -> None:
        act = self._jobs.get(key)
        if act is not None:
            act.exited_at = time.time()
            self._finished(act, outcome)

    def _finished(self, act: ActivityRun, outcome: Outcome) -> None:
        act.ended_key = act.key
        slot = self._slots.get(act.runtime)
        if slot is not None and slot.runtime.files_stay_remote:
            # A declared file missing fails the attempt: nothing of it is brought back then.
            outcome = checked_outputs(act.spec, outcome, act.wf.data_dir, remote=True)
        if slot is not None and self.data.wants_collect(act, slot.runtime, outcome):
            self.spawn(self._collect_then_finish(act, outcome))  # its end waits for its files
            return
        self._events.append(("finished", act, outcome))
        self._wake.set()

    async def _collect_then_finish(self, act: ActivityRun, outcome: Outcome) -> None:
        """Bring what a remote attempt wrote back to the host before its end is recorded (an
        engine killed meanwhile collects it again from the adopted attempt): a location out
        of reach is waited for, a copy that fails fails the attempt with the reason."""
        key, delay = act.key, 1.0
        runtime = self._slots[act.runtime].runtime
        while act.key == key and act.state.is_live:
            try:
                await self.data.collect(act, runtime, outcome)
                break
            except RuntimeUnavailable as exc:
                log.warning("collecting the files of %s: %s; trying again", act.name, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
            except RuntimeFailure as exc:
                outcome = _collect_failed(act, outcome, exc)
                break
            except Exception as exc:  # a bug here fails the attempt, never the engine
                log.exception("collecting the files of %s failed", act.name)
                outcome = _collect_failed(act, outcome, exc)
                break
        if act.key == key:
            self._events.append(("finished", act, outcome))
            self._wake.set()

    def _tell_run_ended(self, wf: WorkflowRun) -> bool:
        """Before a run's end is recorded, each runtime with files of its own it used lets
        go of what it kept for the run (a transfer pod); the end waits for that (bounded)."""
        if wf.runtimes_told:
            return False
        wf.runtimes_told = True
        used = {a.runtime: a for a in wf.activities.values() if a.attempt >= 1}
        told = [
            (slot.runtime, act)
            for name, act in used.items()
            if (slot := self._slots.get(name)) is not None and slot.runtime.files_stay_remote
        ]
        if not told:
            return False
        wf.releasing += 1

        async def tell() -> None:
            try:
                for runtime, act in told:
                    try:
                        async with asyncio.timeout(RELEASE_TIMEOUT):
                            await runtime.run_ended(self._job_of(act))
                    except Exception as exc:
                        log.warning("%s: cannot end run %s there: %s", runtime.name, wf.id, exc)
            finally:
                wf.releasing -= 1
                self.transitions.maybe_finish(wf)

        self.spawn(tell())
        return True

    @staticmethod
    def _job_of(act: ActivityRun) -> JobSpec:
        """What names ``act``'s run to a runtime (its data dir, scope, workflow id)."""
        return job_spec(act, max(act.attempt, 1), act.node, record_files=False)

    def _runtime_named(self, name: str) -> Runtime | None:
        slot = self._slots.get(name)
        return slot.runtime if slot is not None else None

    def job_process(self, key: str, pid: int | None, cgroup: str | None) -> bool:
        """An attempt's first process (or cgroup) on this host: its file accesses are
        observed from now on (see :meth:`Runtime.announce_process`); True if they are."""
        act = self._jobs.get(key)
        if act is None:
            return False
        try:
            act.observed = self.provenance.process_started(act, pid=pid, cgroup=cgroup)
        except Exception:  # provenance describes a run, it never stops one (a submit here)
            log.exception("provenance: cannot observe the processes of %s", key)
            act.observed = False
        return act.observed

    def collected(self, act: ActivityRun, outcome: Outcome) -> None:
        """An adopted attempt had already ended: its outcome is processed like an event."""
        self._finished(act, outcome)

    def wake(self) -> None:
        self._wake.set()

    # ================================================================ processor

    async def _process_once(self) -> None:
        """One wake-up of the processor (see :func:`akoflow.engine.loops.supervise`)."""
        await self._wake.wait()
        if self._runtimes_carry_on():
            await asyncio.sleep(BATCH_WINDOW)
        self._wake.clear()
        events, self._events = self._events, []
        if not events and not any((s.ready or s.failing) and s.queue for s in self._slots.values()):
            return
        # Logs first: everything a job wrote is stored before the runtime may delete it.
        logs = [
            (act, await self.output.fetch_logs(act, final=True))
            for kind, act, _ in events
            if kind == "finished"
        ]
        # One commit per wake-up: the outcomes, the dependents they release, and the
        # intents of the attempts about to start (committed before anything starts).
        self.provenance.new_wakeup()
        with self.transitions.txn():
            touched = self._apply_events(events, logs)
            batches = self.attempts.dispatch()
        self._serve_runtimes()  # what ended during the commit
        self.cache.refill()
        for wf in touched:
            self.transitions.maybe_finish(wf)
        self.transitions.finish_unfinished()
        self._heap.ended(len(logs))  # one per attempt that ended
        for slot, batch in batches:
            if slot.runtime.instant_submit:
                await self.attempts.submit(slot, batch)
            elif slot.runtime.submits_batches:  # one request for the batch (job arrays)
                self.spawn(self.attempts.submit(slot, batch))
            else:  # network round trips: in parallel, bounded by the runtime's slots
                for item in batch:
                    self.spawn(self.attempts.submit(slot, [item]))

    def _runtimes_carry_on(self) -> bool:
        """Whether every runtime with attempts running has more waiting in its own line."""
        busy = [slot for slot in self._slots.values() if slot.running]
        return bool(busy) and all(slot.runtime.line_length for slot in busy)

    def _apply_events(
        self,
        events: list[tuple[str, ActivityRun, Any]],
        logs: list[tuple[ActivityRun, Fetched]],
    ) -> set[WorkflowRun]:
        finishing = {act for kind, act, _ in events if kind == "finished"}
        self.attempts.record_running(
            skip=finishing, started_before=time.time() - RUNNING_RECORD_AFTER
        )
        for kind, act, payload in events:
            if kind == "running":
                self.attempts.running(act, payload)
            elif kind == "started":
                self.attempts.began_in_line(act, payload)
        for act, chunks in logs:
            self.output.store_logs(act, chunks)
        touched: set[WorkflowRun] = set()
        for kind, act, payload in events:
            if kind == "finished" and act.state.is_live:
                if payload.never_started:
                    self.attempts.never_started(
                        act, payload.reason or "not started", short_of_room=payload.short_of_room
                    )
                else:
                    self.attempts.finish(act, payload)
                touched.add(act.wf)
                self._serve_runtimes()
        return touched

    def _serve_runtimes(self) -> None:
        """Let runtimes with a line of their own start its next attempts now: recording a
        batch takes milliseconds without a turn of the event loop, and their processes ended
        meanwhile (a wide run of short activities left the CPUs idle a tenth of the time).
        What they report is an event of the next batch."""
        for slot in self._slots.values():
            if slot.running:
                slot.runtime.serve()

    # ================================================================ retry, cancel, wait

    async def retry(self, wf_id: int) -> WorkflowRun:
        """Run a failed or cancelled workflow again from where it stopped."""
        rec = self.repo.get_workflow(wf_id)
        if rec is None:
            raise KeyError(f"no workflow with id {wf_id}")
        if rec.state not in (WorkflowState.FAILED, WorkflowState.CANCELLED):
            raise ValueError(
                f"workflow {wf_id} ({rec.name}) is {rec.state}; only a failed or cancelled "
                "workflow can be retried"
            )
        check_workflow_transition(rec.name, rec.state, WorkflowState.RUNNING)
        spec = load_workflow(rec.spec_yaml, source=rec.source or f"workflow {rec.id}")
        self.repo.reopen_workflow(wf_id, spec)
        self.forget(wf_id)
        return await self.attach(wf_id)

    def apply_cancel_requests(self) -> None:
        """Cancel attached workflows whose cancellation was requested in the store (by
        ``akoflow cancel`` from another process). A stopped engine leaves them to the one
        that continues its runs (it reads them when it attaches)."""
        if self.failure is not None:
            return
        for wf in list(self.workflows.values()):
            rec = self.repo.get_workflow(wf.id)
            if rec is not None and rec.cancel_requested and not wf.cancelling:
                self.cancel(wf.id)

    def cancel(self, wf_id: int, activity: str | None = None) -> None:
        """Cancel a workflow (or one activity): stop what runs, cancel what waits. A store
        that refuses the cancel's writes for want of room stops the engine, as any other
        refused write does (memory and store would part), and the error is raised: the
        request was not recorded."""
        if self.failure is not None:
            # Stopped: only the request is recorded, for the engine that continues the run.
            if activity is None:
                self.repo.request_cancel(wf_id)
            return
        try:
            self._cancel(wf_id, activity)
        except Exception as exc:
            self._refused_for_room(exc)
            raise

    def _refused_for_room(self, exc: BaseException) -> bool:
        """A store write outside the engine's loops (a cancel, a timeout's stop) refused for
        want of room stops the engine, as a loop's does (memory and store would part): True
        then."""
        if self._no_room(exc) is None:
            return False
        self._fail_stop(exc)
        return True

    def _cancel(self, wf_id: int, activity: str | None) -> None:
        wf = self.workflows.get(wf_id)
        if wf is None or wf.state.is_final:
            return
        if activity is None:
            wf.cancelling = True
            self.repo.request_cancel(wf_id)
            targets = list(wf.activities.values())
        else:
            targets = [wf.activities[activity]]
        with self.transitions.txn():
            for act in targets:
                if act.state in (A.PENDING, A.READY) and activity is None:
                    # The whole run: every waiting activity is cancelled (not skipped because
                    # an upstream one was cancelled first).
                    self.transitions.set_state(act, A.CANCELLED, "cancelled")
                elif act.state in (A.PENDING, A.READY):
                    self.transitions.cancel_waiting(act)
                elif act.state.is_live:
                    act.cancel_requested = True
                    self.attempts.stop(act, "cancel")
        self.transitions.maybe_finish(wf)
        self._wake.set()

    def stranded(self, wf_id: int) -> str | None:
        """Why the run cannot go on while this engine waits, or None: every attempt still
        live is on a runtime whose trouble waiting cannot fix (misconfigured: a host key that
        changed, a login refused; or NOT_READY past its READY_TIMEOUT), and nothing is ready
        to run elsewhere. Their outcome cannot be known until that is fixed; they are neither
        stopped nor recorded as ended (``akoflow resume`` follows them once it is)."""
        wf = self.workflows.get(wf_id)
        if wf is None:
            return None
        live = [a for a in wf.activities.values() if a.state.is_live]
        if not live:
            return None
        failing: dict[str, str] = {}
        for act in live:
            slot = self._slots.get(act.runtime)
            if slot is None or slot.failing is None:
                return None
            failing[act.runtime] = slot.failing
        for act in wf.activities.values():
            slot = self._slots.get(act.runtime)
            if act.state is ActivityState.READY and (slot is None or slot.failing is None):
                return None
        return "; ".join(failing[name] for name in sorted(failing))

    async def wait(self, wf_id: int) -> WorkflowState:
        wf = self.workflows[wf_id]
        assert wf.done is not None
        return await asyncio.shield(wf.done)

    # ================================================================ logs, metrics

    async def _observe_once(self) -> None:
        """Incremental logs and metrics of running jobs; off the critical path."""
        await asyncio.sleep(self._log_interval)
        if self.attempts.running_unrecorded:
            with self.transitions.txn():
                self.attempts.record_running()
        live = self.attempts.live()
        if live:
            await self.output.sample(live)


def _log_task_error(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background task failed", exc_info=task.exception())


def _collect_failed(act: ActivityRun, outcome: Outcome, exc: Exception) -> Outcome:
    """A copy back failed: the attempt fails with the reason (one that failed already keeps
    its own reason; the files it was bringing were another attempt's, now complete)."""
    if not outcome.succeeded:
        log.error("%s: collecting files it did not write failed: %s", act.name, exc)
        return outcome
    return dataclasses.replace(
        outcome, succeeded=False, reason=f"collecting its files failed: {exc}"
    )
