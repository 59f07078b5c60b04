"""The login node's sshd restarted (every session killed) while the data plane uploads a large
file to the SLURM cluster (issue 17, hostile pass): the copy cut short is not the attempt's
failure (before cf6333c it was: "Broken pipe" or "Connection reset by peer"); the runtime is
held (NOT_READY), the copy is made again once sshd is back, whole, and the HPC activity runs
once on it. The temporary ``.<name>.akoflow-part`` never stays on the cluster and only the copy
that arrived is recorded.

The engine runs in-process, so the test's event loop watches the part file and cuts the
connection as soon as it holds bytes: the cut lands mid-copy without a race on timing."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from pathlib import Path

from akoflow.dataplane.mover import PART_SUFFIX
from akoflow.engine import Engine
from akoflow.states import WorkflowState
from tests.e2e.test_engine_inprocess import engine_with
from tests.hpc_runtime.test_hpc_engine import jobcomp, slurm_name, states, until
from tests.slurm_support.cluster import SlurmCluster

BIG = 256 * 2**20  # many SFTP windows: the cut lands well before the end

# Random bytes fast (the kernel's random source is slow on a small machine): AES-CTR of zeros.
OUTAGE = f"""\
name: outage
spec:
  collect: none
  activities:
    - name: make
      runtime: local
      run: |
        openssl enc -aes-128-ctr -pbkdf2 -nosalt -pass pass:akoflow < /dev/zero \\
          2>/dev/null | head -c {BIG} > big.bin
    - name: digest
      runtime: hpc
      dependsOn: [make]
      run: |
        echo run >> digest.count
        sha256sum big.bin > sum.txt
"""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def parts(mount: Path) -> list[Path]:
    """The copies' temporary files on the cluster (their names carry the run)."""
    return [p for p in mount.rglob("*") if p.name.endswith(PART_SUFFIX)]


def upload_size(mount: Path) -> int:
    """Bytes in big.bin's temporary file, 0 while there is none."""
    size = 0
    for part in parts(mount):
        if part.name.startswith(".big.bin."):
            with contextlib.suppress(FileNotFoundError):
                size = max(size, part.stat().st_size)
    return size


async def when_copying(mount: Path, engine: Engine, wf_id: int, timeout: float = 90) -> int:
    """Wait until big.bin's temporary file on the cluster holds some bytes (the upload under
    way); its size then."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    waiting = asyncio.ensure_future(engine.wait(wf_id))
    try:
        while (size := upload_size(mount)) == 0:
            if waiting.done():
                raise AssertionError(f"the workflow ended before the upload: {waiting.result()}")
            if loop.time() > deadline:
                raise AssertionError("big.bin's temporary file never held bytes")
            await asyncio.sleep(0.002)
    finally:
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
    return size


def test_sshd_restarted_during_an_upload_holds_the_copy_and_makes_it_again(
    slurm_cluster: SlurmCluster, hpc_env: dict[str, str], tmp_path: Path
) -> None:
    mount = Path(hpc_env["HPC_MOUNT_PATH"])
    data = tmp_path / "data"
    sshd = slurm_cluster.sshd

    async def scenario() -> None:
        async with engine_with(tmp_path, OUTAGE, health_interval=0.2) as (repo, engine, wf_id):
            wf = await engine.attach(wf_id)
            cut_at = await when_copying(mount, engine, wf_id)
            await asyncio.to_thread(sshd.stop, sessions=True)
            try:
                await until(lambda: not engine.runtime_status()["hpc"][0], what="NOT_READY")
            finally:
                await asyncio.sleep(2)
                await asyncio.to_thread(sshd.start)  # the session's cluster stays usable
            assert 0 < cut_at < BIG  # the copy really was under way, not done
            state = await asyncio.wait_for(engine.wait(wf_id), timeout=120)
            assert state is WorkflowState.SUCCEEDED, states(wf)
            acts = {a.name: a for a in repo.list_activities(wf_id)}
            act = acts["digest"]
            tried = repo.list_attempts(act.id)
            # The cut copy held the activity: its first attempt is recorded lost, never
            # submitted (no job), and costs no retry; the next one ran. Before the fix it
            # failed ("Broken pipe", "Connection reset by peer") and so did the run.
            assert [(a.number, a.state, bool(a.handle)) for a in tried] == [
                (1, "lost", False),
                (2, "succeeded", True),
            ], [(a.number, a.state, a.reason) for a in tried]
            assert "sftp" in (tried[0].reason or ""), tried[0].reason
            assert act.max_attempts == acts["make"].max_attempts + 1  # no retry spent
            want = sha256_of(data / "big.bin")
            sent = [
                (c.source, c.destination, c.bytes, c.sha256)
                for c in repo.list_data_copies(wf_id)
                if c.path == "big.bin"
            ]
            # The copy the cut interrupted left no record; the one made after it, once.
            assert sent == [("", f"hpc:{mount}", BIG, want)]
            assert (mount / "sum.txt").read_text().split()[0] == want

    asyncio.run(scenario())
    assert (mount / "digest.count").read_text() == "run\n"  # the job ran once
    # SLURM ran one job for it: none for the held attempt, one for the next.
    jobs = [
        len(jobcomp(slurm_cluster, slurm_name(tmp_path, 1, "outage", "digest", attempt=n)))
        for n in (1, 2)
    ]
    assert jobs == [0, 1]
    assert parts(mount) == []
    assert (mount / "big.bin").stat().st_size == BIG
