"""The state store: SQLite behind one repository. No SQL lives anywhere else."""

from akoflow.store.repository import (
    ActivityRecord,
    AttemptRecord,
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
    "AttemptRecord",
    "FileRecord",
    "InitialFile",
    "LogChunk",
    "NodeRecord",
    "PlacementRecord",
    "Repository",
    "RuntimeRecord",
    "WorkflowRecord",
]
