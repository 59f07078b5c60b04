"""A deleted run's containers go (those ``{NAME}_CLEANUP=never`` or ``on-success`` kept, or
an engine killed before it removed them): found by the run's scope and workflow id labels
together, so another state dir's containers on the same daemon are never touched."""

from __future__ import annotations

from typing import Any

import docker.errors

from akoflow.runtimes.base import Forgotten, RunTrace, SubmitError
from akoflow.runtimes.docker.container import run_filter
from akoflow.runtimes.docker.daemon import Daemon, explain


def _forget(daemon: Daemon, run: RunTrace) -> list[str]:
    """Thread: remove the run's containers; the names removed."""
    api = daemon.client()
    found: list[dict[str, Any]] = api.containers(
        all=True, filters=run_filter(run.scope, run.workflow_id)
    )
    removed = []
    for container in found:
        name = str((container.get("Names") or [container["Id"]])[0]).lstrip("/")
        try:
            api.remove_container(container["Id"], force=True)
        except docker.errors.NotFound:
            continue
        except docker.errors.APIError as exc:
            raise SubmitError(f"cannot remove container {name}: {explain(exc)}") from None
        removed.append(f"container {name}")
    return removed


async def forget_remote(daemon: Daemon, run: RunTrace) -> Forgotten:
    return Forgotten(removed=tuple(await daemon.call(_forget, daemon, run)))


__all__ = ["forget_remote"]
