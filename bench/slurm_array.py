"""SLURM job arrays benchmark: a fan-out as one job per activity vs as job arrays, side by side.

    .venv/bin/python bench/slurm_array.py                # a fan-out of 1,000 `true`
    .venv/bin/python bench/slurm_array.py --jobs 200
    .venv/bin/python bench/run.py slurm-array            # the same, from the benchmark runner

Starts a private SLURM cluster with an SSH login node (tests/slurm_support/cluster.py) in a
temp dir and runs the same fan-out workflow through the engine, in-process, on the ``hpc``
runtime twice in this one invocation: ``HPC_ARRAYS=off`` (one ``sbatch`` per activity, at
most MAX_QUEUED in the queue: the runtime before arrays) and the default (attempts with the
same options as one ``sbatch --array``, ``%MAX_QUEUED``). slurmctld's own counters (``sdiag``,
reset before each run) give the submit RPCs (REQUEST_SUBMIT_BATCH_JOB) and all RPCs; the wall
time is the workflow's, from the engine's start to its end. SUBMIT_RATE is raised to 1000/s
for both, the single jobs' best case (the default, 1/s, would make them last ~1 s each).
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

SUBMIT = "REQUEST_SUBMIT_BATCH_JOB"


def fan_out_yaml(name: str, n: int) -> str:
    acts = "".join(f"    - name: j{i}\n      run: 'true'\n" for i in range(n))
    return f"name: {name}\nspec:\n  runtime: hpc\n  activities:\n{acts}"


async def run_one(cluster: SlurmCluster, work: Path, mode: str, n: int) -> dict[str, Any]:
    state = work / f"state-{mode}"
    repo = service.open_repository(state)
    prepared = service.validate_text(fan_out_yaml(f"fan-{mode}", n), f"fan-{mode}.yaml")
    wf_id = service.store(repo, state, prepared, work / f"data-{mode}")
    engine = Engine(repo, state, log_interval=5.0)
    cluster.sdiag_reset()
    t0 = time.perf_counter()
    await engine.start()
    try:
        await engine.attach(wf_id)
        final = await engine.wait(wf_id)
        elapsed = time.perf_counter() - t0
        rt = engine._slots["hpc"].runtime
        assert isinstance(rt, HpcRuntime)
        sbatch_calls, polls = rt.sbatch_calls, rt.status_queries
    finally:
        await engine.stop()
        repo.close()
    rpcs = cluster.sdiag_rpcs()
    return {
        "ok": final.value == "succeeded",
        "seconds": elapsed,
        "submit_rpcs": rpcs.get(SUBMIT, 0),
        "all_rpcs": sum(rpcs.values()),
        "sbatch_calls": sbatch_calls,
        "polls": polls,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--poll", type=float, default=1.0, help="HPC_POLL_INTERVAL (s)")
    parser.add_argument("--max-queued", type=int, default=100, help="HPC_MAX_QUEUED")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="akf-bench-array-"))
    cluster = SlurmCluster(root / "cluster")
    cluster.root.mkdir()
    results: dict[str, dict[str, Any]] = {}
    try:
        cluster.start()
        env = cluster.settings("hpc")
        env.update(
            HPC_POLL_INTERVAL=str(args.poll),
            HPC_SUBMIT_RATE="1000",
            HPC_MAX_QUEUED=str(args.max_queued),
            HPC_METRICS_INTERVAL="0",
            HPC_SSH_CONFIG_FILE="none",
        )
        print(
            f"slurm + sshd up under {root}; fan-out of {args.jobs} `true`, MAX_QUEUED "
            f"{args.max_queued}, poll {args.poll:g}s",
            flush=True,
        )
        for mode in ("single", "array"):
            os.environ.update(env)
            os.environ["HPC_MOUNT_PATH"] = str(root / f"mount-{mode}")
            os.environ["HPC_ARRAYS"] = "off" if mode == "single" else "on"
            r = results[mode] = asyncio.run(run_one(cluster, root, mode, args.jobs))
            print(
                f"{mode + ' jobs' if mode == 'single' else 'job arrays':<12} {args.jobs:>5} "
                f"activities  {r['seconds']:7.1f} s  {'ok' if r['ok'] else 'FAILED'}  "
                f"submit RPCs {r['submit_rpcs']:>5}  all slurmctld RPCs {r['all_rpcs']:>6}  "
                f"sbatch calls {r['sbatch_calls']:>5}  polls {r['polls']}",
                flush=True,
            )
        single, array = results["single"], results["array"]
        print(
            f"{'':<12} submit RPCs {single['submit_rpcs']} -> {array['submit_rpcs']} "
            f"({single['submit_rpcs'] / max(1, array['submit_rpcs']):.0f}x fewer); wall "
            f"{single['seconds']:.1f} s -> {array['seconds']:.1f} s "
            f"({array['seconds'] / single['seconds']:.2f}x)"
        )
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0 if all(r["ok"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
