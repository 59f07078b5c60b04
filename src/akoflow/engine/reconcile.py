"""Bringing stored runs back under control: attach-time reconciliation of interrupted
attempts (adopt a live one, collect one that ended, prove one never started) and the release
of what a crash left on a backend."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from akoflow.engine.model import RELEASE_TIMEOUT, ActivityRun, WorkflowRun, attempt_key
from akoflow.runtimes.base import Adopted, RuntimeFailure
from akoflow.states import ActivityState, WorkflowState, ran_over
from akoflow.store import AttemptRecord, WorkflowRecord

if TYPE_CHECKING:
    from akoflow.engine.engine import Engine

log = logging.getLogger(__name__)

READY_CHUNK = 2_000  # activities put in line per turn of the event loop at an attach


async def _give_way() -> None:
    await asyncio.sleep(0)


A = ActivityState


class Reconciler:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def reconcile(self, wf: WorkflowRun, rec: WorkflowRecord) -> None:
        """Bring a stored workflow's activities back under control after any interruption."""
        engine = self.engine
        transitions = engine.transitions
        if wf.state is WorkflowState.PENDING:
            transitions.start_workflow(wf)
        elif wf.state.is_final:
            # `retry` moves a finished workflow back to RUNNING before attaching.
            return
        live = {att.activity_id: att for att in engine.repo.live_attempts(wf.id)}
        for act_id, att in live.items():
            act = wf.activity(act_id)
            if act is None:  # the store's foreign key makes this impossible
                raise LookupError(f"attempt {att.number} of unknown activity {act_id}")
            await self.adopt(act, att)
        # What is READY now was made so by no one running: it is put in line here, once.
        # Between chunks the loop serves the API and the other runs (a 100,000-activity run
        # held it for seconds); what the processor makes READY meanwhile it puts in line
        # itself, and what is cancelled or skipped meanwhile is left alone here.
        left = [
            (act, act.state is A.READY)
            for act in wf.activities.values()
            if act.state in (A.READY, A.PENDING)
        ]
        for start in range(0, len(left), READY_CHUNK):
            if start:
                await _give_way()
            with transitions.txn():
                for act, stored_ready in left[start : start + READY_CHUNK]:
                    if stored_ready:
                        if act.state is A.READY:
                            transitions.enqueue(act)
                    elif act.state is not A.PENDING:
                        continue
                    elif any(d.state in (A.FAILED, A.CANCELLED, A.SKIPPED) for d in act.deps):
                        transitions.skip_downstream(act)
                    elif act.deps_left == 0:
                        transitions.make_ready(act)

    async def adopt(self, act: ActivityRun, att: AttemptRecord, *, later: bool = False) -> None:
        """Reconcile one recorded attempt; while its backend cannot answer, the activity stays
        live (it is not resubmitted) and the question is asked again after a health period."""
        engine = self.engine
        slot = engine.runtimes.slots[act.runtime]
        job = engine.attempts.job_spec(act, att.number)
        try:
            adopted = await slot.runtime.adopt(job, att.handle)
        except RuntimeFailure as exc:
            log.warning("cannot reconcile %s yet: %s", job.key, exc)
            loop = asyncio.get_running_loop()
            loop.call_later(
                engine.health_interval, lambda: engine.spawn(self.adopt(act, att, later=True))
            )
            return
        with engine.transitions.txn():
            self._apply_adopted(act, att, job.key, adopted)
        if later and act.state is A.READY:  # never started: back in line (at attach, the
            slot.queue.append(act)  # caller queues every READY activity)
        if later and act.state.is_final:  # cancelled before it started
            engine.transitions.maybe_finish(act.wf)
        engine.wake()

    def _apply_adopted(
        self, act: ActivityRun, att: AttemptRecord, key: str, adopted: Adopted
    ) -> None:
        engine = self.engine
        slot = engine.runtimes.slots[act.runtime]
        number, handle = att.number, att.handle
        if adopted.kind == "never_started":
            reason = "engine stopped before the attempt started"
            engine.transitions.attempt_lost(act, number, reason)
            if att.stop_reason == "cancel":  # cancelled before it could start: not again
                engine.transitions.cancel_waiting(act)
            return
        act.key = key
        act.attempt = number
        act.adopted = True
        act.dispatched_at = att.submitted_at  # its writes, also while no engine watched
        engine.provenance.adopted(act)
        act.handle = dict(adopted.handle or handle)
        act.log_offsets = engine.repo.log_offsets(act.id, number)
        engine.attempts.jobs[key] = act
        slot.running += 1
        if act.wf.placement is not None:
            engine.placer.reserve_again(act, slot, number)
        act.stop_reason = att.stop_reason
        act.timed_out = att.stop_reason == "timeout"
        act.cancel_requested = act.cancel_requested or att.stop_reason == "cancel"
        if adopted.began_now and adopted.started_at is not None:
            started_at: float | None = adopted.started_at  # the stored one is not when it ran
        else:
            started_at = att.started_at or adopted.started_at
        if adopted.kind == "running":
            engine.attempts.adopted_running(
                act, adopted.node, started_at, began_now=adopted.began_now
            )
        else:
            assert adopted.outcome is not None
            act.attempt_started = started_at  # its duration, when it was never stored
            # Ended while no engine watched: its timeout is judged by when it ended, against
            # its start by the same clock (the runtime's, else the engine's).
            began, ended = adopted.started_at or att.started_at, adopted.outcome.ended_at
            if began and att.started_at and adopted.stored_start is not None:
                pick = min if adopted.stored_start == "earliest" else max
                began = pick(began, att.started_at)
            if ran_over(act.spec.timeout_seconds, began, ended):
                assert began is not None and ended is not None
                act.timed_out = True
                if att.stop_reason is None:  # not stopped at its deadline: it ended too late
                    act.ran_unwatched = ended - began
            engine.collected(act, adopted.outcome)

    async def release_leftovers(self, wf: WorkflowRun) -> None:
        """Backend objects of the run's ended attempts that a crash left behind (between
        storing an end and releasing it), released now."""
        engine = self.engine
        ended: dict[str, tuple[ActivityRun, int]] = {}
        for act in wf.activities.values():
            for number in range(1, act.attempt + 1):
                ended[attempt_key(wf.id, act.name, number)] = (act, number)
        for name in sorted({a.runtime for a in wf.activities.values()}):
            slot = engine.runtimes.slots.get(name)
            if slot is None or not slot.ready:
                continue
            try:
                async with asyncio.timeout(RELEASE_TIMEOUT):
                    found = await slot.runtime.leftovers(wf.id, wf.run_dir / "attempts")
            except Exception as exc:
                log.warning("cannot list what runtime %s left of run %s: %s", name, wf.id, exc)
                continue
            for key, handle in found.items():
                if key in engine.attempts.jobs or key not in ended:
                    continue  # live (adopted), or not this run's
                act, number = ended[key]
                succeeded = act.state is A.SUCCEEDED and number == act.attempt
                engine.attempts.release(wf, slot, key, dict(handle), succeeded=succeeded)


__all__ = ["Reconciler"]
