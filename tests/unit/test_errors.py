"""Every public exception of the package is an AkoflowError, and keeps its builtin base."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import akoflow
from akoflow.errors import AkoflowError, SettingError

PACKAGE = Path(akoflow.__file__).parent


def modules() -> list[str]:
    """Every module of the package, namespace packages (``runtimes/``) included."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__main__":
            continue
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def public_exceptions() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for name in modules():
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == name
                and not attr.startswith("_")
            ):
                found[f"{name}.{attr}"] = value
    return found


def test_every_public_exception_is_an_akoflow_error() -> None:
    found = public_exceptions()
    # The scan sees the ones this test was written against (it cannot silently find none).
    for known in (
        "akoflow.runtimes.base.RuntimeFailure",
        "akoflow.runtimes.base.SubmitError",
        "akoflow.runtimes.base.RuntimeUnavailable",
        "akoflow.runtimes.registry.UnknownRuntime",
        "akoflow.spec.loader.WorkflowValidationError",
        "akoflow.service.StateError",
        "akoflow.engine.loops.EngineFailure",
        "akoflow.engine.ownership.WorkflowBusy",
        "akoflow.states.InvalidTransition",
    ):
        assert known in found
    outside = sorted(name for name, cls in found.items() if not issubclass(cls, AkoflowError))
    assert outside == []


def test_the_builtin_bases_stay_for_callers_that_catch_them() -> None:
    from akoflow.engine.loops import EngineFailure
    from akoflow.engine.ownership import WorkflowBusy
    from akoflow.runtimes.hpc.settings import SettingsError
    from akoflow.runtimes.kubernetes.settings import ConfigError
    from akoflow.runtimes.registry import UnknownRuntime
    from akoflow.states import InvalidTransition

    value_errors: tuple[type[Exception], ...] = (SettingError, UnknownRuntime)
    runtime_errors: tuple[type[Exception], ...] = (EngineFailure, WorkflowBusy, InvalidTransition)
    assert all(issubclass(cls, ValueError) for cls in value_errors)
    assert all(issubclass(cls, RuntimeError) for cls in runtime_errors)
    # The runtimes' settings errors are the one shared type, under their old names too.
    assert SettingsError is SettingError and ConfigError is SettingError
