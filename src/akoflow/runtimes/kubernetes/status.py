"""Pure readers of Job and Pod status (as plain dicts): what the runtime acts on."""

from __future__ import annotations

import signal
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from akoflow.runtimes.base import Outcome
from akoflow.runtimes.instants import instant

# Waiting reasons that will not go away by themselves: fail fast after a grace period.
STUCK_WAITING = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)


@dataclass(frozen=True, slots=True)
class PodView:
    name: str
    job: str | None
    node: str | None
    running: bool
    exit_code: int | None  # set once the container terminated
    terminated: bool
    reason: str | None  # terminated reason (OOMKilled, Error) or stuck reason
    stuck: str | None  # "ErrImagePull: ..." / "Unschedulable: ..." while pending
    # When its container ran, once terminated (seconds since the epoch, the cluster's clock)
    started_at: float | None = None
    finished_at: float | None = None


def widest_run(pod: PodView) -> tuple[float, float] | None:
    """When the pod's container ran, by the cluster's clock, as a window no shorter than it
    ran: the API gives whole seconds, so from the start of its start's second to the end of
    its end's. For a success its timeout's stop came too late for: judged in time only if
    it surely was (never a false success); None when the times are not known."""
    if pod.started_at is None or pod.finished_at is None:
        return None
    return pod.started_at, pod.finished_at + 1.0


@dataclass(frozen=True, slots=True)
class JobView:
    name: str
    key: str | None
    complete: bool
    failed: bool
    reason: str | None


def _cond(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind and c.get("status") == "True":
            return dict(c)
    return None


def job_view(job: Mapping[str, Any]) -> JobView:
    meta = job.get("metadata") or {}
    failed = _cond(job, "Failed")
    reason = None
    if failed is not None:
        reason = ": ".join(x for x in (failed.get("reason"), failed.get("message")) if x) or None
    return JobView(
        name=str(meta.get("name")),
        key=(meta.get("annotations") or {}).get("akoflow.io/key"),
        complete=_cond(job, "Complete") is not None,
        failed=failed is not None,
        reason=reason,
    )


def pod_view(pod: Mapping[str, Any]) -> PodView:
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    labels = meta.get("labels") or {}
    job = labels.get("batch.kubernetes.io/job-name") or labels.get("job-name")
    statuses = status.get("containerStatuses") or []
    state = (statuses[0].get("state") or {}) if statuses else {}
    running = "running" in state and state["running"] is not None
    term = state.get("terminated")
    waiting = state.get("waiting") or {}
    stuck = None
    if waiting.get("reason") in STUCK_WAITING:
        stuck = ": ".join(x for x in (waiting.get("reason"), waiting.get("message")) if x)
    scheduled = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"), None
    )
    if (
        scheduled is not None
        and scheduled.get("status") == "False"
        and scheduled.get("reason") == "Unschedulable"
    ):
        stuck = ": ".join(x for x in ("Unschedulable", scheduled.get("message")) if x)
    code = term.get("exitCode") if term else None
    return PodView(
        name=str(meta.get("name")),
        job=job,
        node=spec.get("nodeName"),
        running=running,
        exit_code=code if isinstance(code, int) else None,
        terminated=term is not None,
        reason=(term.get("reason") if term else None),
        stuck=stuck,
        started_at=instant(term.get("startedAt")) if term else None,
        finished_at=instant(term.get("finishedAt")) if term else None,
    )


def outcome_of(
    *, complete: bool, failed_reason: str | None, exit_code: int | None, term_reason: str | None
) -> Outcome:
    """The attempt's outcome: the container's real exit code decides when it is known."""
    if exit_code is not None:
        if exit_code == 0 and complete:
            return Outcome(True, 0)
        if exit_code == 0:  # the Job failed around a container that exited 0 (deadline...)
            return Outcome(False, 0, failed_reason or "the Job failed")
        text = f"exit code {exit_code}"
        if term_reason == "OOMKilled":
            text = f"out of memory ({text})"
        elif 128 < exit_code < 128 + signal.NSIG:
            try:
                text += f" (killed by {signal.Signals(exit_code - 128).name})"
            except ValueError:
                pass
        return Outcome(False, exit_code, text)
    if complete:
        return Outcome(True, 0)
    return Outcome(False, None, failed_reason or "the Job failed before its container ran")
