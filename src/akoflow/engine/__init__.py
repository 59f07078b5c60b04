"""The workflow engine (event-driven DAG execution over runtime adapters)."""

from akoflow.engine.engine import Engine
from akoflow.engine.model import ActivityRun, WorkflowRun
from akoflow.engine.ownership import WorkflowBusy

__all__ = ["ActivityRun", "Engine", "WorkflowBusy", "WorkflowRun"]
