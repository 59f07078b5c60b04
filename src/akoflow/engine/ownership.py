"""Which process owns a run: a run is driven by one live engine process at a time.

A run records its owner's PID and that process's start time; a PID alone could have been
reused by another process since, so the pair is what identifies a live owner.
"""

from __future__ import annotations

import psutil

from akoflow.errors import AkoflowError


class WorkflowBusy(AkoflowError, RuntimeError):
    """Another live engine process owns this workflow."""


def process_start_time() -> float:
    return psutil.Process().create_time()


def owner_alive(pid: int | None, started: float | None) -> bool:
    if pid is None or started is None:
        return False
    try:
        owner = psutil.Process(pid)
        # A zombie is an engine that died and whose parent has not reaped it (a parent that
        # never waits; an init that never reaps, as in many containers): it drives nothing.
        return abs(owner.create_time() - started) < 0.01 and owner.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


__all__ = ["WorkflowBusy", "owner_alive", "process_start_time"]
