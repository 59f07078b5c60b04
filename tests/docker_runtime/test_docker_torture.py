"""Crash-point torture on the docker runtime (the private dockerd, the local busybox image): the
same trials and checks as tests/e2e/test_crash_torture.py, with fewer kills and smaller
workflows, since every attempt is a container."""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from akoflow.runtimes.scope import existing_scope
from tests.docker_support.dockerd import IMAGE, PrivateDockerd
from tests.torture.runner import run_torture
from tests.torture.workflows import POSIX_SH, Builder, RuntimeUnderTest, chain, retrying, wide

MIN_KILLS = 8
WORKFLOWS: list[Builder] = [
    functools.partial(wide, width=8),
    functools.partial(chain, length=4),
    functools.partial(retrying, flaky=2, timed=1, plain=2, chained=2),
]


def _containers(dockerd: PrivateDockerd, state_dir: Path) -> list[dict[str, Any]]:
    """Containers of this state dir's runs, in any state."""
    found = []
    for attempts in (state_dir / "runs").glob("*/attempts"):
        scope = existing_scope(attempts)
        if scope is not None:  # else no container of the run was ever named
            found += dockerd.containers(**{"akoflow.scope": scope})
    return found


def left_containers(dockerd: PrivateDockerd, state_dir: Path) -> list[str]:
    """Containers of the state dir still there once its run ended: the cleanup policy
    (`always`) removes every container once its end is stored, crash or not."""
    return [
        f"container {c.get('Names')} ({c.get('Status')})" for c in _containers(dockerd, state_dir)
    ]


def terminate_containers(
    dockerd: PrivateDockerd, state_dir: Path, activities: frozenset[str]
) -> int:
    """SIGTERM to the running containers of these activities (tini passes it to the script)."""
    running = [
        c
        for c in _containers(dockerd, state_dir)
        if c.get("State") == "running"
        and (c.get("Labels") or {}).get("akoflow.activity") in activities
    ]
    for c in running:
        with contextlib.suppress(docker.errors.APIError):
            dockerd.api.kill(c["Id"], signal="SIGTERM")
    return len(running)


@pytest.mark.timeout(240)
def test_sigkill_at_random_instants_then_resume_on_docker(
    dockerd: PrivateDockerd, docker_env: dict[str, str], tmp_path: Path
) -> None:
    runtime = RuntimeUnderTest(
        name="docker",
        spec={"image": IMAGE},
        env=docker_env,
        shell=POSIX_SH,
        leftovers=functools.partial(left_containers, dockerd),
        terminate=functools.partial(terminate_containers, dockerd),
    )
    report = run_torture(
        runtime, WORKFLOWS, tmp_path, min_kills=MIN_KILLS, max_trials=3 * MIN_KILLS
    )
    print(report.details())
    print(report.summary())
    assert not report.failures(), report.failure_text()
    assert report.landed() >= MIN_KILLS or report.only, report.summary()
