"""The workflow engine (event-driven DAG execution over runtime adapters)."""

from akoflow.engine.engine import ActivityRun, Engine, WorkflowBusy, WorkflowRun

__all__ = ["ActivityRun", "Engine", "WorkflowBusy", "WorkflowRun"]
