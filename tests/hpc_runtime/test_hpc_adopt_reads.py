"""Adopting a finished attempt reads its exit file once over SFTP (its code, then when its
command ran, from the same text). Before, adoption read it 2 times (a job still in squeue)
or 3 (one that left it: the code, the code again for the outcome, then the times; found
reading the code by the last hostile pass). The reads are counted at the runtime's seam to
the cluster, its transport's ``read_from``, which goes on to the private cluster's real
SFTP server."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from akoflow.runtimes.hpc import HpcRuntime
from tests.hpc_runtime.conftest import runtime_env
from tests.hpc_runtime.test_hpc_runtime import (
    COMPLETED,
    Recorder,
    ended,
    job_spec,
    make,
    wait_finished,
)
from tests.slurm_support.cluster import SlurmCluster


def exit_reads(rt: HpcRuntime) -> list[str]:
    """The exit files ``rt`` reads from here on, one entry a read."""
    transport: Any = rt._transport
    read_from = transport.read_from
    reads: list[str] = []

    async def counted(path: str, offset: int, size: int) -> bytes | None:
        if path.endswith("/exit"):
            reads.append(path)
        data: bytes | None = await read_from(path, offset, size)
        return data

    transport.read_from = counted
    return reads


def test_adopting_a_job_ended_in_squeue_reads_its_exit_file_once(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    env = runtime_env(slurm_cluster, "hpc", "mount/adopt-reads-squeue")
    job = job_spec(tmp_path, "ran", "sleep 1")

    async def scenario() -> None:
        events = Recorder()
        first = make(env, events)
        await first.start()
        try:
            await first.submit(job)
            assert ended(await wait_finished(events, job.key)) == COMPLETED
        finally:
            await first.stop()
        second = make(env)  # an engine started again: SLURM still shows the job, ended
        await second.start()
        try:
            reads = exit_reads(second)
            adopted = await second.adopt(job, {})
            assert reads == [second._paths(job)[1].exit]
        finally:
            await second.stop()
        assert adopted.kind == "finished" and ended(adopted.outcome) == COMPLETED
        began, end = adopted.started_at, adopted.outcome.ended_at  # type: ignore[union-attr]
        assert began is not None and end is not None and end - began >= 1, adopted

    asyncio.run(scenario())


def test_adopting_a_job_gone_from_slurm_reads_its_exit_file_once(
    slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    """A job that left SLURM long ago: only its exit file is left, as the job wrote it."""
    env = runtime_env(slurm_cluster, "hpc", "mount/adopt-reads-gone")
    gone = job_spec(tmp_path, "gone", "true")
    began, end = time.time() - 3600, time.time() - 3598

    async def scenario() -> None:
        rt = make(env)
        await rt.start()
        try:
            exit_file = Path(rt._paths(gone)[1].exit)
            exit_file.parent.mkdir(parents=True)
            exit_file.write_text(f"3 {began:.6f} {end:.6f}\n")
            reads = exit_reads(rt)
            adopted = await rt.adopt(gone, {})
            assert reads == [str(exit_file)]
        finally:
            await rt.stop()
        assert adopted.kind == "finished" and adopted.outcome is not None
        assert (adopted.outcome.succeeded, adopted.outcome.exit_code) == (False, 3)
        assert adopted.started_at == float(f"{began:.6f}")
        assert adopted.outcome.ended_at == float(f"{end:.6f}")

    asyncio.run(scenario())
