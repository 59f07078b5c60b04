"""Fixtures: emulated clusters, whose kubelets run pods in the session's private dockerd
(tests/daemons.py's ``k8s_dockerd``).

If the daemon or the emulated API server cannot be set up, the tests FAIL (never skip).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from akoflow import service
from akoflow.config import RuntimeConfig
from akoflow.engine import Engine
from akoflow.runtimes.base import RuntimeEvents
from akoflow.runtimes.registry import create_runtime
from akoflow.store import Repository
from tests.docker_support.dockerd import PrivateDockerd
from tests.k8s_support.cluster import EmulatedCluster

IMAGE = "akoflow-test/busybox:1"


def _start_cluster(root: Path, daemon: PrivateDockerd, name: str, **kw: Any) -> EmulatedCluster:
    cluster = EmulatedCluster(root, daemon.host, name=name, **kw)
    try:
        return cluster.start()
    except Exception as exc:
        cluster.close()
        pytest.fail(f"cannot start the emulated cluster {name}: {exc}", pytrace=False)


@pytest.fixture
def cluster(tmp_path: Path, k8s_dockerd: PrivateDockerd) -> Iterator[EmulatedCluster]:
    c = _start_cluster(tmp_path / "k8s", k8s_dockerd, "aws")
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def cluster2(tmp_path: Path, k8s_dockerd: PrivateDockerd) -> Iterator[EmulatedCluster]:
    c = _start_cluster(tmp_path / "k8s2", k8s_dockerd, "gcp", nodes=None)
    try:
        yield c
    finally:
        c.close()


def factory_for(environ: Mapping[str, str]) -> Any:
    """An engine runtime factory that reads runtime settings from ``environ`` only."""

    def factory(name: str, events: RuntimeEvents, config: RuntimeConfig | None) -> Any:
        return create_runtime(name, events, RuntimeConfig.from_env(name, environ))

    return factory


@contextlib.asynccontextmanager
async def engine_with(
    tmp_path: Path, text: str, environ: Mapping[str, str], **kwargs: Any
) -> AsyncIterator[tuple[Repository, Engine, int]]:
    state = tmp_path / "state"
    repo = service.open_repository(state)
    prepared = service.validate_text(text, "test.yaml")
    wf_id = service.store(repo, state, prepared, tmp_path / "data")
    kwargs.setdefault("health_interval", 0.5)
    kwargs.setdefault("log_interval", 0.2)
    engine = Engine(repo, state, runtime_factory=factory_for(environ), **kwargs)
    await engine.start()
    try:
        yield repo, engine, wf_id
    finally:
        await engine.stop()


def run(coro: Any) -> Any:
    return asyncio.run(coro)
