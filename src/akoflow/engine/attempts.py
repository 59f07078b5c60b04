"""The life of an attempt: its intent, its submission, the running record, the timeout, its
end and the release of what it left on the backend.

Crash safety: an attempt's intent is committed (by the processor's transaction around
:meth:`Attempts.dispatch`) before the runtime is asked to start it, and every backend object
carries the attempt's deterministic key, so a restarted engine finds it again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from akoflow.dataplane import DataPlane
from akoflow.engine.model import (
    RELEASE_TIMEOUT,
    ActivityRun,
    RuntimeSlot,
    WorkflowRun,
)
from akoflow.engine.placing import Placer
from akoflow.engine.runs import job_spec
from akoflow.engine.transitions import Transitions
from akoflow.errors import AkoflowError, SettingError
from akoflow.provenance.declared import checked_outputs, inputs_problem
from akoflow.provenance.recorder import ProvenanceRecorder
from akoflow.runtimes.base import JobSpec, Outcome, Runtime, RuntimeFailure
from akoflow.states import ActivityState, attempt_end, check_activity_transition, ran_over
from akoflow.store import Repository

log = logging.getLogger(__name__)

A = ActivityState
RETRY_BASE_DELAY = 0.25
RETRY_MAX_DELAY = 30.0

Batch = list[tuple[ActivityRun, JobSpec]]
Spawn = Callable[[Coroutine[Any, Any, Any]], None]


class StoppedBeforeSubmit(AkoflowError):
    """An attempt whose run was cancelled before the runtime was asked to start it."""


class Attempts:
    def __init__(
        self,
        repo: Repository,
        slots: Mapping[str, RuntimeSlot],
        transitions: Transitions,
        placer: Placer,
        provenance: ProvenanceRecorder,
        data: DataPlane,
        *,
        spawn: Spawn,
        wake: Callable[[], None],
    ) -> None:
        self.repo = repo
        self._slots = slots
        self._t = transitions
        self._placer = placer
        self._provenance = provenance
        self._data = data
        self._spawn = spawn
        self._wake = wake
        self.jobs: dict[str, ActivityRun] = {}  # key of a live attempt -> its activity
        # RUNNING records wait (see :meth:`record_running`): the intent (SUBMITTED) is
        # already durable, and the runtime's reconciliation finds the job by its key if the
        # engine dies before this is written. (activity, attempt number) pairs.
        self._unrecorded_running: list[tuple[ActivityRun, int]] = []
        self._submitting: set[str] = set()  # keys whose submit call has not returned
        # Attempts that ended while their submit was in flight: released once it returns.
        self._after_submit: dict[str, tuple[WorkflowRun, RuntimeSlot, bool]] = {}
        # Told of each success before its transaction commits (the cache records it).
        self.succeeded: Callable[[ActivityRun], None] = lambda act: None
        # Told of a store write that failed in a timer's callback (no engine loop catches
        # it): True if that stopped the engine (a full disk), else it is raised.
        self.refused: Callable[[BaseException], bool] = lambda exc: False

    def job_spec(self, act: ActivityRun, attempt: int, node: str | None = None) -> JobSpec:
        # Declared data is checked against the remote listings even with provenance off, and
        # what a remote attempt writes is known from them (the data plane brings it back).
        slot = self._slots.get(act.runtime)
        moves = slot is not None and self._data.needs_listing(act, slot.runtime)
        record = self._provenance.enabled or moves or bool(act.spec.outputs or act.spec.inputs)
        return job_spec(act, attempt, node, record_files=record)

    def live(self) -> list[ActivityRun]:
        return [a for a in self.jobs.values() if a.state is A.RUNNING]

    # ------------------------------------------------------------------ intent

    def dispatch(self) -> list[tuple[RuntimeSlot, Batch]]:
        """Take READY activities into free slots and record their intents (call inside a
        transaction); the caller starts them once that transaction is committed."""
        batches: list[tuple[RuntimeSlot, Batch]] = []
        self._t.flush()  # READY rows first: begin_attempt below moves them on
        for name, slot in self._slots.items():
            if slot.failing is not None and slot.queue:
                self._fail_held(slot, slot.failing)
            if not slot.ready or not slot.queue:
                continue
            free = slot.limit + slot.runtime.queue_ahead - slot.running
            batch: Batch = []
            unplaced: list[ActivityRun] = []
            intents: list[tuple[int, int]] = []  # recorded together, before the transaction ends
            while slot.queue and len(batch) < free:
                act = slot.queue.popleft()
                if act.state is not A.READY or act.wf.cancelling:
                    continue
                if act.wf.levels_left is not None and act.level > act.wf.open_level:
                    act.wf.held.append(act)  # first-activity-first: its level is not open yet
                    continue
                missing = None
                if (
                    act.spec.inputs
                    and not slot.runtime.files_stay_remote
                    and not self._data.holds_remote(act.wf.id)  # else: once fetched
                ):
                    missing = inputs_problem(act.spec, act.wf.data_dir)  # remote: at its end
                if missing is not None:
                    self._t.fail(act, missing)
                    continue
                decision = None
                if act.wf.placement is not None:
                    try:
                        decision = self._placer.decide(act, slot)
                    except SettingError as exc:
                        self._t.fail(act, f"runtime {name} is misconfigured: {exc}")
                        continue
                    if decision.node is None:
                        if decision.never_feasible:
                            self._placer.record_unplaceable(act, decision)
                            self._t.fail(act, f"cannot be placed: {decision.never_feasible}")
                        else:
                            unplaced.append(act)  # waits for a node to free up
                        continue
                number = act.attempt + 1
                job = self.job_spec(act, number, node=decision.node if decision else None)
                check_activity_transition(act.name, act.state, A.SUBMITTED)
                intents.append((act.id, number))
                if decision is not None:
                    self._placer.record(act, number, slot, decision)
                self._begin(act, number, job.key)
                slot.running += 1
                batch.append((act, job))
            slot.queue.extendleft(reversed(unplaced))
            if intents:
                self.repo.begin_attempts(intents, runtime=name, handle={})
            if batch:
                batches.append((slot, batch))
        return batches

    def _fail_held(self, slot: RuntimeSlot, reason: str) -> None:
        """The runtime will not become READY by waiting: what waits for it fails now."""
        while slot.queue:
            act = slot.queue.popleft()
            if act.state is A.READY and not act.wf.cancelling:
                self._t.fail(act, reason)

    def _begin(self, act: ActivityRun, number: int, key: str) -> None:
        act.dispatched_at = time.time()
        act.adopted = False
        act.observed = False
        self._provenance.dispatched(act, number)
        self._t.move(act, A.SUBMITTED)
        act.attempt = number
        act.key = key
        act.handle = {}
        act.log_offsets = {}
        act.attempt_started = None
        act.stop_reason = None
        if act.started_at is None:
            act.started_at = time.time()
        self.jobs[key] = act
        self._data.dispatched(act)

    # ------------------------------------------------------------------ submission

    async def submit(self, slot: RuntimeSlot, batch: Batch) -> None:
        """Start the attempts of ``batch`` (their intents are committed)."""
        started: list[ActivityRun] = []
        failed: list[tuple[ActivityRun, Exception]] = []
        results: dict[str, dict[str, Any] | Exception] = {}
        staged: list[JobSpec] = []
        self._submitting.update(job.key for _, job in batch)

        def still_wanted(act: ActivityRun, job: JobSpec) -> bool:
            if act.cancel_requested or act.wf.cancelling:
                # Cancelled while files were copied: it is not started at all.
                results[job.key] = StoppedBeforeSubmit("cancelled before it was submitted")
                return False
            return True

        data, runtime = self._data, slot.runtime

        async def stage(act: ActivityRun, job: JobSpec) -> None:
            try:
                await data.stage_in(act, runtime)
            except Exception as exc:
                results[job.key] = exc
                return
            if still_wanted(act, job):
                staged.append(job)

        try:
            # Data first, the attempts' copies at once (bounded per destination by the data
            # plane); then the runtime, once.
            # Those with nothing to bring go at once, with no task and no turn of the loop (a
            # wide run's first batch waited meanwhile for the cache stage's chunks).
            moving: Batch = []
            for act, job in batch:
                if data.may_stage_in(act, runtime):
                    moving.append((act, job))
                elif still_wanted(act, job):
                    staged.append(job)
            if len(moving) == 1:  # no task to schedule (a chain's every link)
                await stage(*moving[0])
            elif moving:
                await asyncio.gather(*(stage(act, job) for act, job in moving))
            if moving and len(batch) > 1:
                # In the batch's order, not the order the copies ended in: a fan-out's job
                # array lists its elements (its name, their indices) in dispatch order.
                order = {job.key: n for n, (_, job) in enumerate(batch)}
                staged.sort(key=lambda job: order[job.key])
                # Again: a cancel may have come after an attempt's own copies were done, while
                # others' were awaited (a Ctrl-C's handler runs between two turns).
                acts = {job.key: act for act, job in batch}
                staged = [job for job in staged if still_wanted(acts[job.key], job)]
            try:
                answers = await slot.runtime.submit_many(staged) if staged else []
            except Exception as exc:
                answers = [exc] * len(staged)
        except BaseException:  # cancelled: the engine stops
            self._submitting.difference_update(job.key for _, job in batch)
            raise
        results.update(zip((job.key for job in staged), answers, strict=True))
        for act, job in batch:
            self._submitting.discard(job.key)
            result = results[job.key]
            handle: dict[str, Any] = {}
            error: Exception | None = None
            if isinstance(result, Exception):
                error = result
                # An adapter bug fails the attempt, and is logged (a cancel is no error).
                if not isinstance(result, (RuntimeFailure, StoppedBeforeSubmit)):
                    name = slot.runtime.name
                    log.error("runtime %s failed to submit %s", name, job.key, exc_info=result)
            else:
                handle = result
            self._release_deferred(job.key, handle)
            if act.key != job.key:
                continue  # it ended meanwhile (its end event came first): nothing to add
            if error is not None:
                failed.append((act, error))
            else:
                act.handle = handle
                started.append(act)
        now = time.time()
        for act in started:
            if act.state is A.SUBMITTED and act.key is not None:
                self._t.move(act, A.RUNNING)
                if not slot.runtime.in_line(act.key):  # else all three at its start
                    act.attempt_started = now
                    self._unrecorded_running.append((act, act.attempt))
                    if not slot.runtime.starts_when_reported:
                        self.arm_timeout(act)  # else once the job is reported started
                if act.cancel_requested or act.wf.cancelling:
                    self.stop(act, "cancel")
        if failed:
            self._submit_failed(slot, failed)

    def _release_deferred(self, key: str, handle: dict[str, Any]) -> None:
        """An attempt that ended while its submit was in flight is released now that the
        handle naming its backend objects is known (with none, a container was left)."""
        deferred = self._after_submit.pop(key, None)
        if deferred is not None:
            wf, slot, succeeded = deferred
            wf.releasing -= 1
            self.release(wf, slot, key, handle, succeeded=succeeded)

    def _submit_failed(
        self, slot: RuntimeSlot, failed: list[tuple[ActivityRun, Exception]]
    ) -> None:
        touched: set[WorkflowRun] = set()
        with self._t.txn():
            for act, error in failed:
                stopped = isinstance(error, StoppedBeforeSubmit)
                if stopped or getattr(error, "transient", False):
                    # Backend unavailable: the activity waits, the runtime turns NOT_READY.
                    if not stopped:
                        slot.ready, slot.reason = False, str(error)
                    if self._lost(slot, act, str(error)):
                        touched.add(act.wf)
                else:
                    self.finish(act, Outcome(False, None, f"submit failed: {error}"))
                    touched.add(act.wf)
        for wf in touched:
            self._t.maybe_finish(wf)
        self._wake()

    # ------------------------------------------------------------------ running

    def running(self, act: ActivityRun, node: str | None) -> None:
        """The runtime reported the attempt running (on ``node``, when it knows it)."""
        if act.state is A.SUBMITTED:
            self._t.move(act, A.RUNNING)
            act.node = node
            act.attempt_started = time.time()
            self.write_running(act)
            self.arm_timeout(act)
        elif act.state is A.RUNNING and node and act.node != node:
            # A network runtime is RUNNING from its submit's return; the node comes later,
            # when the job really starts: its timeout counts from then, not from its wait in
            # the backend's queue (a job array's own throttle holds elements there).
            first = act.node is None
            act.node = node
            if first and act.attempt_started is not None:
                act.attempt_started = time.time()
                if act.timer is not None:
                    act.timer.cancel()
                    act.timer = None
                self.arm_timeout(act)
            if (act, act.attempt) not in self._unrecorded_running and act.attempt_started:
                self.write_running(act)

    def began_in_line(self, act: ActivityRun, when: float) -> None:
        """The attempt waited in its runtime's own line and started at ``when``: its running
        time, its RUNNING record and its timeout count from then, none of them from its
        submit (one cancelled in line never started: no start is stored, no file of it
        looked for; after a crash, its start is read from its files)."""
        if act.state is A.RUNNING and act.attempt_started is None:
            act.attempt_started = when
            self._unrecorded_running.append((act, act.attempt))
            self.arm_timeout(act)

    def adopted_running(
        self, act: ActivityRun, node: str | None, started_at: float | None, *, began_now: bool
    ) -> None:
        """An attempt found running after a restart is tracked again: its timeout counts from
        its recorded start (or from now, when its command begins only now), and a stop asked
        for before the restart is asked again (the engine may have died before the runtime
        got it)."""
        act.attempt_started = started_at or time.time()
        if act.state is A.SUBMITTED:
            self._t.move(act, A.RUNNING)
            act.node = node
            self.write_running(act)
        elif began_now:  # the stored start is not when it ran
            act.node = node or act.node
            self.write_running(act)
        self.arm_timeout(act)
        if act.stop_reason is not None:
            self._send_stop(act)

    @property
    def running_unrecorded(self) -> bool:
        return bool(self._unrecorded_running)

    def record_running(
        self,
        skip: set[ActivityRun] | frozenset[ActivityRun] = frozenset(),
        *,
        started_before: float | None = None,
    ) -> None:
        """Write the RUNNING records deferred by :meth:`submit` (inside a transaction): those
        of attempts started before ``started_before`` (default: all).

        Attempts in ``skip`` finish in this same transaction: their final record carries the
        handle and start time instead, as it does for those that end before their RUNNING
        record was due (most of a run of short activities: two writes fewer each).
        """
        pending, self._unrecorded_running = self._unrecorded_running, []
        for act, number in pending:
            if act in skip or act.attempt != number or act.state is not A.RUNNING:
                continue
            started = act.attempt_started
            if started is None:
                continue
            if started_before is not None and started >= started_before:
                self._unrecorded_running.append((act, number))
            else:
                self.write_running(act)

    def write_running(self, act: ActivityRun) -> None:
        """Store the live attempt as running: its handle, node and start time."""
        assert act.attempt_started is not None
        self.repo.attempt_running(
            act.id,
            act.attempt,
            handle=act.handle,
            node=act.node,
            started_at=act.attempt_started,
        )

    # ------------------------------------------------------------------ timeouts, cancel

    def arm_timeout(self, act: ActivityRun) -> None:
        timeout = act.spec.timeout_seconds
        if timeout is not None and act.timer is None and not act.timed_out:
            ran = time.time() - act.attempt_started if act.attempt_started else 0.0
            loop = asyncio.get_running_loop()
            delay = max(0.0, timeout - ran)
            act.timer = loop.call_later(delay, self._on_timeout, act, act.attempt)

    def _on_timeout(self, act: ActivityRun, attempt: int) -> None:
        act.timer = None
        if (
            act.attempt == attempt
            and act.state.is_live
            and act.key is not None
            and act.ended_key != act.key  # it ended in time; its end waits for the batch
        ):
            act.timed_out = True
            log.info("activity %s timed out; stopping it", act.name)
            try:
                self.stop(act, "timeout")
            except Exception as exc:
                # A full store stops the engine; the next one arms the timeout again.
                if not self.refused(exc):
                    raise

    def disarm_timeouts(self) -> None:
        """Cancel the live attempts' timers: a stopped engine stops nothing (its process may
        go on, waiting for room, and the engine that continues the run arms them again)."""
        for act in self.jobs.values():
            if act.timer is not None:
                act.timer.cancel()
                act.timer = None

    def stop(self, act: ActivityRun, reason: str) -> None:
        """Ask the runtime to stop the live attempt because of ``reason`` ('timeout' or
        'cancel'), stored first: an attempt that then exits 0 (a TERM trap) is judged as
        stopped also by an engine that collects its end after a restart. Its end comes as
        an event. One whose end already came (waiting for the next batch, or collected from
        an attempt that ended while no engine ran) is not stopped: it ended before it was
        asked to, and that end stands (a success recorded cancelled was run again)."""
        if act.key is not None and act.ended_key == act.key:
            return
        if act.stop_reason is None:
            self.repo.attempt_stop_requested(act.id, act.attempt, reason)
            act.stop_reason = reason
        self._send_stop(act)

    def _send_stop(self, act: ActivityRun) -> None:
        if act.key is not None and act.handle:  # no handle yet: submit() sends it
            runtime = self._slots[act.runtime].runtime
            # Out of the runtime's line in this turn: an end read before the cancel's task
            # runs (Runtime.serve, the event loop) would start it.
            if not runtime.leave_line(act.key):
                self._spawn(runtime.cancel(act.key, act.handle))

    def _lost(self, slot: RuntimeSlot, act: ActivityRun, reason: str) -> bool:
        """The live attempt of ``act`` provably never started: recorded lost (no retry
        spent) and the activity waits at the head of its runtime's queue, unless its run is
        being cancelled (then it is cancelled: True)."""
        self.jobs.pop(act.key or "", None)
        self._placer.unreserve(act, slot)
        slot.running -= 1
        if act.timer is not None:
            act.timer.cancel()
            act.timer = None
        act.attempt_started = None
        self._provenance.finished(act, None)  # it wrote nothing: forgotten
        self._t.attempt_lost(act, act.attempt, reason)
        act.key = None
        if act.cancel_requested or act.wf.cancelling:
            # Cancelled while the submit was in flight: it never started and will not;
            # waiting in line would hold the run open forever.
            self._t.cancel_waiting(act)
            return True
        slot.queue.appendleft(act)
        return False

    # ------------------------------------------------------------------ end

    def never_started(self, act: ActivityRun, reason: str, *, short_of_room: bool) -> None:
        """The runtime says the live attempt provably never started (:attr:`Outcome.never_started`;
        inside a transaction): no retry is spent and the activity waits. When its host was
        short of room, the runtime is NOT_READY until its health check says otherwise."""
        slot = self._slots[act.runtime]
        if short_of_room:
            slot.ready, slot.reason = False, reason
        self._lost(slot, act, reason)

    def finish(self, act: ActivityRun, outcome: Outcome) -> None:
        """Record the end of the live attempt (inside a transaction)."""
        key, handle = act.key, act.handle
        slot = self._slots[act.runtime]
        outcome = checked_outputs(
            act.spec, outcome, act.wf.data_dir, remote=slot.runtime.files_stay_remote
        )
        self._placer.unreserve(act, slot)
        if slot.runtime.files_stay_remote:
            self._data.record_outputs(act, slot.runtime, outcome.files)
        self._provenance.finished(act, outcome.files)
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
            self.jobs.pop(key, None)
        slot.running -= 1
        now = ended_at(act, outcome)
        reason = outcome.reason
        if act.timed_out and ended_in_time(act, outcome):
            act.timed_out = False  # its deadline came while its end was on its way
        elif not act.timed_out and ended_over_time(act, outcome):
            act.timed_out = True  # its deadline came before its end; the timer ran late
        if act.timed_out:
            reason = timed_out_reason(act)
        new, attempt_state = attempt_end(
            # Asked to stop, it did: not a success, whatever its exit code (as runtimes judge),
            # unless the runtime knows the stop came too late (it had ended on its own).
            succeeded=outcome.succeeded
            and (act.stop_reason != "cancel" or outcome.ended_unstopped),
            timed_out=act.timed_out,
            cancelled=act.cancel_requested or act.wf.cancelling,
            attempts_left=act.attempt < act.max_attempts,
        )
        if new is A.CANCELLED:
            reason = "cancelled"
        self._t.move(act, new)
        act.exit_code = outcome.exit_code
        act.reason = reason
        act.timed_out = False
        act.ran_unwatched = None
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
        if key is not None and key in self._submitting:
            act.wf.releasing += 1  # the run ends only once it is released
            self._after_submit[key] = (act.wf, slot, new is A.SUCCEEDED)
        elif key is not None:
            self.release(act.wf, slot, key, handle, succeeded=new is A.SUCCEEDED)
        if new is A.SUCCEEDED:
            self.succeeded(act)
        if new is A.READY:
            delay = min(RETRY_BASE_DELAY * 2 ** (act.attempt - 1), RETRY_MAX_DELAY)
            asyncio.get_running_loop().call_later(delay, self._t.requeue, act)
        else:
            self._t.ended(act, new, now)

    def release(
        self,
        wf: WorkflowRun,
        slot: RuntimeSlot,
        key: str,
        handle: dict[str, Any],
        *,
        succeeded: bool,
    ) -> None:
        """Let the runtime remove an ended attempt's backend objects (a container, a Job).
        The run is recorded finished only once these are done: an engine that dies before
        that leaves the run unfinished, and its resume removes what was left."""
        if type(slot.runtime).release is Runtime.release:
            # Nothing to remove (local, SLURM...): no task per attempt.
            self._t.maybe_finish(wf)
            return
        wf.releasing += 1

        async def release() -> None:
            try:
                async with asyncio.timeout(RELEASE_TIMEOUT):
                    await slot.runtime.release(key, handle, succeeded=succeeded)
            except Exception as exc:
                log.warning("cannot release %s: %s", key, exc or "timed out")
            finally:
                wf.releasing -= 1
                self._t.maybe_finish(wf)

        self._spawn(release())


def ended_at(act: ActivityRun, outcome: Outcome) -> float:
    """When the live attempt of ``act`` ended: the runtime's word for an end collected after
    it happened (a crash or a hold in between), else now; never before its start (a short
    attempt may end before its start is reported) nor after now."""
    now = time.time()
    end = outcome.ended_at
    if end is None or end > now:
        return now
    return max(end, act.attempt_started or end)


def ended_in_time(act: ActivityRun, outcome: Outcome) -> bool:
    """Whether a success the runtime knows no stop reached ended, by the runtime's clock,
    before its deadline: its end had not been read when the deadline stopped it (a success
    recorded timed out was run again). Its time is the runtime's when it took both its start
    and its end (:func:`run_window`: the local spawner starts it after the engine's send, so
    one that ran 0.99 s of its 1 s was recorded timed out; a node's clock may differ)."""
    start, end = run_window(act, outcome)
    return (
        outcome.succeeded
        and outcome.ended_unstopped
        and end is not None
        and start is not None
        and not ran_over(act.spec.timeout_seconds, start, end)
    )


def ended_over_time(act: ActivityRun, outcome: Outcome) -> bool:
    """Whether a success whose start and end its runtime timed on this host (the local
    spawner) ended after its deadline, no timeout having stopped it: the engine's loop ran its
    timer late (busy, or the attempt's start and end read in one batch, its timer armed only
    then). A punctual engine stops it at its deadline, and an end collected after a crash is
    judged timed out; it was recorded succeeded. Not for a cancelled run (a success the
    cancel did not reach stays one)."""
    if (
        not outcome.succeeded
        or outcome.ended_at is None
        or outcome.started_at is None
        or act.attempt_started is None
        or act.cancel_requested
        or act.wf.cancelling
    ):
        return False
    return ran_over(act.spec.timeout_seconds, *run_window(act, outcome))


def run_window(act: ActivityRun, outcome: Outcome) -> tuple[float | None, float | None]:
    """When the live attempt of ``act`` started and ended, both by one clock: the runtime's
    own times when it took both (a remote node's clock may differ from the engine's; the
    local spawner's start is the real one, after the engine's send), else the engine's start
    and the runtime's end (taken by the engine's clock, or unknown)."""
    if outcome.started_at is not None and outcome.ended_at is not None:
        return outcome.started_at, outcome.ended_at
    return act.attempt_started, outcome.ended_at


def timed_out_reason(act: ActivityRun) -> str:
    reason = f"timed out after {act.spec.timeout_seconds:g}s"
    if act.ran_unwatched is not None:  # judged at its collection
        reason += f" (it ran {act.ran_unwatched:.1f}s, ending while no engine watched)"
    return reason


__all__ = ["Attempts"]
