"""``akoflow runtimes check NAME``: a runtime's setup checked step by step, each with what it
found or what is wrong and the fix.

Each runtime kind has a module of its own (:mod:`.hpc`, :mod:`.docker`, :mod:`.kubernetes`,
:mod:`.host` for local and singularity) that runs its steps through a :class:`Checklist`:
every step is bounded by a timeout, and a failed step that later ones need (the settings,
the connection) marks those as not run instead of letting them fail for the same reason.
The report holds no secret: settings are shown redacted, and what a step says comes from
messages that never carry one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from akoflow.config import RuntimeConfig
from akoflow.errors import AkoflowError
from akoflow.runtimes.registry import adapter_for, check_runtime_name

DEFAULT_STEP_TIMEOUT = 20.0  # s: one step; a login that asks questions gets their time too

StepStatus = Literal["ok", "failed", "skipped"]


class StepFailed(AkoflowError):
    """What a step found wrong (``problem``) and what to do about it (``fix``)."""

    def __init__(self, problem: str, fix: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    status: StepStatus
    detail: str
    """What the step found (ok) or what is wrong (failed), or why it did not run."""
    fix: str = ""


@dataclass(slots=True)
class Report:
    runtime: str
    kind: str
    settings: dict[str, str]
    """``{NAME}_*`` settings as given, secret values replaced by ``***``."""
    resolved: dict[str, str] = field(default_factory=dict)
    """What the settings resolve to as they will be used (the HPC login through the ssh
    config, the docker daemon's address); no secrets."""
    steps: list[Step] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(step.status == "ok" for step in self.steps)

    def to_json(self) -> dict[str, Any]:
        """The one JSON shape of a check (``--json``, the API's ``/runtimes/{name}/check``)."""
        return {
            "runtime": self.runtime,
            "kind": self.kind,
            "ok": self.ok,
            "settings": dict(self.settings),
            "resolved": dict(self.resolved),
            "steps": [
                {"name": s.name, "status": s.status, "detail": s.detail, "fix": s.fix}
                for s in self.steps
            ],
        }


Probe = Callable[[], Awaitable[str]]


class Checklist:
    """Runs a runtime's steps in order and records them in :attr:`report`."""

    def __init__(self, report: Report, timeout: float) -> None:
        self.report = report
        self.timeout = timeout
        self._blocked_by: str | None = None

    async def run(
        self,
        name: str,
        probe: Probe,
        *,
        fix: str = "",
        required: bool = False,
        timeout: float | None = None,
    ) -> bool:
        """Run ``probe`` (it returns what it found, or raises); True when it passed. A
        ``required`` step that fails makes every later step ``skipped``."""
        if self._blocked_by is not None:
            self._add(Step(name, "skipped", f"not run: {self._blocked_by} failed"))
            return False
        limit = self.timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(limit):
                detail = await probe()
        except StepFailed as exc:
            step = Step(name, "failed", exc.problem, exc.fix or fix)
        except TimeoutError:
            step = Step(name, "failed", f"no answer within {limit:g} s", fix)
        except Exception as exc:  # a runtime's own errors carry their reason (and a hint)
            problem = getattr(exc, "problem", None) or str(exc) or type(exc).__name__
            step = Step(name, "failed", str(problem), getattr(exc, "hint", None) or fix)
        else:
            step = Step(name, "ok", detail)
        self._add(step)
        if step.status == "failed" and required:
            self._blocked_by = name
        return step.status == "ok"

    def skip(self, name: str, because: str) -> None:
        """Record ``name`` as not run because step ``because`` failed (or an earlier required
        one)."""
        self._add(Step(name, "skipped", f"not run: {self._blocked_by or because} failed"))

    def _add(self, step: Step) -> None:
        self.report.steps.append(step)


class UnknownRuntimeName(AkoflowError, ValueError):
    """The name is no runtime this AkôFlow can run (the message says what names are)."""


async def check_runtime(
    name: str,
    *,
    image: str | None = None,
    timeout: float = DEFAULT_STEP_TIMEOUT,
    environ: Mapping[str, str] | None = None,
) -> Report:
    """Check runtime ``name`` as configured by ``environ`` (default: this process's)."""
    problem = check_runtime_name(name)
    adapter = adapter_for(name)
    if problem is not None or adapter is None:
        raise UnknownRuntimeName(problem or f"unknown runtime {name!r}")
    config = RuntimeConfig.from_env(name, environ)
    report = Report(runtime=name, kind=adapter.kind, settings=config.redacted())
    checks = Checklist(report, timeout)
    if adapter.kind == "hpc":
        from akoflow.runtimes.checks import hpc

        await hpc.check(config, checks)
    elif adapter.kind == "docker":
        from akoflow.runtimes.checks import docker

        await docker.check(config, checks, image=image)
    elif adapter.kind == "k8s":
        from akoflow.runtimes.checks import kubernetes

        await kubernetes.check(config, checks)
    else:
        from akoflow.runtimes.checks import host

        await host.check(config, checks, singularity=adapter.kind == "singularity")
    return report


__all__ = [
    "DEFAULT_STEP_TIMEOUT",
    "Checklist",
    "Report",
    "Step",
    "StepFailed",
    "UnknownRuntimeName",
    "check_runtime",
]
