"""A deleted run's objects in the cluster go: its Jobs and pods (attempts' and transfer
pods), found by the run's scope and workflow id labels together, and its volumes
(PersistentVolumeClaims), which carry only the workflow id label (every state dir has a
workflow 1): a claim goes only when its name is one this run's scope gives (the standalone
claim, or one per node its attempts ran on)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx2
from lightkube import ApiError, AsyncClient
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import PersistentVolumeClaim, Pod
from lightkube.types import CascadeType

from akoflow.runtimes.base import Forgotten, RuntimeUnavailable, RunTrace, SubmitError
from akoflow.runtimes.kubernetes import manifests as mf


def run_labels(run: RunTrace) -> dict[str, Any]:
    return {
        mf.L_MANAGED: "akoflow",
        mf.L_SCOPE: run.scope,
        mf.L_WORKFLOW: str(run.workflow_id),
    }


def claim_names(run: RunTrace) -> set[str]:
    """Every claim name the run's scope gives: standalone, and per node it ran on."""
    wf = f"wf{run.workflow_id}"
    names = {mf.dns_name("akoflow", wf, run.scope)}
    names |= {mf.dns_name("akoflow", wf, node, run.scope) for node in run.nodes}
    return names


def is_run_claim(name: str, run: RunTrace) -> bool:
    """A claim of this run: a name its scope gives, or (distributed, on a node no attempt
    record names) ``akoflow-wf<id>-<node>-<scope>`` kept whole."""
    if name in claim_names(run):
        return True
    return name.startswith(f"akoflow-wf{run.workflow_id}-") and name.endswith(f"-{run.scope}")


def _name(obj: Any) -> str:
    return str(obj.metadata.name) if obj.metadata is not None else ""


async def forget_remote(
    api: AsyncClient,
    namespace: str,
    run: RunTrace,
    unreachable: Callable[[BaseException], Exception],
) -> Forgotten:
    """Delete the run's Jobs, pods and claims in ``namespace``; what went."""
    removed: list[str] = []
    try:
        labels = run_labels(run)
        jobs = [_name(j) async for j in api.list(Job, namespace=namespace, labels=labels)]
        for name in jobs:
            await _delete(api, Job, name, namespace)
            removed.append(f"Job {namespace}/{name}")
        pods = [_name(p) async for p in api.list(Pod, namespace=namespace, labels=labels)]
        for name in pods:
            await _delete(api, Pod, name, namespace)
            removed.append(f"Pod {namespace}/{name}")
        claim_labels: dict[str, Any] = {
            mf.L_MANAGED: "akoflow",
            mf.L_WORKFLOW: str(run.workflow_id),
        }
        claims = [
            name
            async for c in api.list(PersistentVolumeClaim, namespace=namespace, labels=claim_labels)
            if is_run_claim(name := _name(c), run)
        ]
        for name in claims:
            await _delete(api, PersistentVolumeClaim, name, namespace)
            removed.append(f"PersistentVolumeClaim {namespace}/{name}")
    except ApiError as exc:
        if exc.status.code == 404:  # the namespace is gone: so is everything in it
            return Forgotten(removed=tuple(removed))
        raise SubmitError(f"the cluster refused: {exc.status.message or exc}") from None
    except (httpx2.HTTPError, OSError) as exc:
        raise unreachable(exc) from None
    except RuntimeUnavailable:
        raise
    return Forgotten(removed=tuple(removed))


async def _delete(api: AsyncClient, kind: Any, name: str, namespace: str) -> None:
    try:
        await api.delete(kind, name, namespace=namespace, cascade=CascadeType.BACKGROUND)
    except ApiError as exc:
        if exc.status.code != 404:  # gone meanwhile: fine
            raise


__all__ = ["claim_names", "forget_remote", "is_run_claim", "run_labels"]
