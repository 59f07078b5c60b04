"""Workflow specification: the YAML format, its validation and the resolved workflow model.

The plain dataclasses of the resolved workflow (:mod:`akoflow.spec.workflow`) are imported
with the package; the YAML loader and its pydantic model only when one of their names is first
used, so that modules needing the dataclasses alone (the runtime contract, every adapter) do
not load them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from akoflow.spec.workflow import Activity, StoragePolicy, Volume, Webhook, Workflow

if TYPE_CHECKING:
    from akoflow.spec.loader import (
        SpecError,
        WorkflowValidationError,
        load_workflow,
        load_workflow_file,
    )
    from akoflow.spec.model import json_schema

_LAZY = {
    "SpecError": "akoflow.spec.loader",
    "WorkflowValidationError": "akoflow.spec.loader",
    "load_workflow": "akoflow.spec.loader",
    "load_workflow_file": "akoflow.spec.loader",
    "json_schema": "akoflow.spec.model",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:  # also how `from akoflow.spec import loader` finds the submodule
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value: object = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "Activity",
    "SpecError",
    "StoragePolicy",
    "Volume",
    "Webhook",
    "Workflow",
    "WorkflowValidationError",
    "json_schema",
    "load_workflow",
    "load_workflow_file",
]
