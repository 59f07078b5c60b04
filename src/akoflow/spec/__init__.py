"""Workflow specification: the YAML format, its validation and the resolved workflow model."""

from __future__ import annotations

from akoflow.spec.loader import (
    SpecError,
    WorkflowValidationError,
    load_workflow,
    load_workflow_file,
)
from akoflow.spec.model import json_schema
from akoflow.spec.workflow import Activity, StoragePolicy, Volume, Workflow

__all__ = [
    "Activity",
    "SpecError",
    "StoragePolicy",
    "Volume",
    "Workflow",
    "WorkflowValidationError",
    "json_schema",
    "load_workflow",
    "load_workflow_file",
]
