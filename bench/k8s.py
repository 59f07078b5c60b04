"""API requests and per-activity overhead of the Kubernetes runtime, on the emulated cluster.

    .venv/bin/python bench/k8s.py            # 4 and 20 trivial activities, 1 s vs 6 s jobs
    .venv/bin/python bench/k8s.py -n 50

Starts a private dockerd and the test cluster stand-in (tests/k8s_support: TLS API emulator +
kubelet running each pod in a real container), then runs in-process engines:

- wide: N independent ``true`` activities (throughput, requests per activity);
- chain: N/4 activities one after another (end-to-end latency per activity);
- duration: one activity sleeping 1 s, then one sleeping 6 s: the per-activity requests must be
  the same (no polling per job).

Requests per activity are every request of the run but those sampled in time (/healthz, the
node and metrics lists, which depend on wall time only): each attempt's Job create and log
stream, the Jobs' deletion (one request per run), the run's namespace, service account and
claim, and the watch streams (goal of issue 20: at most 4 from 4 activities on). The lines
below split them into those naming attempts and the rest. The container start of the stand-in
(docker) dominates the latency: numbers describe this stand-in, not a real cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from akoflow.states import WorkflowState  # noqa: E402
from tests.docker_support.dockerd import IMAGE, PrivateDockerd  # noqa: E402
from tests.k8s_runtime.conftest import engine_with  # noqa: E402
from tests.k8s_support.cluster import EmulatedCluster  # noqa: E402

PERIODIC = ("watch", "get healthz", "list nodes", "list metrics/", "list jobs", "list pods")
SAMPLED = ("get healthz", "list nodes", "list metrics/")


def workflow(name: str, n: int, *, chain: bool, run: str = "exit 0") -> str:
    acts = []
    for i in range(n):
        dep = f"      dependsOn: [a{i - 1}]\n" if chain and i else ""
        acts.append(f"    - name: a{i}\n{dep}      run: {run}\n")
    return f"name: {name}\nspec:\n  runtime: k8s\n  image: {IMAGE}\n  activities:\n" + "".join(acts)


async def timed_run(tmp: Path, text: str, cluster: EmulatedCluster) -> tuple[float, Counter[str]]:
    before = cluster.counts()
    env = cluster.env("k8s", MAX_PARALLEL="8")
    async with engine_with(tmp, text, env) as (_, engine, wf_id):
        start = time.perf_counter()
        await engine.attach(wf_id)
        state = await engine.wait(wf_id)
        took = time.perf_counter() - start
        assert state is WorkflowState.SUCCEEDED, state
    return took, cluster.counts() - before


def split(delta: Counter[str]) -> tuple[Counter[str], Counter[str]]:
    per = Counter({k: v for k, v in delta.items() if not k.startswith(PERIODIC)})
    return per, delta - per


def show(label: str, n: int, took: float, delta: Counter[str]) -> None:
    per, periodic = split(delta)
    counted = sum(v for k, v in delta.items() if not k.startswith(SAMPLED))
    print(
        f"{label:<10} {n:>4} activities  {took:7.2f} s  {took / n * 1000:8.1f} ms/activity  "
        f"{counted / n:5.2f} requests/activity (watches and log streams included)  "
        f"{sum(per.values()) / n:5.2f} without the watches"
    )
    print(f"{'':<10} per-activity: {dict(sorted(per.items()))}")
    print(f"{'':<10} periodic:     {dict(sorted(periodic.items()))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="akoflow-bench-k8s-") as d:
        tmp = Path(d)
        daemon = PrivateDockerd(tmp / "dockerd")
        daemon.start()
        try:
            daemon.import_image(IMAGE)
            cluster = EmulatedCluster(tmp / "cluster", daemon.host, name="bench").start()
            try:
                n = args.n
                for w in sorted({4, n}):  # 4: the run issue 20 measured (4.8 before)
                    took, delta = asyncio.run(
                        timed_run(tmp / f"wide{w}", workflow("wide", w, chain=False), cluster)
                    )
                    show("wide", w, took, delta)
                m = max(2, n // 4)
                took, delta = asyncio.run(
                    timed_run(tmp / "chain", workflow("chain", m, chain=True), cluster)
                )
                show("chain", m, took, delta)
                for secs in (1, 6):
                    text = workflow(f"sleep{secs}", 1, chain=False, run=f"sleep {secs}")
                    took, delta = asyncio.run(timed_run(tmp / f"s{secs}", text, cluster))
                    show(f"sleep {secs}s", 1, took, delta)
            finally:
                cluster.close()
        finally:
            daemon.stop()


if __name__ == "__main__":
    main()
