"""AkôFlow: run YAML-defined DAGs of (containerized) activities on local, container, HPC and
Kubernetes runtimes from one workflow file, or from Python:

>>> import akoflow
>>> wf = akoflow.Workflow("hello", runtime="local")
>>> prep = wf.activity("prep", run="echo hi > greeting.txt")
>>> show = wf.activity("show", run="cat greeting.txt", depends_on=[prep])
>>> run = akoflow.run(wf)                       # doctest: +SKIP
>>> run.ok, run.logs("show")                    # doctest: +SKIP
(True, 'hi\\n')

See docs/python-api.md. Every name is imported when first used, so ``import akoflow`` (and
the ``akoflow`` command) stays as quick to start as before.
"""

import sys

# Not typing.TYPE_CHECKING: importing typing would double the time `import akoflow` takes.
TYPE_CHECKING = False
__version__ = "0.1.0"

if TYPE_CHECKING:
    from akoflow.api.client import AsyncClient, Client
    from akoflow.api.errors import (
        Conflict,
        InvalidToken,
        NotFound,
        RunBusy,
        RunInterrupted,
        ServerError,
        ServerUnreachable,
        Unauthorized,
        ValidationRejected,
    )
    from akoflow.api.runner import Run, run, run_async
    from akoflow.api.status import ActivityStatus, Attempt, LogChunk, RunStatus, RuntimeStatus
    from akoflow.api.workflow import Activity, Workflow, load
    from akoflow.errors import AkoflowError
    from akoflow.service import StateError
    from akoflow.spec.loader import SpecError, WorkflowValidationError
    from akoflow.states import ActivityState, WorkflowState

_LAZY = {
    # building
    "Workflow": "akoflow.api.workflow",
    "Activity": "akoflow.api.workflow",
    "load": "akoflow.api.workflow",
    "WorkflowValidationError": "akoflow.spec.loader",
    "SpecError": "akoflow.spec.loader",
    # running
    "run": "akoflow.api.runner",
    "run_async": "akoflow.api.runner",
    "Run": "akoflow.api.runner",
    "RunStatus": "akoflow.api.status",
    "ActivityStatus": "akoflow.api.status",
    "Attempt": "akoflow.api.status",
    "LogChunk": "akoflow.api.status",
    "RuntimeStatus": "akoflow.api.status",
    "ActivityState": "akoflow.states",
    "WorkflowState": "akoflow.states",
    "RunBusy": "akoflow.api.errors",
    "RunInterrupted": "akoflow.api.errors",
    "StateError": "akoflow.service",
    "AkoflowError": "akoflow.errors",
    # servers
    "Client": "akoflow.api.client",
    "AsyncClient": "akoflow.api.client",
    "ServerError": "akoflow.api.errors",
    "ServerUnreachable": "akoflow.api.errors",
    "Unauthorized": "akoflow.api.errors",
    "NotFound": "akoflow.api.errors",
    "Conflict": "akoflow.api.errors",
    "ValidationRejected": "akoflow.api.errors",
    "InvalidToken": "akoflow.api.errors",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:  # also how `from akoflow import cli` finds a subpackage
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    __import__(module)  # importlib would cost more to import than this whole module
    value: object = getattr(sys.modules[module], name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "Activity",
    "ActivityState",
    "ActivityStatus",
    "AkoflowError",
    "AsyncClient",
    "Attempt",
    "Client",
    "Conflict",
    "InvalidToken",
    "LogChunk",
    "NotFound",
    "Run",
    "RunBusy",
    "RunInterrupted",
    "RunStatus",
    "RuntimeStatus",
    "ServerError",
    "ServerUnreachable",
    "SpecError",
    "StateError",
    "Unauthorized",
    "ValidationRejected",
    "Workflow",
    "WorkflowState",
    "WorkflowValidationError",
    "__version__",
    "load",
    "run",
    "run_async",
]
