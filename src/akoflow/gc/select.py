"""Which finished runs a gc deletes: pure, from the runs' summaries and the options."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RunSummary:
    id: int
    name: str
    finished: bool
    ended_at: float | None
    """When it ended (its finish time, else when it was made: a run that never started)."""


def chosen(
    runs: Iterable[RunSummary],
    *,
    now: float,
    older_than: float | None,
    keep_last: int | None,
) -> list[int]:
    """The ids of the finished runs to delete, oldest first: those that ended more than
    ``older_than`` seconds before ``now`` and, with ``keep_last``, are not among the
    ``keep_last`` newest finished runs of their workflow name. Neither option: none (a gc
    then only retries what earlier deletions left on backends and gives back free pages).
    Unfinished runs are never chosen."""
    if older_than is None and keep_last is None:
        return []
    finished = sorted((r for r in runs if r.finished), key=lambda r: r.id, reverse=True)
    kept: set[int] = set()
    if keep_last is not None:
        seen: dict[str, int] = {}
        for run in finished:  # newest first
            seen[run.name] = seen.get(run.name, 0) + 1
            if seen[run.name] <= keep_last:
                kept.add(run.id)
    cutoff = None if older_than is None else now - older_than
    return sorted(
        r.id
        for r in finished
        if r.id not in kept and (cutoff is None or (r.ended_at is not None and r.ended_at < cutoff))
    )


__all__ = ["RunSummary", "chosen"]
