"""The runtimes an engine uses: created on first use, each health-checked by its own loop.

A runtime is READY or NOT_READY with a reason, recorded in the store with its redacted
settings and nodes. Every call to a backend here is bounded by its ``{NAME}_HEALTH_TIMEOUT``,
and each runtime has its own loop, so a backend that hangs is NOT_READY and never delays
another runtime's checks.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from akoflow.config import RuntimeConfig
from akoflow.engine.model import RuntimeSlot
from akoflow.errors import SettingError
from akoflow.runtimes.base import (
    DEFAULT_HEALTH_TIMEOUT,
    Adopted,
    Health,
    JobSpec,
    ProcessHook,
    Runtime,
    RuntimeEvents,
    RuntimeUnavailable,
    SubmitError,
)
from akoflow.runtimes.registry import UnknownRuntime, adapter_for, configured_runtime_names
from akoflow.store import Repository

log = logging.getLogger(__name__)

RuntimeFactory = Callable[[str, RuntimeEvents, RuntimeConfig | None], Runtime]
LoopStarter = Callable[[str, Callable[[], Awaitable[None]]], None]


class RuntimePool:
    def __init__(
        self,
        repo: Repository,
        events: RuntimeEvents,
        factory: RuntimeFactory,
        *,
        health_interval: float,
        start_loop: LoopStarter,
        wake: Callable[[], None],
        process_hook: ProcessHook | None = None,
    ) -> None:
        self.repo = repo
        self._process_hook = process_hook
        self.slots: dict[str, RuntimeSlot] = {}
        self._events = events
        self._factory = factory
        self._health_interval = health_interval
        self._start_loop = start_loop
        self._wake = wake  # the engine has work to look at again (a runtime became READY)

    async def register_configured(self) -> None:
        """Bring up every runtime the environment configures (server mode), so that their
        health is known before any workflow uses them. One whose adapter is not available is
        recorded NOT_READY with the reason."""
        for name in configured_runtime_names():
            try:
                await self.ensure(name)
            except UnknownRuntime as exc:
                adapter = adapter_for(name)
                self.repo.upsert_runtime(
                    name,
                    kind=adapter.kind if adapter else "unknown",
                    status="NOT_READY",
                    reason=str(exc),
                    config=RuntimeConfig.from_env(name).redacted(),
                )

    async def ensure(self, name: str) -> RuntimeSlot:
        slot = self.slots.get(name)
        if slot is not None:
            return slot
        try:
            runtime = self._factory(name, self._events, None)
            limit = runtime.max_parallel
        except SettingError as exc:  # settings that cannot even build it: its work fails
            runtime, limit = Unbuildable(name, RuntimeConfig.from_env(name), self._events, exc), 1
        runtime.process_hook = self._process_hook
        slot = RuntimeSlot(runtime=runtime, limit=limit)
        self.slots[name] = slot
        await self._check_and_refresh(name, slot)
        # One loop per runtime: a backend that hangs never delays another one's checks.
        self._start_loop(f"health-{name}", functools.partial(self._health_once, name, slot))
        return slot

    async def _check_health(self, name: str, slot: RuntimeSlot) -> None:
        misconfigured, ready_timeout = False, math.inf
        try:
            timeout = slot.runtime.health_timeout
            try:
                async with asyncio.timeout(timeout):
                    if not slot.started:
                        await slot.runtime.start()
                        slot.started = True
                    health = await slot.runtime.health()
            except TimeoutError:
                raise RuntimeError(f"health check timed out after {timeout:g} s") from None
            ready, reason, misconfigured = health.ready, health.reason, health.misconfigured
            ready_timeout = slot.runtime.config.get_seconds("READY_TIMEOUT", math.inf)
        except SettingError as exc:  # a bad setting never heals while the engine runs
            ready, reason, misconfigured = False, str(exc), True
        except Exception as exc:  # a broken backend must not stop the engine
            ready, reason = False, str(exc) or type(exc).__name__
        if ready != slot.ready or reason != slot.reason:
            level = logging.INFO if ready else logging.WARNING
            log.log(
                level,
                "runtime %s is %s%s",
                name,
                "READY" if ready else "NOT_READY",
                f": {reason}" if reason else "",
            )
        slot.ready, slot.reason = ready, reason
        slot.failing = self._failing(name, slot, misconfigured, ready_timeout)
        self.repo.upsert_runtime(
            name,
            kind=slot.runtime.kind,
            status="READY" if ready else "NOT_READY",
            reason=reason,
            config=slot.runtime.config.redacted(),
        )
        if ready or slot.failing:
            self._wake()

    @staticmethod
    def _failing(name: str, slot: RuntimeSlot, misconfigured: bool, limit: float) -> str | None:
        """Why the work held for a NOT_READY runtime fails now rather than waits: a setup
        that will not heal, or NOT_READY for longer than ``{NAME}_READY_TIMEOUT``."""
        if slot.ready:
            slot.not_ready_since = None
            return None
        if misconfigured:
            return f"runtime {name} is misconfigured: {slot.reason}"
        now = time.monotonic()
        if slot.not_ready_since is None:
            slot.not_ready_since = now
        waited = now - slot.not_ready_since
        if waited < limit:
            return None
        return (
            f"runtime {name} was NOT_READY for {waited:.0f} s "
            f"({slot.runtime.config.variable('READY_TIMEOUT')}={limit:g}): {slot.reason}"
        )

    async def _health_once(self, name: str, slot: RuntimeSlot) -> None:
        await asyncio.sleep(self._health_interval)
        await self._check_and_refresh(name, slot)

    async def _check_and_refresh(self, name: str, slot: RuntimeSlot) -> None:
        await self._check_health(name, slot)
        if slot.ready:
            try:
                timeout = slot.runtime.health_timeout
                async with asyncio.timeout(timeout):
                    await self._refresh_nodes(name, slot)
            except Exception as exc:  # placement keeps the nodes it knew, or waits for some
                log.info("runtime %s: cannot list its nodes: %s", name, exc or "timed out")

    async def _refresh_nodes(self, name: str, slot: RuntimeSlot) -> None:
        """The runtime's nodes, for placement and for the runtimes view."""
        nodes = list(await slot.runtime.nodes())
        slot.nodes = nodes
        if slot.queue and any(a.wf.placement is not None for a in slot.queue):
            self._wake()  # capacity may have freed up for a waiting activity
        self.repo.upsert_nodes(
            name,
            (
                (
                    n.name,
                    "READY" if n.ready else "NOT_READY",
                    n.cpu_capacity,
                    n.memory_capacity,
                    n.cpu_usage,
                    n.memory_usage,
                )
                for n in nodes
            ),
        )

    def status(self) -> dict[str, tuple[bool, str | None]]:
        return {name: (s.ready, s.reason) for name, s in self.slots.items()}


class Unbuildable(Runtime):
    """Stands in for a runtime whose settings do not even let it be made: NOT_READY and
    misconfigured with the reason, so the work sent to it fails with that reason."""

    kind = "unknown"

    def __init__(
        self, name: str, config: RuntimeConfig, events: RuntimeEvents, error: SettingError
    ) -> None:
        super().__init__(name, config, events)
        self.error = str(error)

    async def submit(self, job: JobSpec) -> dict[str, Any]:
        raise SubmitError(self.error)

    async def cancel(self, key: str, handle: Mapping[str, Any]) -> None:
        return None

    async def adopt(self, job: JobSpec, handle: Mapping[str, Any]) -> Adopted:
        raise RuntimeUnavailable(self.error)  # cannot tell: asked again once it is fixed

    async def logs(
        self, key: str, handle: Mapping[str, Any], offsets: Mapping[str, int]
    ) -> dict[str, bytes]:
        return {}

    async def health(self) -> Health:
        return Health(False, self.error, misconfigured=True)

    @property
    def health_timeout(self) -> float:
        return DEFAULT_HEALTH_TIMEOUT


__all__ = ["RuntimeFactory", "RuntimePool", "Unbuildable"]
