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
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from akoflow.engine.loops import EngineFailure, cancel_and_wait, log_unexpected_end, supervise
from akoflow.engine.model import RELEASE_TIMEOUT, ActivityRun, RuntimeSlot, WorkflowRun
from akoflow.engine.observe import Fetched, OutputSampler
from akoflow.engine.ownership import WorkflowBusy, owner_alive, process_start_time
from akoflow.engine.placing import Placer
from akoflow.engine.reconcile import Reconciler
from akoflow.engine.runs import build_run, job_spec
from akoflow.engine.runtime_pool import RuntimeFactory, RuntimePool
from akoflow.placement import Decision
from akoflow.provenance.recorder import ProvenanceRecorder
from akoflow.runtimes.base import (
    JobSpec,
    Outcome,
    RuntimeEvents,
    RuntimeFailure,
)
from akoflow.runtimes.registry import (
    create_runtime,
)
from akoflow.spec import load_workflow
from akoflow.states import (
    ActivityState,
    WorkflowState,
    attempt_end,
    check_activity_transition,
    check_workflow_transition,
    workflow_outcome,
)
from akoflow.store import Repository, WorkflowRecord

log = logging.getLogger(__name__)

A = ActivityState
HEALTH_INTERVAL = 5.0
LOG_INTERVAL = 1.0
METRICS_INTERVAL = 2.0
RETRY_BASE_DELAY = 0.25
RETRY_MAX_DELAY = 30.0
STOP_GRACE_SECONDS = 10.0


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
        self._health_interval = health_interval
        self._log_interval = log_interval
        self.workflows: dict[int, WorkflowRun] = {}
        self._jobs: dict[str, ActivityRun] = {}  # attempt key -> activity
        self._events: list[tuple[str, ActivityRun, Any]] = []
        # RUNNING records wait for the next transaction: one commit fewer per activity. The
        # intent (SUBMITTED) is already durable, and the runtime's reconciliation finds the
        # job by its key if the engine dies before this is written.
        self._unrecorded_running: list[ActivityRun] = []
        self._state_writes: dict[tuple[ActivityState, str | None, float | None], list[int]] = {}
        self._unfinished: set[WorkflowRun] = set()  # failed at placement, to check for the end
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
        )
        self._slots = self.runtimes.slots  # name -> the runtime and its queue of READY work
        self._tasks: list[asyncio.Task[None]] = []
        self.placer = Placer(repo)
        self.reconciler = Reconciler(self)
        self.output = OutputSampler(
            repo, self._slots, self._jobs, metrics_interval=metrics_interval
        )
        self._background: set[asyncio.Task[Any]] = set()
        self._pid = os.getpid()
        self._pid_started = process_start_time()
        self.failure: EngineFailure | None = None  # set once the engine cannot go on
        self._failure_listeners: list[Callable[[EngineFailure], None]] = []

    # ================================================================ lifecycle

    async def start(self) -> None:
        # A processor iteration that raised left memory and store apart (its transaction was
        # rolled back): nothing it would do next could be trusted, so any error is fatal.
        self._start_loop("processor", self._process_once, fatal=lambda exc: True)
        self._start_loop("observe", self._observe_once)
        # Each runtime's health loop starts with the runtime (see RuntimePool.ensure).

    def _start_loop(
        self,
        name: str,
        step: Callable[[], Awaitable[None]],
        fatal: Callable[[BaseException], bool] = lambda exc: isinstance(exc, EngineFailure),
    ) -> None:
        """Run ``step`` again and again under :func:`supervise` until the engine stops."""
        task = asyncio.create_task(
            supervise(name, step, on_fatal=self._fail_stop, fatal=fatal), name=f"akoflow-{name}"
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
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        self.failure = EngineFailure(f"the engine stopped on an internal error ({detail})")
        self.failure.__cause__ = exc
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
                except Exception:
                    log.exception("cannot give workflow %s back in the store", wf.id)
        for listener in self._failure_listeners:
            try:
                listener(self.failure)
            except Exception:
                log.exception("engine failure listener failed")

    async def stop(self) -> None:
        """Stop the engine. Running jobs stay running; a later attach adopts them."""
        await cancel_and_wait(self._tasks)
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
            with self._txn():
                self._record_running()
                for wf in self.workflows.values():
                    self.repo.release_workflow(wf.id, pid=self._pid)
        except Exception:  # the store failed: what it holds is what a crash leaves
            log.exception("cannot record the engine's stop in the store")

    def _spawn(self, coro: Any) -> None:
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
        if rec.state.is_final:
            # Finished by another engine since the caller listed it (`retry` reopens a run
            # before attaching it): nothing to own or run, and nothing to wait for.
            wf = self._build(rec)
            wf.done = asyncio.get_running_loop().create_future()
            wf.done.set_result(rec.state)
            self.workflows[wf_id] = wf
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
        wf = self._build(rec)
        self.workflows[wf_id] = wf
        loop = asyncio.get_running_loop()
        wf.done = loop.create_future()
        wf.data_dir.mkdir(parents=True, exist_ok=True)
        (wf.run_dir / "attempts").mkdir(parents=True, exist_ok=True)
        for name in {a.runtime for a in wf.activities.values() if not a.state.is_final}:
            await self.runtimes.ensure(name)
        if rec.cancel_requested:
            # Before reconciling: an outcome collected meanwhile (a runtime's adopt may await
            # between attempts) must already count as cancelled, not as a failure.
            wf.cancelling = True
        await self.reconciler.reconcile(wf, rec)
        await self.reconciler.release_leftovers(wf)
        if rec.cancel_requested:
            self.cancel(wf_id)
        self._maybe_finish(wf)
        self._wake.set()
        return wf

    def _build(self, rec: WorkflowRecord) -> WorkflowRun:
        wf = build_run(self.repo, self.state_dir, rec)
        if wf.levels_left is not None:
            self._open_levels(wf)
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

    def job_finished(self, key: str, outcome: Outcome) -> None:
        act = self._jobs.get(key)
        if act is not None:
            act.exited_at = time.time()
            self._events.append(("finished", act, outcome))
            self._wake.set()

    # ================================================================ processor

    async def _process_once(self) -> None:
        """One wake-up of the processor (see :func:`akoflow.engine.loops.supervise`)."""
        await self._wake.wait()
        self._wake.clear()
        events, self._events = self._events, []
        if not events and not any(s.ready and s.queue for s in self._slots.values()):
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
        with self._txn():
            touched = self._apply_events(events, logs)
            batches = self._dispatch()
        touched |= self._unfinished
        self._unfinished = set()
        for wf in touched:
            self._maybe_finish(wf)
        for slot, batch in batches:
            if slot.runtime.instant_submit:
                await self._submit_batch(slot, batch)
            else:  # network round trips: in parallel, bounded by the runtime's slots
                for item in batch:
                    self._spawn(self._submit_batch(slot, [item]))

    def _apply_events(
        self,
        events: list[tuple[str, ActivityRun, Any]],
        logs: list[tuple[ActivityRun, Fetched]],
    ) -> set[WorkflowRun]:
        finishing = {act for kind, act, _ in events if kind == "finished"}
        self._record_running(skip=finishing)
        touched: set[WorkflowRun] = set()
        for kind, act, payload in events:
            if kind == "running" and act.state is A.SUBMITTED:
                self._move(act, A.RUNNING)
                act.node = payload
                act.attempt_started = time.time()
                self._write_running(act)
                self._arm_timeout(act)
            elif kind == "running" and act.state is A.RUNNING and payload and act.node != payload:
                # A network runtime is RUNNING from its submit's return; the node comes later.
                act.node = payload
                if act not in self._unrecorded_running and act.attempt_started is not None:
                    self._write_running(act)
        for act, chunks in logs:
            self.output.store_logs(act, chunks)
        for kind, act, payload in events:
            if kind == "finished" and act.state.is_live:
                self._finish_attempt(act, payload)
                touched.add(act.wf)
        return touched

    def _record_running(
        self, skip: set[ActivityRun] | frozenset[ActivityRun] = frozenset()
    ) -> None:
        """Write the RUNNING records deferred by :meth:`_submit_batch` (inside a transaction).

        Attempts in ``skip`` finish in this same transaction: their final record carries the
        handle and start time instead.
        """
        pending, self._unrecorded_running = self._unrecorded_running, []
        for act in pending:
            if act in skip:
                continue
            if act.attempt_started is not None and act.state.is_live:
                self._write_running(act)

    def _write_running(self, act: ActivityRun) -> None:
        """Store the live attempt as running: its handle, node and start time."""
        assert act.attempt_started is not None
        self.repo.attempt_running(
            act.id,
            act.attempt,
            handle=act.handle,
            node=act.node,
            started_at=act.attempt_started,
        )

    def _finish_attempt(self, act: ActivityRun, outcome: Outcome) -> None:
        key, handle = act.key, act.handle
        self.placer.unreserve(act, self._slots[act.runtime])
        self.provenance.finished(act, outcome.files)
        # The durations AkôScore learns from: not those an engine restart cut into.
        if (
            outcome.succeeded
            and act.wf.placement is not None
            and act.attempt_started
            and not act.adopted
        ):
            act.wf.history.setdefault(act.name, []).append(
                (act.node, time.time() - act.attempt_started)
            )
        if act.timer is not None:
            act.timer.cancel()
            act.timer = None
        if key is not None:
            self._jobs.pop(key, None)
        self._slots[act.runtime].running -= 1
        now = time.time()
        reason = outcome.reason
        if act.timed_out:
            reason = f"timed out after {act.spec.timeout_seconds:g}s"
        new, attempt_state = attempt_end(
            succeeded=outcome.succeeded,
            timed_out=act.timed_out,
            cancelled=act.cancel_requested or act.wf.cancelling,
            attempts_left=act.attempt < act.max_attempts,
        )
        if new is A.CANCELLED:
            reason = "cancelled"
        self._move(act, new)
        act.exit_code = outcome.exit_code
        act.reason = reason
        act.timed_out = False
        act.key = None
        self.repo.attempt_finished(
            act.id,
            act.attempt,
            handle=handle,
            node=act.node,
            started_at=act.attempt_started,
            attempt_state=attempt_state,
            activity_state=new,
            exit_code=outcome.exit_code,
            reason=reason,
            finished_at=now,
            cpu_seconds=outcome.cpu_seconds,
            max_rss_bytes=outcome.max_rss_bytes,
        )
        if key is not None:
            self._release(act.wf, self._slots[act.runtime], key, handle, new is A.SUCCEEDED)
        if new is A.READY:
            delay = min(RETRY_BASE_DELAY * 2 ** (act.attempt - 1), RETRY_MAX_DELAY)
            asyncio.get_running_loop().call_later(delay, self._requeue, act)
            return
        act.finished_at = now
        act.wf.remaining -= 1
        self._level_done(act)
        if new is A.SUCCEEDED:
            for child in act.dependents:
                child.deps_left -= 1
                if child.deps_left == 0 and child.state is A.PENDING and not act.wf.cancelling:
                    self._set_state(child, A.READY)
                    self._slots[child.runtime].queue.append(child)
        else:
            for child in act.dependents:
                self._skip_downstream(child)

    def _requeue(self, act: ActivityRun) -> None:
        if act.state is A.READY and not act.wf.cancelling:
            self._slots[act.runtime].queue.append(act)
            self._wake.set()

    @staticmethod
    def _move(act: ActivityRun, new: ActivityState) -> None:
        """Every in-memory state change of an activity: allowed by the one transition table
        (:mod:`akoflow.states`), or a loud error instead of a silently corrupted run."""
        check_activity_transition(act.name, act.state, new)
        act.state = new

    def _attempt_lost(self, act: ActivityRun, number: int, reason: str) -> None:
        """Attempt ``number`` provably never started: recorded lost, the activity is READY
        again, and the attempt does not count against its retries."""
        self.repo.attempt_lost(act.id, number, reason=reason)
        self._move(act, A.READY)
        act.max_attempts += 1

    def _set_state(self, act: ActivityRun, new: ActivityState, reason: str | None = None) -> None:
        self._move(act, new)
        now = time.time()
        final = new.is_final
        if final:
            act.finished_at = now
            act.wf.remaining -= 1
            if reason:
                act.reason = reason
            self._level_done(act)
        # Buffered: a failure can skip 100,000 dependents, an attach can ready as many roots;
        # they are written by one statement per kind when the transaction ends (see _txn).
        self._state_writes.setdefault((new, reason, now if final else None), []).append(act.id)

    def _flush_states(self) -> None:
        """Write the buffered activity states (before any other write that could follow them
        for the same activity, and at the end of every transaction)."""
        writes, self._state_writes = self._state_writes, {}
        for (state, reason, finished_at), ids in writes.items():
            self.repo.set_activity_states(
                ((i, state) for i in ids), reason=reason, finished_at=finished_at
            )

    @contextlib.contextmanager
    def _txn(self) -> Iterator[None]:
        """A repository transaction that also writes the buffered activity states."""
        with self.repo.transaction():
            yield
            self._flush_states()

    def _skip_downstream(self, start: ActivityRun) -> None:
        """Mark ``start`` and everything depending on it SKIPPED (iteratively: DAGs are deep)."""
        stack = [start]
        while stack:
            act = stack.pop()
            if act.state not in (A.PENDING, A.READY):
                continue
            failed = next(
                (d.name for d in act.deps if d.state is not A.SUCCEEDED and d.state.is_final), None
            )
            self._set_state(
                act,
                A.SKIPPED,
                f"dependency {failed} did not succeed"
                if failed
                else "a dependency did not succeed",
            )
            stack.extend(act.dependents)

    def _release(
        self,
        wf: WorkflowRun,
        slot: RuntimeSlot,
        key: str,
        handle: dict[str, Any],
        succeeded: bool,
    ) -> None:
        """Let the runtime remove an ended attempt's backend objects (a container, a Job).
        The run is recorded finished only once these are done: an engine that dies before
        that leaves the run unfinished, and its resume removes what was left."""
        wf.releasing += 1

        async def release() -> None:
            try:
                async with asyncio.timeout(RELEASE_TIMEOUT):
                    await slot.runtime.release(key, handle, succeeded=succeeded)
            except Exception as exc:
                log.warning("cannot release %s: %s", key, exc or "timed out")
            finally:
                wf.releasing -= 1
                self._maybe_finish(wf)

        self._spawn(release())

    def _maybe_finish(self, wf: WorkflowRun) -> None:
        if wf.remaining > 0 or wf.state.is_final or wf.releasing:
            return
        outcome = workflow_outcome([a.state for a in wf.activities.values()])
        if wf.cancelling and outcome is not WorkflowState.FAILED:
            outcome = WorkflowState.CANCELLED
        now = time.time()
        check_workflow_transition(wf.name, wf.state, outcome)
        wf.state = outcome
        wf.finished_at = now
        self.provenance.close(wf)
        self.repo.set_workflow_state(wf.id, outcome, finished_at=now)
        self.repo.release_workflow(wf.id, pid=self._pid)
        if wf.done is not None and not wf.done.done():
            wf.done.set_result(outcome)

    # ================================================================ dispatch

    def _dispatch(self) -> list[tuple[RuntimeSlot, list[tuple[ActivityRun, JobSpec]]]]:
        """Take READY activities into free slots and record their intents (call inside a
        transaction); the caller starts them once that transaction is committed."""
        batches: list[tuple[RuntimeSlot, list[tuple[ActivityRun, JobSpec]]]] = []
        self._flush_states()  # READY rows first: begin_attempt below moves them on
        for name, slot in self._slots.items():
            if not slot.ready or not slot.queue:
                continue
            free = slot.limit - slot.running
            batch: list[tuple[ActivityRun, JobSpec]] = []
            unplaced: list[ActivityRun] = []
            while slot.queue and len(batch) < free:
                act = slot.queue.popleft()
                if act.state is not A.READY or act.wf.cancelling:
                    continue
                if act.wf.levels_left is not None and act.level > act.wf.open_level:
                    act.wf.held.append(act)  # first-activity-first: its level is not open yet
                    continue
                decision = None
                if act.wf.placement is not None:
                    decision = self.placer.decide(act, slot)
                    if decision.node is None:
                        if decision.never_feasible:
                            self._unplaceable(act, decision)
                        else:
                            unplaced.append(act)  # waits for a node to free up
                        continue
                number = act.attempt + 1
                job = self._job_spec(act, number, node=decision.node if decision else None)
                check_activity_transition(act.name, act.state, A.SUBMITTED)
                self.repo.begin_attempt(act.id, number, runtime=name, handle={})
                if decision is not None:
                    self.placer.record(act, number, slot, decision)
                act.dispatched_at = time.time()
                act.adopted = False
                self.provenance.dispatched(act, number)
                self._move(act, A.SUBMITTED)
                act.attempt = number
                act.key = job.key
                act.handle = {}
                act.log_offsets = {}
                act.attempt_started = None
                if act.started_at is None:
                    act.started_at = time.time()
                self._jobs[job.key] = act
                slot.running += 1
                batch.append((act, job))
            slot.queue.extendleft(reversed(unplaced))
            if batch:
                batches.append((slot, batch))
        return batches

    # ================================================================ placement

    def _unplaceable(self, act: ActivityRun, decision: Decision) -> None:
        """No node of the runtime could ever hold the activity: fail it now, do not wait."""
        reason = f"cannot be placed: {decision.never_feasible}"
        self.repo.add_placement(
            act.id,
            act.attempt + 1,
            runtime=act.runtime,
            policy=decision.policy,
            node=None,
            alpha=decision.alpha,
            candidates=[
                {"node": c.node, "feasible": False, "reason": c.reason} for c in decision.candidates
            ],
        )
        self._set_state(act, A.FAILED, reason)
        for child in act.dependents:
            self._skip_downstream(child)
        self._unfinished.add(act.wf)

    # ================================================================ execution strategy

    def _level_done(self, act: ActivityRun) -> None:
        wf = act.wf
        if wf.levels_left is None:
            return
        wf.levels_left[act.level] -= 1
        self._open_levels(wf)

    def _open_levels(self, wf: WorkflowRun) -> None:
        """First-activity-first: open the next DAG level once every activity of the current
        one is final, and put its held READY activities in line."""
        assert wf.levels_left is not None
        last = len(wf.levels_left) - 1
        while wf.open_level < last and wf.levels_left[wf.open_level] == 0:
            wf.open_level += 1
        if wf.held:
            held, wf.held = wf.held, []
            for act in held:
                if act.level <= wf.open_level:
                    self._requeue(act)
                else:
                    wf.held.append(act)

    async def _submit_batch(
        self, slot: RuntimeSlot, batch: list[tuple[ActivityRun, JobSpec]]
    ) -> None:
        started: list[ActivityRun] = []
        failed: list[tuple[ActivityRun, Exception]] = []
        for act, job in batch:
            try:
                act.handle = await slot.runtime.submit(job)
            except RuntimeFailure as exc:
                failed.append((act, exc))
                continue
            except Exception as exc:  # an adapter bug fails the attempt, not the engine
                log.exception("runtime %s failed to submit %s", slot.runtime.name, job.key)
                failed.append((act, exc))
                continue
            started.append(act)
        now = time.time()
        for act in started:
            if act.state is A.SUBMITTED and act.key is not None:
                self._move(act, A.RUNNING)
                act.attempt_started = now
                self._unrecorded_running.append(act)
                self._arm_timeout(act)
                if act.cancel_requested or act.wf.cancelling:
                    self._spawn(slot.runtime.cancel(act.key, act.handle))
        if not failed:
            return
        touched: set[WorkflowRun] = set()
        with self._txn():
            for act, error in failed:
                if getattr(error, "transient", False):
                    # Backend unavailable: the activity waits, the runtime turns NOT_READY.
                    slot.ready, slot.reason = False, str(error)
                    self._jobs.pop(act.key or "", None)
                    self.placer.unreserve(act, self._slots[act.runtime])
                    slot.running -= 1
                    self._attempt_lost(act, act.attempt, str(error))
                    act.key = None
                    slot.queue.appendleft(act)
                else:
                    self._finish_attempt(act, Outcome(False, None, f"submit failed: {error}"))
                    touched.add(act.wf)
        for wf in touched:
            self._maybe_finish(wf)
        self._wake.set()

    def _job_spec(self, act: ActivityRun, attempt: int, node: str | None = None) -> JobSpec:
        return job_spec(act, attempt, node, record_files=self.provenance.enabled)

    # ================================================================ timeouts, cancel

    def _arm_timeout(self, act: ActivityRun) -> None:
        timeout = act.spec.timeout_seconds
        if timeout is not None and act.timer is None:
            loop = asyncio.get_running_loop()
            act.timer = loop.call_later(timeout, self._on_timeout, act, act.attempt)

    def _on_timeout(self, act: ActivityRun, attempt: int) -> None:
        act.timer = None
        if act.attempt == attempt and act.state.is_live and act.key is not None:
            act.timed_out = True
            log.info("activity %s timed out; stopping it", act.name)
            self._spawn(self._slots[act.runtime].runtime.cancel(act.key, act.handle))

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
        self.workflows.pop(wf_id, None)
        return await self.attach(wf_id)

    def apply_cancel_requests(self) -> None:
        """Cancel attached workflows whose cancellation was requested in the store (by
        ``akoflow cancel`` from another process)."""
        for wf in list(self.workflows.values()):
            rec = self.repo.get_workflow(wf.id)
            if rec is not None and rec.cancel_requested and not wf.cancelling:
                self.cancel(wf.id)

    def cancel(self, wf_id: int, activity: str | None = None) -> None:
        """Cancel a workflow (or one activity): stop what runs, cancel what waits."""
        wf = self.workflows.get(wf_id)
        if wf is None or wf.state.is_final:
            return
        if activity is None:
            wf.cancelling = True
            self.repo.request_cancel(wf_id)
            targets = list(wf.activities.values())
        else:
            targets = [wf.activities[activity]]
        with self._txn():
            for act in targets:
                if act.state in (A.PENDING, A.READY):
                    self._set_state(act, A.CANCELLED, "cancelled")
                    for child in act.dependents:
                        self._skip_downstream(child)
                elif act.state.is_live:
                    act.cancel_requested = True
                    if act.key is not None and act.handle:
                        slot = self._slots[act.runtime]
                        self._spawn(slot.runtime.cancel(act.key, act.handle))
        self._maybe_finish(wf)
        self._wake.set()

    async def wait(self, wf_id: int) -> WorkflowState:
        wf = self.workflows[wf_id]
        assert wf.done is not None
        return await asyncio.shield(wf.done)

    # ================================================================ logs, metrics

    def _live(self) -> list[ActivityRun]:
        return [a for a in self._jobs.values() if a.state is A.RUNNING]

    async def _observe_once(self) -> None:
        """Incremental logs and metrics of running jobs; off the critical path."""
        await asyncio.sleep(self._log_interval)
        if self._unrecorded_running:
            with self._txn():
                self._record_running()
        live = self._live()
        if live:
            await self.output.sample(live)


def _log_task_error(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background task failed", exc_info=task.exception())
