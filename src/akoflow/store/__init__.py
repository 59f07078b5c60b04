"""The state store: SQLite behind one repository. No SQL lives anywhere else."""

from akoflow.store.repository import (
    ActivityRecord,
    AmbiguousFile,
    AttemptRecord,
    Candidate,
    FileRecord,
    InitialFile,
    LogChunk,
    NodeRecord,
    PlacementRecord,
    Repository,
    RuntimeRecord,
    WorkflowRecord,
)

__all__ = [
    "ActivityRecord",
    "AmbiguousFile",
    "AttemptRecord",
    "Candidate",
    "FileRecord",
    "InitialFile",
    "LogChunk",
    "NodeRecord",
    "PlacementRecord",
    "Repository",
    "RuntimeRecord",
    "WorkflowRecord",
]
