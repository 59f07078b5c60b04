"""Hostile pass on the data plane (issue 17): the login node hangs (sshd and every session it
serves SIGSTOPped: no reset, no close, packets simply go unanswered) while a batch of copies
to the cluster is under way at once. The attempt is held (NOT_READY), never failed for it,
never waits forever; once sshd answers again every file arrives whole, and the job runs once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
from pathlib import Path

import psutil
import pytest

from akoflow.dataplane.mover import PART_SUFFIX
from akoflow.states import WorkflowState
from tests.e2e.test_engine_inprocess import engine_with
from tests.hpc_runtime.test_hpc_engine import jobcomp, slurm_name, states, until
from tests.slurm_support.cluster import SlurmCluster

pytestmark = [pytest.mark.slurm, pytest.mark.needs_root]

FILES = 16
SIZE = 2 * 2**20

FROZEN = f"""\
name: frozen
spec:
  collect: none
  activities:
    - name: make
      runtime: local
      run: |
        i=0; while [ $i -lt {FILES} ]; do head -c {SIZE} /dev/urandom > f$i.bin; i=$((i+1)); done
    - name: use
      runtime: hpc
      dependsOn: [make]
      run: |
        echo run >> use.count
        sha256sum f*.bin > sums.txt
"""


def sshd_processes(cluster: SlurmCluster) -> list[psutil.Process]:
    main = psutil.Process(int(cluster.sshd.pidfile.read_text()))
    return [main, *main.children(recursive=True)]


def signal_all(procs: list[psutil.Process], sig: int) -> None:
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
            os.kill(p.pid, sig)


def test_a_hung_login_node_during_concurrent_uploads_holds_the_attempt(
    slurm_cluster: SlurmCluster,
    hpc_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HPC_KEEPALIVE", "1")  # a hung peer is found out in seconds
    mount = Path(hpc_env["HPC_MOUNT_PATH"])
    data = tmp_path / "data"

    async def scenario() -> None:
        async with engine_with(tmp_path, FROZEN, health_interval=0.2) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            await until(
                lambda: any(p.name.endswith(PART_SUFFIX) for p in mount.iterdir()),
                60,
                "a copy under way",
            )
            frozen = sshd_processes(slurm_cluster)
            signal_all(frozen, signal.SIGSTOP)
            try:
                await until(lambda: not engine.runtime_status()["hpc"][0], 60, "NOT_READY")
                assert wf.activities["use"].state.is_live or not wf.activities["use"].state.is_final
            finally:
                signal_all(frozen, signal.SIGCONT)
            state = await asyncio.wait_for(engine.wait(wf_id), timeout=120)
            assert state is WorkflowState.SUCCEEDED, states(wf)
            (act,) = [a for a in repo.list_activities(wf_id) if a.name == "use"]
            tried = [(t.state, t.reason) for t in repo.list_attempts(act.id)]
            assert all(s in ("lost", "succeeded") for s, _ in tried), tried

    asyncio.run(scenario())
    assert (mount / "use.count").read_text() == "run\n"
    sums = dict(reversed(line.split()) for line in (mount / "sums.txt").read_text().splitlines())
    assert len(sums) == FILES
    for name, digest in sums.items():
        assert hashlib.sha256((data / name).read_bytes()).hexdigest() == digest, name
    assert not [p for p in mount.rglob("*") if p.name.endswith(PART_SUFFIX)]
    runs = [
        len(jobcomp(slurm_cluster, slurm_name(tmp_path, 1, "frozen", "use", attempt=n)))
        for n in (1, 2, 3)
    ]
    assert sum(runs) == 1, runs


BACK = f"""\
name: frozen-back
spec:
  activities:
    - name: make
      runtime: hpc
      run: |
        echo run >> make.count
        i=0; while [ $i -lt {FILES} ]; do head -c {SIZE} /dev/urandom > f$i.bin; i=$((i+1)); done
"""


def test_a_hung_login_node_while_a_sinks_files_come_back(
    slurm_cluster: SlurmCluster,
    hpc_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HPC_KEEPALIVE", "1")
    mount = Path(hpc_env["HPC_MOUNT_PATH"])
    data = tmp_path / "data"

    async def scenario() -> None:
        async with engine_with(tmp_path, BACK, health_interval=0.2) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            await until(
                lambda: data.exists() and any(p.name.endswith(PART_SUFFIX) for p in data.iterdir()),
                60,
                "a copy back under way",
            )
            frozen = sshd_processes(slurm_cluster)
            signal_all(frozen, signal.SIGSTOP)
            try:
                await until(lambda: not engine.runtime_status()["hpc"][0], 60, "NOT_READY")
            finally:
                signal_all(frozen, signal.SIGCONT)
            state = await asyncio.wait_for(engine.wait(wf_id), timeout=120)
            assert state is WorkflowState.SUCCEEDED, states(wf)

    asyncio.run(scenario())
    assert (mount / "make.count").read_text() == "run\n"
    for i in range(FILES):
        assert (data / f"f{i}.bin").read_bytes() == (mount / f"f{i}.bin").read_bytes()
    assert not [p for p in data.rglob("*") if p.name.endswith(PART_SUFFIX)]
