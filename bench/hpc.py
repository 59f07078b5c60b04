"""HPC runtime benchmark: slurmctld RPCs per job and SSH connections per workflow.

    .venv/bin/python bench/hpc.py               # fan-outs of 20 and 200 jobs
    .venv/bin/python bench/hpc.py --jobs 50 500 --poll 2

Starts a private SLURM cluster with an SSH login node (tests/slurm_support/cluster.py) in a
temp dir, runs each fan-out workflow through the engine in-process on the ``hpc`` runtime, and
reads slurmctld's own RPC counters (``sdiag``, reset before each run) and sshd's log. The
numbers that matter: REQUEST_JOB_INFO (squeue) per monitor cycle stays 1 whatever the number of
jobs, and a workflow costs one SSH connection.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from akoflow import service  # noqa: E402
from akoflow.engine import Engine  # noqa: E402
from akoflow.runtimes.hpc import HpcRuntime  # noqa: E402
from tests.slurm_support.cluster import SlurmCluster  # noqa: E402


def fan_out_yaml(n: int) -> str:
    acts = "".join(f"    - name: j{i}\n      run: 'true'\n" for i in range(n))
    return f"name: fan{n}\nspec:\n  runtime: hpc\n  activities:\n{acts}"


async def run_one(cluster: SlurmCluster, work: Path, n: int) -> dict[str, Any]:
    state = work / f"state-{n}"
    repo = service.open_repository(state)
    prepared = service.validate_text(fan_out_yaml(n), f"fan{n}.yaml")
    wf_id = service.store(repo, state, prepared, work / f"data-{n}")
    engine = Engine(repo, state, log_interval=5.0)
    cluster.sdiag_reset()
    ssh_before = cluster.sshd.connections()
    await engine.start()
    t0 = time.perf_counter()
    try:
        await engine.attach(wf_id)
        rt = engine._slots["hpc"].runtime
        assert isinstance(rt, HpcRuntime)
        waiting = asyncio.ensure_future(engine.wait(wf_id))
        submitted = 0.0
        while not waiting.done():
            await asyncio.sleep(0.05)
            if not submitted and rt.submissions >= n:
                submitted = time.perf_counter() - t0
        final = waiting.result()
        elapsed = time.perf_counter() - t0
        polls, conns = rt.status_queries, rt.connections_opened
    finally:
        await engine.stop()
        repo.close()
    rpcs = cluster.sdiag_rpcs()
    job_info = rpcs.get("REQUEST_JOB_INFO", 0)
    return {
        "jobs": n,
        "state_ok": float(final.value == "succeeded"),
        "seconds": elapsed,
        "jobs_per_s": n / elapsed,
        "submitted_after": submitted,
        "polls": polls,
        "job_info_rpcs": job_info,
        "job_info_per_poll": job_info / max(1, polls),
        "status_rpcs_per_job": job_info / n,
        "all_rpcs_per_job": sum(rpcs.values()) / n,
        "top_rpcs": ", ".join(f"{k} {v}" for k, v in sorted(rpcs.items(), key=lambda i: -i[1])[:5]),
        "submit_rpcs": rpcs.get("REQUEST_SUBMIT_BATCH_JOB", 0),
        "ssh_connections_runtime": conns,
        "ssh_connections_sshd": cluster.sshd.connections() - ssh_before,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[20, 200])
    parser.add_argument("--poll", type=float, default=1.0, help="HPC_POLL_INTERVAL (s)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="akf-bench-hpc-"))
    cluster = SlurmCluster(root / "cluster")
    cluster.root.mkdir()
    try:
        cluster.start()
        env = cluster.settings("hpc")
        env["HPC_MOUNT_PATH"] = str(root / "mount")
        env.update(
            HPC_POLL_INTERVAL=str(args.poll),
            HPC_SUBMIT_RATE="1000",
            HPC_MAX_QUEUED=str(max(args.jobs)),
            HPC_METRICS_INTERVAL="0",
        )
        os.environ.update(env)
        print(f"slurm + sshd up under {root}; poll interval {args.poll:g}s")
        for n in args.jobs:
            r = asyncio.run(run_one(cluster, root, n))
            print(
                f"fan-out {n:>5}: {r['seconds']:6.1f}s ({r['jobs_per_s']:.1f} jobs/s), "
                f"{'ok' if r['state_ok'] else 'FAILED'}, all submitted after "
                f"{r['submitted_after']:.1f}s; "
                f"squeue RPCs {r['job_info_rpcs']:.0f} over {r['polls']:.0f} polls "
                f"({r['job_info_per_poll']:.2f}/poll, {r['status_rpcs_per_job']:.3f}/job); "
                f"all slurmctld RPCs {r['all_rpcs_per_job']:.2f}/job "
                f"(submits {r['submit_rpcs']:.0f}); "
                f"SSH connections: {r['ssh_connections_runtime']:.0f} (runtime), "
                f"{r['ssh_connections_sshd']:.0f} (sshd log)\n    top RPCs: {r['top_rpcs']}"
            )
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
