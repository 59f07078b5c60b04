"""What a run looks like from Python: the same shapes for a local run and a server's."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from akoflow.states import ActivityState, WorkflowState

__all__ = ["ActivityStatus", "Attempt", "LogChunk", "RunStatus", "RuntimeStatus"]


@dataclass(frozen=True, slots=True)
class ActivityStatus:
    """One activity of a run when it was looked at."""

    name: str
    runtime: str
    state: ActivityState
    attempts: int
    """Attempts started so far (the number of the last one; 0 before the first)."""
    exit_code: int | None
    """The last attempt's exit code (None while it runs, or when it never ran)."""
    reason: str | None
    """Why it failed, was cancelled or skipped."""
    node: str | None = None
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def duration(self) -> float | None:
        """Seconds from its first submission to its end (None until it ended)."""
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


@dataclass(frozen=True, slots=True)
class RunStatus:
    """A workflow run when it was looked at: its state and each activity's, by name."""

    id: int
    name: str
    state: WorkflowState
    data_dir: Path
    """Where its activities run and share files (a path on the engine's host)."""
    started_at: float | None = None
    finished_at: float | None = None
    activities: Mapping[str, ActivityStatus] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Every activity succeeded."""
        return self.state is WorkflowState.SUCCEEDED

    @property
    def done(self) -> bool:
        """The run ended (succeeded, failed or cancelled)."""
        return self.state.is_final

    def __getitem__(self, activity: str) -> ActivityStatus:
        return self.activities[activity]


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt of an activity."""

    number: int
    state: str
    """submitted, running, succeeded, failed, cancelled or lost (never started)."""
    runtime: str
    node: str | None
    exit_code: int | None
    reason: str | None
    submitted_at: float
    started_at: float | None
    finished_at: float | None
    cpu_seconds: float | None
    max_rss_bytes: int | None


@dataclass(frozen=True, slots=True)
class LogChunk:
    """Output of an attempt, in the order written."""

    attempt: int
    stream: str
    """stdout or stderr."""
    data: str


@dataclass(frozen=True, slots=True)
class RuntimeStatus:
    """A runtime of a server and its health (secret settings shown as ``***``)."""

    name: str
    kind: str
    ready: bool
    reason: str | None
    settings: Mapping[str, str] = field(default_factory=dict)
